"""Fault injection for the crash tests: `MWNET_TF_FAULT=POINT:N[:KIND]` acts the N-th time this
process reaches `POINT` (one of `POINTS`): KIND `kill` (the default) kills it with SIGKILL,
`enospc` raises the error a full disk gives a writer (`OSError` ENOSPC), `eacces` the one of an
unwritable folder. Unset, `hit` does nothing.

The write points sit inside the writers: "results" once `results.json`'s temporary file is
written and not yet moved into place, "export" once the weight function's temporary folder is
written and not yet moved, "checkpoint_before" between a checkpoint's progress file and the
checkpoint itself."""

from __future__ import annotations

import errno
import os
import signal

POINTS = ("after_call", "eval", "checkpoint_before", "checkpoint_after", "export", "results")
KINDS = {"kill": None, "enospc": errno.ENOSPC, "eacces": errno.EACCES}
_counts: dict[str, int] = {}


def hit(point: str, path: str | None = None) -> None:
    """Called at `point` (writing `path`, if any)."""
    spec = os.environ.get("MWNET_TF_FAULT")
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    count, _, kind = rest.partition(":")
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != int(count or 1):
        return
    code = KINDS[kind or "kill"]
    if code is None:
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(code, os.strerror(code), path)
