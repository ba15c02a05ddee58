"""Where a step's time goes: a breakdown of a TensorFlow profiler trace (`tf.profiler`'s
`.xplane.pb`, the file TensorBoard's profile tab reads), by kind of op and by phase.

Every op kernel that ran is an event named `op_name:OpType` on a `tf_Compute` thread of the
host plane. Phases come from the op's name: ops that `GradientTape` adds are named
`gradient_tape/...`, and ops of the gradient of a gradient (MW-Net's second-order pass, the
meta-gradient through the virtual step) `gradient_tape/gradient_tape/...`; the forward phase
holds everything else (the forwards, the optimizers' updates, the weight net). Times are summed
over threads (op time, not wall time: two ops on two cores count twice).
"""

from __future__ import annotations

import collections
import glob
import os

PHASES = ("forward", "backward", "second-order backward")


def _phase(op_name: str) -> str:
    """By the `gradient_tape` name scopes in the op's name (wherever they sit: a step inside a
    `tf.cond` branch is named `cond/gradient_tape/...`)."""
    depth = op_name.split("/").count("gradient_tape")
    return PHASES[min(depth, 2)]


def breakdown(folder: str, steps: int = 1, top: int = 10) -> dict:
    """The op time per step of the newest trace under `folder`: total, by phase and the `top`
    op types (seconds and share of the total)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f"no profiler trace (*.xplane.pb) under {folder}")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_phase = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if ":" not in name or "::" in name:
                    continue  # executor bookkeeping (ExecutorState::Process), not an op
                op_name, op_type = name.rsplit(":", 1)
                seconds = event.duration_ps * 1e-12 / steps
                by_type[op_type] += seconds
                by_phase[_phase(op_name)] += seconds
    total = sum(by_type.values())
    if total == 0:
        raise ValueError(f"the trace {files[-1]} holds no op events")
    return {"trace": files[-1], "op_seconds_per_step": total,
            "phases": {p: {"seconds": by_phase[p], "share": by_phase[p] / total}
                       for p in PHASES},
            "op_types": [{"type": t, "seconds": s, "share": s / total}
                         for t, s in by_type.most_common(top)]}


def format_breakdown(b: dict) -> str:
    """A few readable lines."""
    lines = [f"  op time {b['op_seconds_per_step']:.3f} s per step; by phase: " + ", ".join(
        f"{p} {v['share']:.0%}" for p, v in b["phases"].items())]
    lines.append("  by op: " + ", ".join(f"{o['type']} {o['share']:.0%}"
                                        for o in b["op_types"]))
    return "\n".join(lines)
