"""The one function that writes a CSV file of this package atomically.

Kept alone and small so that it can be swapped for the package's shared atomic writer: the rows
go to `PATH.tmp-PID` in the same folder (the name `training.loop` cleans up after a killed
process), which is moved over `PATH` once complete, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Sequence


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Writes `header` and `rows` to `path` atomically; returns `path`. On any failure the
    temporary file is removed and an existing `path` is left as it was."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path
