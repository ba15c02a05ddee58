"""Fault injection for the crash tests: `MWNET_TF_FAULT=POINT:N` kills this process with
SIGKILL the N-th time it reaches `POINT` (one of `POINTS`). Unset, `hit` does nothing."""

from __future__ import annotations

import os
import signal

POINTS = ("after_call", "eval", "checkpoint_before", "checkpoint_after", "export", "results")
_counts: dict[str, int] = {}


def hit(point: str) -> None:
    spec = os.environ.get("MWNET_TF_FAULT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
