"""Hardware side: the Amaranth generator of the DupNet dataflow accelerator."""
