"""The built-in layer kinds (one module each, defining ``KIND``); see :mod:`dupnet.sw.layers`."""
