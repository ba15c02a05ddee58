"""XLA against no XLA: the step time of the plain (ce) and the exact MW-Net step of one model
with `jit_compile` off and on, in one process, the two settings alternating round by round
(the steps are the step benchmark's, `benchmarking.steps.Bench`, built as the trainer builds
them). With `replicas` > 1 the steps run under MirroredStrategy on as many logical CPUs. The
command is `python -m mwnet_tf.bench_jit`.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import tensorflow as tf

from mwnet_tf.benchmarking.steps import Bench, random_batch
from mwnet_tf.config import MODEL_SHAPES
from mwnet_tf.methods import steps


def split_cpu(replicas: int) -> None:
    """Splits the CPU into `replicas` logical devices (before TensorFlow initializes them)."""
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def measure(model: str, batch_size: int, variants: tuple[str, ...], *, replicas: int,
            runs: int, warmup: int, rounds: int) -> dict:
    """Median seconds per step of each (variant, jit) pair; call with the logical devices
    already set up for `replicas` > 1."""
    shape = MODEL_SHAPES[model]
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
                if replicas > 1 else None)
    rng = np.random.default_rng(0)
    data = random_batch(rng, batch_size, shape, 10)
    meta_data = random_batch(rng, batch_size, shape, 10)
    if strategy is not None:  # one distributed element, fed to every step
        ds = tf.data.Dataset.from_tensors((data, meta_data)).repeat()
        data, meta_data = next(iter(strategy.experimental_distribute_dataset(ds)))
    benches = {}
    for v in variants:
        for jit in (False, True):
            if strategy is None:
                benches[v, jit] = Bench(v, model, batch_size, 10, shape, jit_compile=jit)
            else:
                with strategy.scope():
                    b = Bench(v, model, batch_size, 10, shape)
                b.step = steps.compile_step(b.replica_fn, strategy, jit_compile=jit)
                benches[v, jit] = b
    errors = {}
    for key, b in list(benches.items()):
        try:
            for _ in range(warmup):
                b.run(data, meta_data)
        except tf.errors.OpError as e:  # kept in the results: jit under MirroredStrategy
            errors[key] = f"{type(e).__name__}: {e.message.splitlines()[0][:300]}"
            del benches[key]
    times = {key: [] for key in benches}
    for _ in range(rounds):
        for key, b in benches.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                b.run(data, meta_data)
                times[key].append(time.perf_counter() - t0)
    step_s = {key: statistics.median(t) for key, t in times.items()}
    rows = [{"variant": v, "jit_compile": jit, "step_s": step_s[v, jit],
             "steps_timed": len(times[v, jit])} for (v, jit) in benches]
    rows += [{"variant": v, "jit_compile": jit, "error": e} for (v, jit), e in errors.items()]
    return {
        "kind": "jit", "model": model, "batch_size": batch_size, "replicas": replicas,
        "parameters": benches[variants[0], False].parameters, "rows": rows,
        "jit_ratio": {v: step_s[v, True] / step_s[v, False] for v in variants
                      if (v, True) in step_s and (v, False) in step_s},
        "device": ", ".join(d.name for d in tf.config.list_logical_devices("CPU")),
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__}
