"""Multi-worker settings: where this process sits in the cluster, checked before anything is
written and before TensorFlow's devices start.

`--cluster=tf_config`: `MultiWorkerMirroredStrategy` reads the `TF_CONFIG` environment
variable, checked here as plain JSON (no TensorFlow). `--cluster=slurm`: TensorFlow's
`SlurmClusterResolver` reads the variables Slurm sets for each task of a job step (`srun`),
and the strategy is given that resolver. Either way the strategy must be created before
anything initializes TensorFlow's devices, so the entry point checks the layout here and
creates the strategy first. A bad or partial layout is a `ValueError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

TASK_TYPES = ("chief", "worker")
# What SlurmClusterResolver reads of a job step (its node list and tasks per node, this task's
# rank), all set by `srun` for each task it starts.
SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                   "SLURM_STEP_TASKS_PER_NODE")


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


def _sees_gpus() -> bool:
    """Whether the job step has GPUs to hand out: CUDA_VISIBLE_DEVICES set (Slurm sets it for
    an allocation of GPUs), or nvidia-smi present (the resolver counts GPUs with it)."""
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES")) or shutil.which("nvidia-smi") is not None


def slurm_task(port_base: int):
    """(`SlurmClusterResolver`, `Task`) of this Slurm task, or a `ValueError` naming what is
    missing or wrong. Imports TensorFlow (not its devices): call it before anything else of
    TensorFlow, after the flags are checked.

    On GPUs the resolver gives each task its share of the node's GPUs (CUDA_VISIBLE_DEVICES);
    without GPUs (a CPU job step) every task takes the CPUs and no GPU is assigned."""
    environ = os.environ
    missing = [v for v in SLURM_VARIABLES if not environ.get(v)]
    if missing:
        raise ValueError("--cluster=slurm needs the variables of a Slurm job step (start each "
                         f"task with srun): {', '.join(missing)} not set")
    for name in ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        if not environ[name].isdigit():
            raise ValueError(f"{name}={environ[name]!r} is not a whole number")
    rank, tasks = int(environ["SLURM_PROCID"]), int(environ["SLURM_STEP_NUM_TASKS"])
    if not 0 <= rank < tasks:
        raise ValueError(f"SLURM_PROCID={rank} is out of range for SLURM_STEP_NUM_TASKS="
                         f"{tasks}")
    import tensorflow as tf  # third-party, heavy: only for a Slurm run

    gpus = {} if _sees_gpus() else dict(gpus_per_node=tasks, gpus_per_task=1,
                                        auto_set_gpu=False)
    try:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, **gpus)
        workers = resolver.cluster_spec().as_dict().get("worker", [])
    except (RuntimeError, ValueError, AssertionError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0].rstrip(": ")
        raise ValueError("the Slurm job step's layout cannot be read (SLURM_STEP_NODELIST="
                         f"{environ['SLURM_STEP_NODELIST']!r}, SLURM_STEP_TASKS_PER_NODE="
                         f"{environ['SLURM_STEP_TASKS_PER_NODE']!r}): {why}") from None
    if len(workers) != tasks or resolver.task_type != "worker":
        raise ValueError(f"the Slurm job step lists {len(workers)} task(s) on its nodes "
                         f"(SLURM_STEP_TASKS_PER_NODE={environ['SLURM_STEP_TASKS_PER_NODE']!r}) "
                         f"for SLURM_STEP_NUM_TASKS={tasks}")
    return resolver, Task(task_type="worker", task_id=int(resolver.task_id),
                          num_workers=len(workers))
