"""Step-time and memory benchmark of the training steps users choose between, same model and
batch, in one process: plain cross-entropy, the exact MW-Net step, its two approximations and
L2RW. Prints the median time per step of each (after warm-up), its ratio to the plain step and
examples per second.

    python -m mwnet_tf.bench --model=resnet32 --batch_size=100
    python -m mwnet_tf.bench --model=resnet32 --variants=ce,mwnet,mwnet_head,mwnet_interval,l2rw
    python -m mwnet_tf.bench --model=cnn --loop --steps_per_call=1,10
    python -m mwnet_tf.bench --model=resnet32 --variants=ce,mwnet --profile=/tmp/prof

`--loop` also times the trainer's own epoch loop (`loop.train_epoch` over a real
`tf.data` pipeline of random images, `steps_per_call` steps per `tf.function` call) and prints
its time per step beside the bare step's: the overhead of the loop itself. `--memory` measures
each variant's peak memory in a process of its own. `--profile=DIR` traces a few steps of each
variant with TensorFlow's profiler (open DIR in TensorBoard's profile tab) and prints where the
time goes (`mwnet_tf.benchmarking.trace`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


# name -> (method, its hyperparameters): the steps compared, built through `mwnet_tf.methods`
# exactly as the trainer builds them. mwnet_interval's K is --meta_interval.
VARIANTS = {"ce": ("ce", {}), "mwnet": ("mwnet", {}),
            "mwnet_head": ("mwnet", {"meta_scope": "head"}),
            "mwnet_interval": ("mwnet", {"meta_interval": None}), "l2rw": ("l2rw", {})}
LABELS = {"ce": "plain (cross-entropy)", "mwnet": "MW-Net, exact",
          "mwnet_head": "MW-Net, --meta_scope=head", "mwnet_interval": "MW-Net, --meta_interval",
          "l2rw": "L2RW"}


def define_flags() -> None:
    from mwnet_tf.config import MIXED_PRECISION, MODELS
    flags.DEFINE_enum("model", "resnet32", MODELS, "Classifier.")
    flags.DEFINE_integer("batch_size", 100, "Batch size (training and meta).", lower_bound=1)
    flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
    flags.DEFINE_list("input_shape", None, "Input shape H,W,C (default: the model's usual).")
    flags.DEFINE_list("variants", ["ce", "mwnet"],
                      "Steps to compare, the first the baseline of the ratios: "
                      f"{', '.join(VARIANTS)}.")
    flags.DEFINE_integer("meta_interval", 10, "K of the mwnet_interval variant.", lower_bound=2)
    flags.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "As train's flag.")
    flags.DEFINE_integer("runs", 10, "Timed steps per variant and round (mwnet_interval: "
                         "blocks of K steps).", lower_bound=1)
    flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, compilation).",
                         lower_bound=1)
    flags.DEFINE_integer("rounds", 2, "Alternate the variants this many times.", lower_bound=1)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the steps.")
    flags.DEFINE_bool("loop", False, "Also time the trainer's epoch loop per step.")
    flags.DEFINE_list("steps_per_call", ["1", "10"], "--loop: steps per call to time.")
    flags.DEFINE_integer("loop_steps", 40, "--loop: steps per timed epoch.", lower_bound=1)
    flags.DEFINE_bool("time", True, "Time the steps (--notime: memory only).")
    flags.DEFINE_bool("memory", False, "Also measure the peak memory of each step, each in a "
                      "process of its own (peak RSS on Linux; the GPU allocator's peak on a GPU).")
    flags.DEFINE_string("memory_child", None, "Internal: one memory probe (a variant).")
    flags.DEFINE_string("profile", None, "Trace --profile_steps steps of each variant into "
                        "this folder and print the time by kind of op and by phase.")
    flags.DEFINE_integer("profile_steps", 3, "--profile: steps traced per variant.",
                         lower_bound=1)
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


DEFAULT_SHAPES = {"resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3), "resnet50": (224, 224, 3),
                  "mlp": (8, 8, 1), "cnn": (28, 28, 1), "tiny": (8, 8, 1)}


class Bench:
    """One variant's step on one model, built as the trainer builds it (`methods.get`,
    `loop.make_optimizer`: SGD-momentum 0.1 with weight decay 5e-4, the weight net's Adam
    1e-3 with 1e-4, mixed precision as asked)."""

    def __init__(self, variant: str, model: str, batch_size: int, classes: int,
                 input_shape: tuple[int, ...], *, meta_interval: int = 10,
                 mixed_precision: str = "none", jit_compile: bool = False):
        import types

        import numpy as np

        from mwnet_tf import methods, precision, steps
        from mwnet_tf.config import Config
        from mwnet_tf.models import build_classifier
        from mwnet_tf.training import loop

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
            return loop.make_optimizer(config, kind)

        self.classifier = new_classifier(0)
        optimizer = new_optimizer("classifier")
        optimizer.build(self.classifier.trainable_variables)
        labels = np.arange(10 * batch_size) % classes
        self.method = methods.get(name)(methods.Context(
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


def _random_batch(rng, batch_size, input_shape, classes):
    import tensorflow as tf
    return {"x": tf.constant(rng.normal(size=(batch_size, *input_shape)).astype("float32")),
            "y": tf.constant(rng.integers(0, classes, batch_size).astype("int32"))}


def benchmark(model: str, batch_size: int, classes: int, input_shape: tuple[int, ...], *,
              runs: int, warmup: int, rounds: int, jit_compile: bool,
              variants: tuple[str, ...] = ("ce", "mwnet"), meta_interval: int = 10,
              mixed_precision: str = "none", loop_steps_per_call: tuple[int, ...] = (),
              loop_steps: int = 40, profile: str | None = None,
              profile_steps: int = 3) -> dict:
    """Median seconds per step of each variant (library entry point; the first variant is the
    baseline of the ratios); with `loop_steps_per_call`, also of the trainer's epoch loop at
    each of those values (per round, one epoch of `loop_steps` steps after a warm-up epoch;
    median over rounds); with `profile`, a trace of each variant and its breakdown."""
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    data = _random_batch(rng, batch_size, input_shape, classes)
    meta_data = _random_batch(rng, batch_size, input_shape, classes)
    kw = dict(meta_interval=meta_interval, mixed_precision=mixed_precision,
              jit_compile=jit_compile)
    benches = {v: Bench(v, model, batch_size, classes, input_shape, **kw) for v in variants}
    for b in benches.values():
        for _ in range(warmup):
            b.run(data, meta_data)
    loops, epoch = {}, None
    if loop_steps_per_call:
        from mwnet_tf import steps
        from mwnet_tf.data import Dataset, make_biased_data
        from mwnet_tf.data.pipeline import make_train_dataset
        from mwnet_tf.training import loop

        n = batch_size * loop_steps
        images = rng.integers(0, 256, (n + 10 * batch_size, *input_shape), dtype=np.uint8)
        labels = np.arange(len(images)) % classes
        biased = make_biased_data(
            Dataset(name="random", train_x=images, train_y=labels, test_x=images[:classes],
                    test_y=labels[:classes], num_classes=classes,
                    mean=(0.5,) * input_shape[-1], std=(0.25,) * input_shape[-1],
                    augment=model in ("resnet32", "wrn28_10")),
            noise="uniform", rate=0.4, meta_per_class=-(-batch_size // classes), seed=0)
        # fresh copies: the loop trains its own models
        for v in variants:
            b = Bench(v, model, batch_size, classes, input_shape, **kw)
            loops[v] = (steps.compile_loop(b.replica_fn, jit_compile=jit_compile), b.with_meta)

        def epoch(variant, k, index):
            compiled, with_meta = loops[variant]
            ds = make_train_dataset(biased, batch_size=batch_size, meta_batch_size=batch_size,
                                    seed=0, epoch=index, with_meta=with_meta)
            t0 = time.perf_counter()
            loop.train_epoch(compiled, ds, steps=loop_steps, steps_per_call=k,
                             batch_size=batch_size)
            return (time.perf_counter() - t0) / loop_steps

        for v in loops:  # warm-up: traces every call length used below
            for k in loop_steps_per_call:
                epoch(v, k, 0)
    times = {v: [] for v in variants}
    loop_times = {(v, k): [] for v in loops for k in loop_steps_per_call}
    for r in range(rounds):
        for v, b in benches.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                b.run(data, meta_data)
                times[v].append((time.perf_counter() - t0) / b.unit)
            for k in loop_steps_per_call:
                loop_times[v, k].append(epoch(v, k, r + 1))
    step_s = {v: statistics.median(t) for v, t in times.items()}
    base = step_s[variants[0]]
    rows = [{"variant": v, "label": LABELS[v], "step_s": step_s[v], "vs_first": step_s[v] / base,
             "examples_per_s": batch_size / step_s[v], "steps_timed": len(times[v]),
             **({"meta_interval": meta_interval} if v == "mwnet_interval" else {})}
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
    if "ce" in step_s and "mwnet" in step_s:  # the figures of earlier versions
        out.update(plain_step_s=step_s["ce"], mwnet_step_s=step_s["mwnet"],
                   ratio=step_s["mwnet"] / step_s["ce"])
    if profile:
        from mwnet_tf.benchmarking import trace as profile_lib
        out["profile"] = {}
        for v, b in benches.items():
            folder = os.path.join(profile, v)
            tf.profiler.experimental.start(folder)
            b.run(data, meta_data, units=profile_steps)
            tf.profiler.experimental.stop()
            out["profile"][v] = profile_lib.breakdown(folder, steps=profile_steps * b.unit)
    return out


def memory_probe(variant: str, model: str, batch_size: int, classes: int,
                 input_shape: tuple[int, ...], steps: int = 3, *, meta_interval: int = 10,
                 mixed_precision: str = "none") -> dict:
    """Peak memory of `steps` training steps of one variant, in this process: the resident
    set (bytes) once the models are built, and its peak over the steps (Linux
    `/proc/self/status` VmRSS and VmHWM, the peak reset by `clear_refs` first; `ru_maxrss`
    cannot be used: it carries the parent's peak across `exec`); the GPU allocator's peak when
    a GPU is present. Run it in a fresh process per variant (`--memory` does)."""
    import numpy as np
    import tensorflow as tf

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
        raise RuntimeError(f"no {field} in /proc/self/status")

    rng = np.random.default_rng(0)
    data = _random_batch(rng, batch_size, input_shape, classes)
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
    import subprocess
    import sys

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


def main(argv: list[str]) -> None:
    shape = (tuple(int(s) for s in FLAGS.input_shape) if FLAGS.input_shape
             else DEFAULT_SHAPES[FLAGS.model])
    unknown = [v for v in FLAGS.variants + [FLAGS.memory_child or "ce"] if v not in VARIANTS]
    if unknown or not FLAGS.variants:
        raise app.UsageError(f"--variants takes {', '.join(VARIANTS)}; got {unknown or 'none'}")
    kw = dict(meta_interval=FLAGS.meta_interval, mixed_precision=FLAGS.mixed_precision)
    if FLAGS.memory_child:
        print(json.dumps(memory_probe(FLAGS.memory_child, FLAGS.model, FLAGS.batch_size,
                                      FLAGS.classes, shape, **kw)))
        return
    variants = tuple(FLAGS.variants)
    r: dict = {"model": FLAGS.model, "loop": []}
    if FLAGS.time:
        r = benchmark(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape, runs=FLAGS.runs,
                      warmup=FLAGS.warmup, rounds=FLAGS.rounds, jit_compile=FLAGS.jit_compile,
                      variants=variants, loop_steps_per_call=tuple(
                          int(k) for k in FLAGS.steps_per_call) if FLAGS.loop else (),
                      loop_steps=FLAGS.loop_steps, profile=FLAGS.profile,
                      profile_steps=FLAGS.profile_steps, **kw)
        print(f"{r['model']} ({r['parameters']:,} parameters), batch {r['batch_size']}, "
              f"jit {r['jit_compile']}, mixed precision {r['mixed_precision']}, "
              f"TF {r['tensorflow']} on {r['cpu_count']} CPU cores [{r['device']}]")
        for row in r["steps"]:
            label = row["label"] + (f"={row['meta_interval']}" if "meta_interval" in row else "")
            print(f"{label:32s} {row['step_s']:.4f} s per step  {row['vs_first']:.2f}x  "
                  f"{row['examples_per_s']:.0f} examples/s")
    for row in r["loop"]:
        print(f"trainer loop, {row['method']:14s} steps_per_call={row['steps_per_call']:<3d} "
              f"{row['step_s']:.4f} s per step  ({row['vs_bare_step']:.2f}x the bare step)")
    for v, prof in r.get("profile", {}).items():
        from mwnet_tf.benchmarking import trace as profile_lib
        print(f"profile of {v} ({FLAGS.profile}/{v}):")
        print(profile_lib.format_breakdown(prof))
    if FLAGS.memory:
        m = measure_memory(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape, variants, **kw)
        r["memory"] = m
        mib = 2.0 ** 20
        for v, p in m["probes"].items():
            print(f"memory, {v:14s}: peak RSS {p['peak_rss'] / mib:.0f} MiB "
                  f"({(p['peak_rss'] - p['peak_rss_before_steps']) / mib:.0f} MiB above the "
                  f"models alone), {m['rss_ratio'][v]:.2f}x the peak of {variants[0]}, "
                  f"{m['step_rss_ratio'][v]:.2f}x its steps' own"
                  + (f", GPU peak {p['gpu_peak_bytes'] / mib:.0f} MiB"
                     if "gpu_peak_bytes" in p else ""))
    if FLAGS.json:
        r["command"] = " ".join(["python -m mwnet_tf.bench"] + [
            a for a in sys.argv[1:] if not a.startswith("--json")])
        r["environment"] = {k: os.environ[k] for k in ("TF_NUM_INTEROP_THREADS",
                                                       "TF_NUM_INTRAOP_THREADS") if k in os.environ}
        r["date"] = time.strftime("%Y-%m-%d %H:%M")
        with open(FLAGS.json, "w") as f:
            json.dump(r, f, indent=2)


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
