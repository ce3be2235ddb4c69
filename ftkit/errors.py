"""Errors raised at ftkit's boundary, before any training starts."""


class FtkitError(Exception):
    """Base class of every error ftkit raises on purpose."""


class ConfigError(FtkitError, ValueError):
    """A configuration value is invalid. The message names the field and the valid values."""


class DataError(FtkitError, ValueError):
    """A dataset or a batch cannot be used with the chosen model."""


class OfflineError(FtkitError, RuntimeError):
    """A resource needs the network, and the network is not reachable."""


def choose(field, value, valid):
    """Return ``value`` if it is one of ``valid``, else raise a ConfigError listing them."""
    if value not in valid:
        raise ConfigError(f"{field}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}")
    return value


def whole_number(field, value, low=1, hint=""):
    """Return ``value`` if it is an int (not a bool) >= ``low``, else raise a ConfigError naming the field
    (``hint`` is added to the message)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{field}={value!r} must be a whole number >= {low}{hint}")
    return value


class RunFolderError(FtkitError, ValueError):
    """A saved run folder cannot be read: the message names the file and what is wrong with it."""
