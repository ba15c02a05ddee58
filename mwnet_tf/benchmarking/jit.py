"""XLA against no XLA: the step time of the plain (ce) and the exact MW-Net step of one model
with `jit_compile` off and on, in one process, the two settings alternating round by round
(the steps are `mwnet_tf.bench`'s, built as the trainer builds them). `--replicas=2` splits
the CPU into 2 logical devices and times the steps under MirroredStrategy (global batch
`--batch_size`), which `mwnet_tf.bench` cannot.

    python -m mwnet_tf.benchmarking.jit --model=mlp --json=runs/reference/bench/jit_mlp.json
    python -m mwnet_tf.benchmarking.jit --model=cnn --replicas=2 --json=...

The JSON holds one row per step and setting and `jit_ratio` (jit time / no-jit time) per
step; `mwnet_tf.report`'s block `bench:jit` tabulates every such file.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("model", "mlp", ["mlp", "cnn", "tiny", "resnet32"], "Classifier.")
    flags.DEFINE_integer("batch_size", 100, "Global batch size (training and meta).",
                         lower_bound=2)
    flags.DEFINE_list("variants", ["ce", "mwnet"], "Steps (mwnet_tf.bench's variants).")
    flags.DEFINE_integer("replicas", 1, "1: one device; 2: MirroredStrategy on 2 logical CPUs.",
                         lower_bound=1, upper_bound=2)
    flags.DEFINE_integer("runs", 10, "Timed steps per step, setting and round.", lower_bound=1)
    flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, compilation).",
                         lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Alternate the settings this many times.", lower_bound=1)
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


def measure(model: str, batch_size: int, variants: tuple[str, ...], *, replicas: int,
            runs: int, warmup: int, rounds: int) -> dict:
    """Median seconds per step of each (variant, jit) pair; call with the logical devices
    already set up for `replicas` > 1."""
    import numpy as np
    import tensorflow as tf

    from mwnet_tf import bench, steps

    shape = bench.DEFAULT_SHAPES[model]
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
                if replicas > 1 else None)
    rng = np.random.default_rng(0)
    data = bench._random_batch(rng, batch_size, shape, 10)
    meta_data = bench._random_batch(rng, batch_size, shape, 10)
    if strategy is not None:  # one distributed element, fed to every step
        ds = tf.data.Dataset.from_tensors((data, meta_data)).repeat()
        data, meta_data = next(iter(strategy.experimental_distribute_dataset(ds)))
    benches = {}
    for v in variants:
        for jit in (False, True):
            if strategy is None:
                benches[v, jit] = bench.Bench(v, model, batch_size, 10, shape, jit_compile=jit)
            else:
                with strategy.scope():
                    b = bench.Bench(v, model, batch_size, 10, shape)
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


def main(argv: list[str]) -> None:
    import tensorflow as tf

    if FLAGS.replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.replicas)
    load_before = os.getloadavg()
    r = measure(FLAGS.model, FLAGS.batch_size, tuple(FLAGS.variants), replicas=FLAGS.replicas,
                runs=FLAGS.runs, warmup=FLAGS.warmup, rounds=FLAGS.rounds)
    r["loadavg_before_after"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    print(f"{r['model']}, batch {r['batch_size']}, {r['replicas']} replica(s)")
    for row in r["rows"]:
        print(f"{row['variant']:6s} jit {str(row['jit_compile']):5s} "
              + (f"{row['step_s']:.4f} s per step" if "step_s" in row else row["error"]))
    for v, ratio in r["jit_ratio"].items():
        print(f"{v}: jit / no jit {ratio:.2f}x")
    if FLAGS.json:
        r["command"] = " ".join(["python -m mwnet_tf.benchmarking.jit"] + [
            a for a in sys.argv[1:] if not a.startswith("--json")])
        r["date"] = time.strftime("%Y-%m-%d %H:%M")
        with open(FLAGS.json, "w") as f:
            json.dump(r, f, indent=2)


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
