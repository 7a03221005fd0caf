"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class XSeasonError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class ConfigError(XSeasonError):
    """A configuration file or override is invalid."""


class ManifestError(XSeasonError):
    """The image manifest is invalid (the message names file, row and column)."""


class DatasetFormatError(XSeasonError):
    """A correspondence dataset or an imported file does not follow its format."""
