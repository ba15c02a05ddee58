"""Step-time benchmark: a plain cross-entropy step vs a full MW-Net step, same model and batch,
in one process. Prints the median step time of each (after warm-up), their ratio and
examples per second.

    python -m mwnet_tf.bench --model=resnet32 --batch_size=100
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
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


DEFAULT_SHAPES = {"resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3), "resnet50": (224, 224, 3),
                  "mlp": (8, 8, 1), "cnn": (28, 28, 1), "tiny": (8, 8, 1)}


def benchmark(model: str, batch_size: int, classes: int, input_shape: tuple[int, ...], *,
              runs: int, warmup: int, rounds: int, jit_compile: bool) -> dict:
    """Median seconds per step of the plain and the MW-Net step (library entry point)."""
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
    times = {"ce": [], "mwnet": []}
    for _ in range(rounds):
        for method, step in steps.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                float(step(data, meta_data)["loss_sum"])  # waits for the step to finish
                times[method].append(time.perf_counter() - t0)
    plain, mw = statistics.median(times["ce"]), statistics.median(times["mwnet"])
    return {"model": model, "parameters": params, "batch_size": batch_size,
            "input_shape": list(input_shape), "jit_compile": jit_compile,
            "plain_step_s": plain, "mwnet_step_s": mw, "ratio": mw / plain,
            "plain_examples_per_s": batch_size / plain, "mwnet_examples_per_s": batch_size / mw,
            "device": ", ".join(d.device_type for d in tf.config.list_logical_devices()),
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "tensorflow": tf.__version__, "keras": keras.__version__}


def main(argv: list[str]) -> None:
    shape = (tuple(int(s) for s in FLAGS.input_shape) if FLAGS.input_shape
             else DEFAULT_SHAPES[FLAGS.model])
    r = benchmark(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape, runs=FLAGS.runs,
                  warmup=FLAGS.warmup, rounds=FLAGS.rounds, jit_compile=FLAGS.jit_compile)
    print(f"{r['model']} ({r['parameters']:,} parameters), batch {r['batch_size']}, "
          f"jit {r['jit_compile']}, TF {r['tensorflow']} on {r['cpu_count']} CPU cores "
          f"[{r['device']}]")
    print(f"plain step  {r['plain_step_s']:.3f} s  {r['plain_examples_per_s']:.0f} examples/s")
    print(f"MW-Net step {r['mwnet_step_s']:.3f} s  {r['mwnet_examples_per_s']:.0f} examples/s")
    print(f"ratio {r['ratio']:.2f}x")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(r, f, indent=2)


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
