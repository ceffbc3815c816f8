"""The error the data pipeline raises for unusable input (missing, empty, unreadable)."""


class DataError(ValueError):
    """A data file or data setting that cannot be used; the message names file and reason."""
