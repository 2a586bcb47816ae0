"""Errors a user can cause. The CLI prints ``str(error)`` as one line, without a traceback."""


class EsqError(Exception):
    """Base class: the message names the file, field or value at fault and how to fix it."""


class ConfigError(EsqError):
    """A configuration file, option or ``--set`` value is wrong."""


class UnknownNameError(ConfigError):
    """A pipeline, component or option name that nothing installed provides."""


class PluginError(EsqError):
    """A plugin could not be loaded, or it broke a rule of the plugin system."""


class DataError(EsqError):
    """Input data is missing or malformed."""


class CheckpointError(EsqError):
    """A checkpoint or weights file is missing or cannot be loaded."""
