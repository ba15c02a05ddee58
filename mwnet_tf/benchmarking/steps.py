"""Step-time and memory measurements of the training steps users choose between, on one
model and batch in one process (the logic of `python -m mwnet_tf.bench`): each variant's
median time per step after warm-up and its ratio to the first; the trainer's own epoch loop
over a real `tf.data` pipeline (`benchmark(loop_steps_per_call=...)`: the overhead of the loop
itself); a profiler trace of each variant (`mwnet_tf.benchmarking.trace`); each variant's peak
memory in a process of its own (`measure_memory`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import methods
from mwnet_tf.benchmarking import trace
from mwnet_tf.benchmarking.variants import LABELS, VARIANTS, interval
from mwnet_tf.config import Config
from mwnet_tf.data import Dataset, make_biased_data
from mwnet_tf.data.pipeline import make_train_dataset
from mwnet_tf.methods import precision, steps
from mwnet_tf.methods.base import Context
from mwnet_tf.models import build_classifier
from mwnet_tf.training import loop as training_loop


class Bench:
    """One variant's step on one model, built as the trainer builds it (`methods.get`,
    `loop.make_optimizer`: SGD-momentum 0.1 with weight decay 5e-4, the weight net's Adam
    1e-3 with 1e-4, mixed precision as asked)."""

    def __init__(self, variant: str, model: str, batch_size: int, classes: int,
                 input_shape: tuple[int, ...], *, meta_interval: int = 10,
                 mixed_precision: str = "none", jit_compile: bool = False):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {tuple(VARIANTS)}")
        name, params = VARIANTS[variant]
        params = {k: (meta_interval if v is None else v) for k, v in params.items()}
        config = Config(model=model, method=name, method_params=params, batch_size=batch_size,
                        meta_batch_size=batch_size, lr=0.1, momentum=0.9, weight_decay=5e-4,
                        meta_optimizer="adam", meta_lr=1e-3, meta_weight_decay=1e-4,
                        mixed_precision=mixed_precision, jit_compile=jit_compile)

        def new_classifier(seed):
            with precision.policy(mixed_precision):
                return build_classifier(model, classes, input_shape, seed=seed)

        def new_optimizer(kind):
            return training_loop.make_optimizer(config, kind)

        self.classifier = new_classifier(0)
        optimizer = new_optimizer("classifier")
        optimizer.build(self.classifier.trainable_variables)
        labels = np.arange(10 * batch_size) % classes
        self.method = methods.get(name)(Context(
            config=config, data=types.SimpleNamespace(train_y=labels, num_classes=classes),
            classifier=self.classifier, optimizer=optimizer,
            options=steps.StepOptions(batch_size, batch_size), new_classifier=new_classifier,
            new_optimizer=new_optimizer))
        self.stage = self.method.stages()[0]
        self.with_meta = self.method.meta_batches(self.stage)
        self.replica_fn = self.method.replica_step(self.stage)
        self.step = steps.compile_step(self.replica_fn, jit_compile=jit_compile)
        # mwnet_interval is timed over whole blocks of K steps (one exact, K - 1 weighted)
        self.unit = params.get("meta_interval", 1)
        self.parameters = int(sum(np.prod(v.shape)
                                  for v in self.classifier.trainable_variables))

    def run(self, data, meta_data, units: int = 1) -> None:
        """`units` blocks of `unit` steps, waiting for the last to finish."""
        args = (data, meta_data) if self.with_meta else (data,)
        for _ in range(units * self.unit):
            out = self.step(*args)
        float(out["loss_sum"])


def random_batch(rng, batch_size, input_shape, classes):
    return {"x": tf.constant(rng.normal(size=(batch_size, *input_shape)).astype("float32")),
            "y": tf.constant(rng.integers(0, classes, batch_size).astype("int32"))}


def benchmark(model: str, batch_size: int, classes: int, input_shape: tuple[int, ...], *,
              runs: int, warmup: int, rounds: int, jit_compile: bool,
              variants: tuple[str, ...] = ("ce", "mwnet"), meta_interval: int = 10,
              mixed_precision: str = "none", loop_steps_per_call: tuple[int, ...] = (),
              loop_steps: int = 40, profile: str | None = None,
              profile_steps: int = 3) -> dict:
    """Median seconds per step of each variant (the first variant is the baseline of the
    ratios); with `loop_steps_per_call`, also of the trainer's epoch loop at each of those
    values (per round, one epoch of `loop_steps` steps after a warm-up epoch; median over
    rounds); with `profile`, a trace of each variant and its breakdown."""
    rng = np.random.default_rng(0)
    data = random_batch(rng, batch_size, input_shape, classes)
    meta_data = random_batch(rng, batch_size, input_shape, classes)
    kw = dict(meta_interval=meta_interval, mixed_precision=mixed_precision,
              jit_compile=jit_compile)
    benches = {v: Bench(v, model, batch_size, classes, input_shape, **kw) for v in variants}
    for b in benches.values():
        for _ in range(warmup):
            b.run(data, meta_data)
    epoch = None
    if loop_steps_per_call:
        epoch = _epoch_timer(rng, model, batch_size, classes, input_shape, variants,
                             loop_steps_per_call, loop_steps, **kw)
    times = {v: [] for v in variants}
    loop_times = {(v, k): [] for v in variants for k in loop_steps_per_call}
    for r in range(rounds):
        for v, b in benches.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                b.run(data, meta_data)
                times[v].append((time.perf_counter() - t0) / b.unit)
            for k in loop_steps_per_call:
                loop_times[v, k].append(epoch(v, k, r + 1))
    out = _summary(benches, times, loop_times, model=model, batch_size=batch_size,
                   input_shape=input_shape, jit_compile=jit_compile,
                   mixed_precision=mixed_precision, meta_interval=meta_interval)
    if profile:
        out["profile"] = {}
        for v, b in benches.items():
            folder = os.path.join(profile, v)
            tf.profiler.experimental.start(folder)
            b.run(data, meta_data, units=profile_steps)
            tf.profiler.experimental.stop()
            out["profile"][v] = trace.breakdown(folder, steps=profile_steps * b.unit)
    return out


def _epoch_timer(rng, model, batch_size, classes, input_shape, variants, steps_per_call,
                 loop_steps, **kw):
    """`epoch(variant, k, index) -> seconds per step` of one epoch of the trainer's loop
    (`loop.train_epoch`, k steps per call) over a pipeline of random images, each variant
    on fresh copies of its models; every call length is traced (warmed up) first."""
    n = batch_size * loop_steps
    images = rng.integers(0, 256, (n + 10 * batch_size, *input_shape), dtype=np.uint8)
    labels = np.arange(len(images)) % classes
    biased = make_biased_data(
        Dataset(name="random", train_x=images, train_y=labels, test_x=images[:classes],
                test_y=labels[:classes], num_classes=classes,
                mean=(0.5,) * input_shape[-1], std=(0.25,) * input_shape[-1],
                augment=model in ("resnet32", "wrn28_10")),
        noise="uniform", rate=0.4, meta_per_class=-(-batch_size // classes), seed=0)
    loops = {}
    for v in variants:
        b = Bench(v, model, batch_size, classes, input_shape, **kw)
        loops[v] = (steps.compile_loop(b.replica_fn, jit_compile=kw["jit_compile"]),
                    b.with_meta)

    def epoch(variant, k, index):
        compiled, with_meta = loops[variant]
        ds = make_train_dataset(biased, batch_size=batch_size, meta_batch_size=batch_size,
                                seed=0, epoch=index, with_meta=with_meta)
        t0 = time.perf_counter()
        training_loop.train_epoch(compiled, ds, steps=loop_steps, steps_per_call=k,
                                  batch_size=batch_size)
        return (time.perf_counter() - t0) / loop_steps

    for v in loops:
        for k in steps_per_call:
            epoch(v, k, 0)
    return epoch


def _summary(benches, times, loop_times, *, model, batch_size, input_shape, jit_compile,
             mixed_precision, meta_interval) -> dict:
    """The results of `benchmark`: one row per variant and per (variant, steps per call)."""
    variants = tuple(benches)
    step_s = {v: statistics.median(t) for v, t in times.items()}
    base = step_s[variants[0]]
    rows = [{"variant": v, "label": LABELS[v], "step_s": step_s[v], "vs_first": step_s[v] / base,
             "examples_per_s": batch_size / step_s[v], "steps_timed": len(times[v]),
             **({"meta_interval": meta_interval} if interval(v) else {})}
            for v in variants]
    loop = [{"method": v, "steps_per_call": k, "step_s": statistics.median(t),
             "vs_bare_step": statistics.median(t) / step_s[v]}
            for (v, k), t in loop_times.items()]
    out = {"model": model, "parameters": benches[variants[0]].parameters,
           "batch_size": batch_size, "input_shape": list(input_shape),
           "jit_compile": jit_compile, "mixed_precision": mixed_precision, "steps": rows,
           "device": ", ".join(d.device_type for d in tf.config.list_logical_devices()),
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "tensorflow": tf.__version__, "keras": keras.__version__, "loop": loop}
    if "ce" in step_s and "mwnet" in step_s:  # the pair the bench tables compare
        out.update(plain_step_s=step_s["ce"], mwnet_step_s=step_s["mwnet"],
                   ratio=step_s["mwnet"] / step_s["ce"])
    return out


def memory_probe(variant: str, model: str, batch_size: int, classes: int,
                 input_shape: tuple[int, ...], steps: int = 3, *, meta_interval: int = 10,
                 mixed_precision: str = "none") -> dict:
    """Peak memory of `steps` training steps of one variant, in this process: the resident
    set (bytes) once the models are built, and its peak over the steps (Linux
    `/proc/self/status` VmRSS and VmHWM, the peak reset by `clear_refs` first; `ru_maxrss`
    cannot be used: it carries the parent's peak across `exec`); the GPU allocator's peak when
    a GPU is present. Run it in a fresh process per variant (`--memory` does)."""
    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
        raise RuntimeError(f"no {field} in /proc/self/status")

    rng = np.random.default_rng(0)
    data = random_batch(rng, batch_size, input_shape, classes)
    b = Bench(variant, model, batch_size, classes, input_shape, meta_interval=meta_interval,
              mixed_precision=mixed_precision)
    b.classifier(data["x"][:1])  # weights materialized before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = status("VmRSS")
    for _ in range(steps):
        b.run(data, data)
    out = {"method": variant, "peak_rss_before_steps": before, "peak_rss": status("VmHWM")}
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        out["gpu_peak_bytes"] = tf.config.experimental.get_memory_info(gpus[0].name)["peak"]
    return out


def measure_memory(model: str, batch_size: int, classes: int, input_shape: tuple[int, ...],
                   variants: tuple[str, ...] = ("ce", "mwnet"), *, meta_interval: int = 10,
                   mixed_precision: str = "none") -> dict:
    """`memory_probe` of each variant in its own process; ratios to the first."""
    probes = {}
    for v in variants:
        proc = subprocess.run(
            [sys.executable, "-m", "mwnet_tf.bench", f"--memory_child={v}",
             f"--model={model}", f"--batch_size={batch_size}", f"--classes={classes}",
             f"--input_shape={','.join(str(d) for d in input_shape)}",
             f"--meta_interval={meta_interval}", f"--mixed_precision={mixed_precision}"],
            capture_output=True, text=True, check=True)
        probes[v] = json.loads(proc.stdout.strip().splitlines()[-1])
    first = probes[variants[0]]
    own = max(1, first["peak_rss"] - first["peak_rss_before_steps"])
    out = {"probes": probes, "rss_ratio": {}, "step_rss_ratio": {}}
    for v, p in probes.items():
        out["rss_ratio"][v] = p["peak_rss"] / first["peak_rss"]
        out["step_rss_ratio"][v] = (p["peak_rss"] - p["peak_rss_before_steps"]) / own
        if "gpu_peak_bytes" in p:
            out.setdefault("gpu_ratio", {})[v] = p["gpu_peak_bytes"] / first["gpu_peak_bytes"]
    return out
