"""Errors a user can act on: each names the file, row, column or config key at fault."""


class LearnKitError(Exception):
    """Base class; the CLI prints these without a traceback."""


class ConfigError(LearnKitError):
    """A config key is missing, unknown or of the wrong type."""


class DataError(LearnKitError):
    """An input file cannot be read or a row breaks the canonical data contract."""


class FetchError(LearnKitError):
    """A dataset could not be obtained or did not verify."""
