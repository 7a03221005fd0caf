"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class XSeasonError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class ConfigError(XSeasonError):
    """A configuration file or override is invalid."""


class ManifestError(XSeasonError):
    """The image manifest is invalid (the message names file, row and column)."""


class DatasetFormatError(XSeasonError):
    """A correspondence dataset or an imported file does not follow its format."""


class OutputError(XSeasonError):
    """An output path that may not be written: it holds something of the user's, or the inputs."""


class LockError(OutputError):
    """An output or work folder is in use by another xseason process (the message names it)."""
