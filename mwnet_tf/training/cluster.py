"""Multi-worker settings: `TF_CONFIG` read and checked before TensorFlow starts.

`MultiWorkerMirroredStrategy` takes its cluster from the `TF_CONFIG` environment variable and
must be created before anything initializes TensorFlow's devices, so the entry point checks
`TF_CONFIG` here (plain JSON, no TensorFlow) and creates the strategy first. A bad `TF_CONFIG`
is a `ValueError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import os

TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in the cluster."""

    task_type: str
    task_id: int
    num_workers: int  # chief included
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """The task that writes the run folder: the chief, or worker 0 when there is none."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0
                                             and not self.has_chief)


def parse_tf_config(text: str | None) -> Task:
    """The task `TF_CONFIG` describes, or a `ValueError` naming what is wrong with it."""
    if not text:
        raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                         '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}})')
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ValueError('TF_CONFIG needs a "cluster" object mapping task types to address lists')
    cluster = spec["cluster"]
    for kind, addresses in cluster.items():
        if kind not in TASK_TYPES:
            raise ValueError(f"TF_CONFIG cluster has task type {kind!r}; "
                             f"multi-worker training uses {' and '.join(TASK_TYPES)} only")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _is_address(a) for a in addresses)):
            raise ValueError(f'TF_CONFIG cluster "{kind}" must be a non-empty list of '
                             '"host:port" strings')
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG cluster has more than one chief")
    addresses = [a for kind in TASK_TYPES for a in cluster.get(kind, [])]
    if len(set(addresses)) != len(addresses):
        raise ValueError("TF_CONFIG cluster lists an address twice")
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError('TF_CONFIG needs a "task" object with "type" and "index"')
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task type {kind!r} is not in its cluster "
                         f"({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index < len(cluster[kind])):
        raise ValueError(f"TF_CONFIG task index {index!r} is out of range for the "
                         f"{len(cluster[kind])} {kind} address(es)")
    return Task(task_type=kind, task_id=index, num_workers=len(addresses),
                has_chief="chief" in cluster)


def _is_address(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(host) and bool(sep) and port.isdigit() and 0 < int(port) < 65536


def current_task() -> Task:
    """This process's task, from the environment's `TF_CONFIG`."""
    return parse_tf_config(os.environ.get("TF_CONFIG"))
