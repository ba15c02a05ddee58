"""The errors the package raises for bad input and for runs that cannot go on.

Each carries a one-line, user-facing message: the commands print it as `error: ...` and exit
non-zero without a traceback. They live in this module of their own, which imports nothing, so
that any module can raise or catch them without importing the module that usually does.
"""

from __future__ import annotations


def data_error(where: str, problem: str) -> "DataUnavailableError":
    """A one-line `DataUnavailableError`: "WHERE: PROBLEM", whitespace collapsed (a path or a
    message that holds a newline still gives one line)."""
    return DataUnavailableError(" ".join(f"{where}: {problem}".split()))


class DataUnavailableError(RuntimeError):
    """Data that cannot be read: a missing folder or file, a damaged or refused file."""


class TrainingError(RuntimeError):
    """A run that cannot go on (NaN loss, unreadable checkpoint)."""


class WriteError(TrainingError):
    """A run folder that cannot be written (full disk, no permission)."""


class ImageError(TrainingError):
    """An image file that cannot be decoded, found while training (exit 1)."""


class Interrupted(TrainingError):
    """A stop requested by a signal; the run saved a checkpoint first."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class LockError(ValueError):
    """The run folder is in use by another process."""


class WeightFnError(ValueError):
    """A path that is not a weight function this project can read."""


class PlotError(ValueError):
    """A run folder or file that the figures cannot be drawn from."""


class ReportError(Exception):
    """A problem with the kept runs or with a page's generated blocks."""


class PredictError(ValueError):
    """Input that `mwnet_tf.predict` cannot predict on (shown as `error: ...`, exit 1)."""


class OutputError(PredictError):
    """An `--out` that would replace an input or a file of the run folder (exit 2)."""
