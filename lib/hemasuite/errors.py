"""Exceptions with messages that say what is wrong, where, and what to do."""


class SuiteError(Exception):
    """Base class of every error this library raises on purpose."""


class ParameterError(SuiteError, ValueError):
    """An unknown profile, parameter or parameter value."""


class DataError(SuiteError):
    """A dataset is missing, empty or laid out differently than expected."""


class ImageReadError(DataError):
    """One image file cannot be read; carries the path and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class WeightsError(SuiteError):
    """Pretrained weights are needed but not available offline."""


class UnsafePickleError(WeightsError):
    """A weights file's pickle asks for code other than tensor rebuilding; it is refused, never run."""
