"""Step-time and memory benchmark of the training steps users choose between, same model and
batch, in one process: plain cross-entropy, the exact MW-Net step, its approximations and
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
import sys
import time

from absl import app, flags

from mwnet_tf import files
from mwnet_tf.benchmarking import trace
from mwnet_tf.benchmarking.variants import VARIANTS
from mwnet_tf.cli import commandline
from mwnet_tf.config import MIXED_PRECISION, MODEL_SHAPES, MODELS

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("model", "resnet32", MODELS, "Classifier.")
    flags.DEFINE_integer("batch_size", 100, "Batch size (training and meta).", lower_bound=1)
    flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
    flags.DEFINE_list("input_shape", None, "Input shape H,W,C (default: the model's usual).")
    flags.DEFINE_list("variants", ["ce", "mwnet"],
                      "Steps to compare, the first the baseline of the ratios: "
                      f"{', '.join(VARIANTS)}.")
    flags.DEFINE_integer("meta_interval", 10, "K of the *_interval variants.", lower_bound=2)
    flags.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "As train's flag.")
    flags.DEFINE_integer("runs", 10, "Timed steps per variant and round (*_interval: "
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


def main(argv: list[str]) -> None:
    shape = (tuple(int(s) for s in FLAGS.input_shape) if FLAGS.input_shape
             else MODEL_SHAPES[FLAGS.model])
    unknown = [v for v in FLAGS.variants + [FLAGS.memory_child or "ce"] if v not in VARIANTS]
    if unknown or not FLAGS.variants:
        raise app.UsageError(f"--variants takes {', '.join(VARIANTS)}; got {unknown or 'none'}")
    with commandline.quiet_stderr():
        from mwnet_tf.benchmarking import steps
    kw = dict(meta_interval=FLAGS.meta_interval, mixed_precision=FLAGS.mixed_precision)
    if FLAGS.memory_child:
        print(json.dumps(steps.memory_probe(FLAGS.memory_child, FLAGS.model, FLAGS.batch_size,
                                            FLAGS.classes, shape, **kw)))
        return
    variants = tuple(FLAGS.variants)
    r: dict = {"model": FLAGS.model, "loop": []}
    if FLAGS.time:
        r = steps.benchmark(
            FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape, runs=FLAGS.runs,
            warmup=FLAGS.warmup, rounds=FLAGS.rounds, jit_compile=FLAGS.jit_compile,
            variants=variants, loop_steps_per_call=tuple(
                int(k) for k in FLAGS.steps_per_call) if FLAGS.loop else (),
            loop_steps=FLAGS.loop_steps, profile=FLAGS.profile,
            profile_steps=FLAGS.profile_steps, **kw)
    _print_times(r)
    if FLAGS.memory:
        r["memory"] = steps.measure_memory(FLAGS.model, FLAGS.batch_size, FLAGS.classes, shape,
                                           variants, **kw)
        _print_memory(r["memory"], variants[0])
    if FLAGS.json:
        r["command"] = " ".join(["python -m mwnet_tf.bench"] + [
            a for a in sys.argv[1:] if not a.startswith("--json")])
        r["environment"] = {k: os.environ[k] for k in ("TF_NUM_INTEROP_THREADS",
                                                       "TF_NUM_INTRAOP_THREADS") if k in os.environ}
        r["date"] = time.strftime("%Y-%m-%d %H:%M")
        files.write_text(FLAGS.json, json.dumps(r, indent=2))


def _print_times(r: dict) -> None:
    if "steps" in r:
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
        print(f"profile of {v} ({FLAGS.profile}/{v}):")
        print(trace.format_breakdown(prof))


def _print_memory(m: dict, first: str) -> None:
    mib = 2.0 ** 20
    for v, p in m["probes"].items():
        print(f"memory, {v:14s}: peak RSS {p['peak_rss'] / mib:.0f} MiB "
              f"({(p['peak_rss'] - p['peak_rss_before_steps']) / mib:.0f} MiB above the "
              f"models alone), {m['rss_ratio'][v]:.2f}x the peak of {first}, "
              f"{m['step_rss_ratio'][v]:.2f}x its steps' own"
              + (f", GPU peak {p['gpu_peak_bytes'] / mib:.0f} MiB"
                 if "gpu_peak_bytes" in p else ""))


def run() -> None:
    """The entry point of `python -m mwnet_tf.bench` and of the `mwnet-bench` script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
