"""The one base class of user-facing errors: the CLI prints their message, not a traceback."""


class DupnetError(ValueError):
    """Bad input (config, artifact, data, option). The message names the file/layer/field."""
