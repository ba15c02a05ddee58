"""Step-time benchmark: a plain cross-entropy step vs a full MW-Net step, same model and batch,
in one process. Prints the median step time of each (after warm-up), their ratio and
examples per second.

    python -m mwnet_tf.bench --model=resnet32 --batch_size=100
    python -m mwnet_tf.bench --model=cnn --loop --steps_per_call=1,10

`--loop` also times the trainer's own epoch loop (`trainer.train_epoch` over a real
`tf.data` pipeline of random images, `steps_per_call` steps per `tf.function` call) and prints
its time per step beside the bare step's: the overhead of the loop itself.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    from mwnet_tf.models import MODELS
    flags.DEFINE_enum("model", "resnet32", MODELS, "Classifier.")
    flags.DEFINE_integer("batch_size", 100, "Batch size (training and meta).", lower_bound=1)
    flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
    flags.DEFINE_list("input_shape", None, "Input shape H,W,C (default: the model's usual).")
    flags.DEFINE_integer("runs", 10, "Timed steps per method.", lower_bound=1)
    flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, compilation).",
                         lower_bound=1)
    flags.DEFINE_integer("rounds", 2, "Alternate plain/meta this many times.", lower_bound=1)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile both steps.")
    flags.DEFINE_bool("loop", False, "Also time the trainer's epoch loop per step.")
    flags.DEFINE_list("steps_per_call", ["1", "10"], "--loop: steps per call to time.")
    flags.DEFINE_integer("loop_steps", 40, "--loop: steps per timed epoch.", lower_bound=1)
    flags.DEFINE_bool("time", True, "Time the steps (--notime: memory only).")
    flags.DEFINE_bool("memory", False, "Also measure the peak memory of each step, each in a "
                      "process of its own (peak RSS on Linux; the GPU allocator's peak on a GPU).")
    flags.DEFINE_enum("memory_child", None, ["ce", "mwnet"], "Internal: one memory probe.")
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


DEFAULT_SHAPES = {"resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3), "resnet50": (224, 224, 3),
                  "mlp": (8, 8, 1), "cnn": (28, 28, 1), "tiny": (8, 8, 1)}


def benchmark(model: str, batch_size: int, classes: int, input_shape: tuple[int, ...], *,
              runs: int, warmup: int, rounds: int, jit_compile: bool,
              loop_steps_per_call: tuple[int, ...] = (), loop_steps: int = 40) -> dict:
    """Median seconds per step of the plain and the MW-Net step (library entry point); with
    `loop_steps_per_call`, also of the trainer's epoch loop at each of those values (per
    round, one epoch of `loop_steps` steps after a warm-up epoch; median over rounds)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from mwnet_tf import meta, optim
    from mwnet_tf.models import build_classifier, build_weight_net

    rng = np.random.default_rng(0)

    def batch():
        return {"x": tf.constant(rng.normal(size=(batch_size, *input_shape)).astype("float32")),
                "y": tf.constant(rng.integers(0, classes, batch_size).astype("int32"))}

    data, meta_data = batch(), batch()
    options = meta.StepOptions(batch_size, batch_size)
    steps = {}
    for method in ("ce", "mwnet"):
        clf = build_classifier(model, classes, input_shape, seed=0)
        wnet = build_weight_net(seed=1)
        opt = optim.TorchSGD(0.1, momentum=0.9, weight_decay=5e-4)   # as the trainer's
        meta_opt = optim.TorchAdam(1e-3, weight_decay=1e-4)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
        steps[method] = meta.make_train_step(method, clf, opt, options, weight_net=wnet,
                                             meta_optimizer=meta_opt, jit_compile=jit_compile)
        for _ in range(warmup):
            float(steps[method](data, meta_data)["loss_sum"])
        params = sum(int(np.prod(v.shape)) for v in clf.trainable_variables)
    loops = {}
    if loop_steps_per_call:
        from mwnet_tf import trainer
        from mwnet_tf.data import Dataset, make_biased_data
        from mwnet_tf.data.pipeline import make_train_dataset

        n = batch_size * loop_steps
        images = rng.integers(0, 256, (n + 10 * batch_size, *input_shape), dtype=np.uint8)
        labels = np.arange(len(images)) % classes
        biased = make_biased_data(
            Dataset(name="random", train_x=images, train_y=labels, test_x=images[:classes],
                    test_y=labels[:classes], num_classes=classes,
                    mean=(0.5,) * input_shape[-1], std=(0.25,) * input_shape[-1],
                    augment=model in ("resnet32", "wrn28_10")),
            noise="uniform", rate=0.4, meta_per_class=-(-batch_size // classes), seed=0)
        for method in ("ce", "mwnet"):
            clf = build_classifier(model, classes, input_shape, seed=0)
            wnet = build_weight_net(seed=1)
            opt = optim.TorchSGD(0.1, momentum=0.9, weight_decay=5e-4)
            meta_opt = optim.TorchAdam(1e-3, weight_decay=1e-4)
            opt.build(clf.trainable_variables)
            meta_opt.build(wnet.trainable_variables)
            if method == "ce":
                fn = lambda b, mb, c=clf, o=opt: meta.ce_step(c, o, b, options)  # noqa: E731
            else:
                fn = lambda b, mb, c=clf, w=wnet, o=opt, mo=meta_opt: meta.mwnet_step(  # noqa
                    c, w, o, mo, b, mb, options)
            loops[method] = meta.compile_loop(fn, jit_compile=jit_compile)

        def epoch(method, k, index):
            ds = make_train_dataset(biased, batch_size=batch_size, meta_batch_size=batch_size,
                                    seed=0, epoch=index)
            t0 = time.perf_counter()
            trainer.train_epoch(loops[method], ds, steps=loop_steps, steps_per_call=k,
                                batch_size=batch_size)
            return (time.perf_counter() - t0) / loop_steps

        for method in loops:  # warm-up: traces every call length used below
            for k in loop_steps_per_call:
                epoch(method, k, 0)
    times = {"ce": [], "mwnet": []}
    loop_times = {(m, k): [] for m in loops for k in loop_steps_per_call}
    for r in range(rounds):
        for method, step in steps.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                float(step(data, meta_data)["loss_sum"])  # waits for the step to finish
                times[method].append(time.perf_counter() - t0)
            for k in loop_steps_per_call:
                loop_times[method, k].append(epoch(method, k, r + 1))
    plain, mw = statistics.median(times["ce"]), statistics.median(times["mwnet"])
    bare = {"ce": plain, "mwnet": mw}
    loop = [{"method": m, "steps_per_call": k, "step_s": statistics.median(v),
             "vs_bare_step": statistics.median(v) / bare[m]} for (m, k), v in loop_times.items()]
    return {"model": model, "parameters": params, "batch_size": batch_size,
            "input_shape": list(input_shape), "jit_compile": jit_compile,
            "plain_step_s": plain, "mwnet_step_s": mw, "ratio": mw / plain,
            "plain_examples_per_s": batch_size / plain, "mwnet_examples_per_s": batch_size / mw,
            "device": ", ".join(d.device_type for d in tf.config.list_logical_devices()),
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "loop": loop}


def memory_probe(method: str, model: str, batch_size: int, classes: int,
                 input_shape: tuple[int, ...], steps: int = 3) -> dict:
    """Peak memory of `steps` training steps of one kind, in this process: the resident set
    (bytes) once the models are built, and its peak over the steps (Linux `/proc/self/status`
    VmRSS and VmHWM, the peak reset by `clear_refs` first; `ru_maxrss` cannot be used: it
    carries the parent's peak across `exec`); the GPU allocator's peak when a GPU is present.
    Run it in a fresh process per method (`--memory` does)."""
    import numpy as np
    import tensorflow as tf

    from mwnet_tf import meta, optim
    from mwnet_tf.models import build_classifier, build_weight_net

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
        raise RuntimeError(f"no {field} in /proc/self/status")

    rng = np.random.default_rng(0)
    data = {"x": tf.constant(rng.normal(size=(batch_size, *input_shape)).astype("float32")),
            "y": tf.constant(rng.integers(0, classes, batch_size).astype("int32"))}
    clf = build_classifier(model, classes, input_shape, seed=0)
    wnet = build_weight_net(seed=1)
    opt, meta_opt = optim.TorchSGD(0.1, momentum=0.9), optim.TorchAdam(1e-3)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    step = meta.make_train_step(method, clf, opt, meta.StepOptions(batch_size, batch_size),
                                weight_net=wnet, meta_optimizer=meta_opt)
    clf(data["x"][:1])  # weights materialized before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = status("VmRSS")
    for _ in range(steps):
        float(step(data, data)["loss_sum"])
    out = {"method": method, "peak_rss_before_steps": before, "peak_rss": status("VmHWM")}
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        out["gpu_peak_bytes"] = tf.config.experimental.get_memory_info(gpus[0].name)["peak"]
    return out


def measure_memory(model: str, batch_size: int, classes: int,
                   input_shape: tuple[int, ...]) -> dict:
    """`memory_probe` of the plain and the MW-Net step, each in its own process."""
    import subprocess
    import sys

    probes = {}
    for method in ("ce", "mwnet"):
        proc = subprocess.run(
            [sys.executable, "-m", "mwnet_tf.bench", f"--memory_child={method}",
             f"--model={model}", f"--batch_size={batch_size}", f"--classes={classes}",
             f"--input_shape={','.join(str(d) for d in input_shape)}"],
            capture_output=True, text=True, check=True)
        probes[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    ce, mw = probes["ce"], probes["mwnet"]
    out = {"plain": ce, "mwnet": mw, "rss_ratio": mw["peak_rss"] / ce["peak_rss"],
           "step_rss_ratio": ((mw["peak_rss"] - mw["peak_rss_before_steps"])
                              / max(1, ce["peak_rss"] - ce["peak_rss_before_steps"]))}
    if "gpu_peak_bytes" in ce:
        out["gpu_ratio"] = mw["gpu_peak_bytes"] / ce["gpu_peak_bytes"]
    return out


def main(argv: list[str]) -> None:
    shape = (tuple(int(s) for s in FLAGS.input_shape) if FLAGS.input_shape
             else DEFAULT_SHAPES[FLAGS.model])
    if FLAGS.memory_child:
        print(json.dumps(memory_probe(FLAGS.memory_child, FLAGS.model, FLAGS.batch_size,
                                      FLAGS.classes, shape)))
        return
    r: dict = {"model": FLAGS.model, "loop": []}
    if FLAGS.time:
        r = benchmark(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape, runs=FLAGS.runs,
                      warmup=FLAGS.warmup, rounds=FLAGS.rounds, jit_compile=FLAGS.jit_compile,
                      loop_steps_per_call=tuple(int(k) for k in FLAGS.steps_per_call)
                      if FLAGS.loop else (), loop_steps=FLAGS.loop_steps)
        print(f"{r['model']} ({r['parameters']:,} parameters), batch {r['batch_size']}, "
              f"jit {r['jit_compile']}, TF {r['tensorflow']} on {r['cpu_count']} CPU cores "
              f"[{r['device']}]")
        print(f"plain step  {r['plain_step_s']:.3f} s  {r['plain_examples_per_s']:.0f} "
              "examples/s")
        print(f"MW-Net step {r['mwnet_step_s']:.3f} s  {r['mwnet_examples_per_s']:.0f} "
              "examples/s")
        print(f"ratio {r['ratio']:.2f}x")
    for row in r["loop"]:
        print(f"trainer loop, {row['method']:5s} steps_per_call={row['steps_per_call']:<3d} "
              f"{row['step_s']:.4f} s per step  ({row['vs_bare_step']:.2f}x the bare step)")
    if FLAGS.memory:
        m = measure_memory(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape)
        r["memory"] = m
        mib = 2.0 ** 20
        for name in ("plain", "mwnet"):
            p = m[name]
            print(f"memory, {name:5s} step: peak RSS {p['peak_rss'] / mib:.0f} MiB "
                  f"({(p['peak_rss'] - p['peak_rss_before_steps']) / mib:.0f} MiB above the "
                  "models alone)" + (f", GPU peak {p['gpu_peak_bytes'] / mib:.0f} MiB"
                                     if "gpu_peak_bytes" in p else ""))
        print(f"memory ratio MW-Net / plain: peak RSS {m['rss_ratio']:.2f}x, the steps' own "
              f"{m['step_rss_ratio']:.2f}x" + (f", GPU {m['gpu_ratio']:.2f}x"
                                               if "gpu_ratio" in m else ""))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(r, f, indent=2)


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
