"""XLA against no XLA: the step time of the plain (ce) and the exact MW-Net step of one model
with `--jit_compile` off and on, in one process, the two settings alternating round by round.
`--replicas=2` splits the CPU into 2 logical devices and times the steps under
MirroredStrategy (global batch `--batch_size`), which `mwnet_tf.bench` cannot.

    python -m mwnet_tf.bench_jit --model=mlp --json=runs/reference/bench/jit_mlp.json
    python -m mwnet_tf.bench_jit --model=cnn --replicas=2 --json=...

The JSON holds one row per step and setting and `jit_ratio` (jit time / no-jit time) per
step; `mwnet_tf.report`'s block `bench:jit` tabulates every such file.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

from mwnet_tf import files
from mwnet_tf.benchmarking.variants import VARIANTS
from mwnet_tf.cli import commandline
from mwnet_tf.config import JIT_MODELS

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("model", "mlp", JIT_MODELS, "Classifier.")
    flags.DEFINE_integer("batch_size", 100, "Global batch size (training and meta).",
                         lower_bound=2)
    flags.DEFINE_list("variants", ["ce", "mwnet"], f"Steps to compare: {', '.join(VARIANTS)}.")
    flags.DEFINE_integer("replicas", 1, "1: one device; 2: MirroredStrategy on 2 logical CPUs.",
                         lower_bound=1, upper_bound=2)
    flags.DEFINE_integer("runs", 10, "Timed steps per step, setting and round.", lower_bound=1)
    flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, compilation).",
                         lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Alternate the settings this many times.", lower_bound=1)
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        commandline.fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    with commandline.quiet_stderr():  # heavy imports only once the flags are valid
        from mwnet_tf.benchmarking import jit
    jit.split_cpu(FLAGS.replicas)
    load_before = os.getloadavg()
    r = jit.measure(FLAGS.model, FLAGS.batch_size, tuple(FLAGS.variants), replicas=FLAGS.replicas,
                runs=FLAGS.runs, warmup=FLAGS.warmup, rounds=FLAGS.rounds)
    r["loadavg_before_after"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    print(f"{r['model']}, batch {r['batch_size']}, {r['replicas']} replica(s)")
    for row in r["rows"]:
        print(f"{row['variant']:6s} jit {str(row['jit_compile']):5s} "
              + (f"{row['step_s']:.4f} s per step" if "step_s" in row else row["error"]))
    for v, ratio in r["jit_ratio"].items():
        print(f"{v}: jit / no jit {ratio:.2f}x")
    if FLAGS.json:
        r["command"] = " ".join(["python -m mwnet_tf.bench_jit"] + [
            a for a in sys.argv[1:] if not a.startswith("--json")])
        r["date"] = time.strftime("%Y-%m-%d %H:%M")
        files.write_text(FLAGS.json, json.dumps(r, indent=2))


def run() -> None:
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
