"""Chooses MW-Net's weight-net settings for own data on evidence: own-data files made from a
built-in set, a validation part held out of its training data, each candidate setting run
through the real CLI (`python -m mwnet_tf.train --dataset=npz`, own-data defaults otherwise).

    python benchmarks/own_data_defaults.py --out=/tmp/own_defaults \\
        --json=benchmarks/own_data_defaults_digits.json
    python benchmarks/own_data_defaults.py --dataset=fashion_mnist --train_per_class=200 \\
        --cases=flip0.3,clean --candidates=adam1e-3,sgd1e-5 --seeds=0 --out=/tmp/own_defaults \\
        --json=benchmarks/own_data_defaults_fashion.json

For each case (`--cases`: flip0.3, clean, longtail10) and seed it writes
OUT/data/DATASET-CASE-sS.npz: the set's training split (digits: 1,297 images; the set's own test
split is never touched) less a stratified, seeded validation part of `--val_per_class` clean
images per class, which the npz holds as its test split (`x_test`, `y_test`: the run's "test
accuracy" is a validation accuracy); of the rest (`--train_per_class` per class, if given),
`--meta_per_class` clean images per class are the trusted set (`x_meta`) and the labels of the
others are biased on the file's side (`mwnet_tf.data.make_biased_data`: flip noise, or a long
tail), with `y_train_true` beside them so that the run measures how well its ranking finds the
wrong labels. Digits are written as feature vectors [N, 64] (the own-data model is then the
MLP), Fashion-MNIST as uint8 images (the CNN). Each candidate (`CANDIDATES` below) then trains
MW-Net on the file with only the five weight-net flags set, in OUT/runs/DATASET-CASE-CAND-sS.
The JSON keeps per run: final and best validation accuracy, the detection AUROC of the run's
ranking (`label_issue_detection.auroc`: by MW-Net's learned weight) and of the plain loss, the
last epoch's mean weight of clean and of corrupted training samples, and the learned weight
curve; the script ends with a table of means over seeds. A run already in the JSON is skipped
(rerun the same command to resume or to print the table).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

from mwnet_tf.cli import commandline

FLAGS = flags.FLAGS

# The weight-net settings tried, name -> flags; each sets all five weight-net flags.
CANDIDATES = {
    # the noisy-label scripts' weight net (the paper's Tables 2-3, flip noise)
    "adam1e-3": ["--meta_optimizer=adam", "--meta_lr=1e-3", "--meta_weight_decay=1e-4",
                 "--meta_momentum=0.9", "--nometa_nesterov"],
    # the long-tail script's (Table 1)
    "sgd1e-5": ["--meta_optimizer=sgd", "--meta_lr=1e-5", "--meta_weight_decay=5e-4",
                "--meta_momentum=0.9", "--meta_nesterov"],
    # the uniform-noise script's (Table 2, uniform)
    "sgd1e-3": ["--meta_optimizer=sgd", "--meta_lr=1e-3", "--meta_weight_decay=5e-4",
                "--meta_momentum=0.9", "--meta_nesterov"],
    # Adam, ten times slower
    "adam1e-4": ["--meta_optimizer=adam", "--meta_lr=1e-4", "--meta_weight_decay=1e-4",
                 "--meta_momentum=0.9", "--nometa_nesterov"],
}
# The biases of the files: case -> make_biased_data arguments.
CASES = {
    "flip0.3": dict(noise="flip", rate=0.3, imbalance=1.0),
    "clean": dict(noise="none", rate=0.0, imbalance=1.0),
    "longtail10": dict(noise="none", rate=0.0, imbalance=10.0),
}


def define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder for the npz files and run folders (created).")
    flags.DEFINE_string("json", None, "Results file (read to resume, rewritten after each run).")
    flags.DEFINE_enum("dataset", "digits", ["digits", "fashion_mnist"], "Built-in set the "
                      "files are made from.")
    flags.DEFINE_integer("train_per_class", None, "Keep this many training images per class "
                         "(before the bias; default: all).", lower_bound=1)
    flags.DEFINE_list("cases", list(CASES), f"Cases, of {', '.join(CASES)}.")
    flags.DEFINE_list("candidates", list(CANDIDATES), f"Candidates, of {', '.join(CANDIDATES)}.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (file and run).")
    flags.DEFINE_integer("val_per_class", 30, "Clean validation images per class, held out of "
                         "the training split.", lower_bound=1)
    flags.DEFINE_integer("meta_per_class", 10, "Trusted images per class.", lower_bound=1)
    flags.DEFINE_list("extra", [], "Further train flags for every run, e.g. --epochs=10.")


def own_arrays(dataset: str, case: str, seed: int, *, val_per_class: int, meta_per_class: int,
               train_per_class: int | None = None) -> dict:
    """The arrays of one own-data file: the built-in set's training split less a validation
    part (the file's test split; the set's own test split is never used), a trusted set and
    the biased training set."""
    from mwnet_tf.data import load_dataset, make_biased_data

    ds = load_dataset(dataset)
    rng = np.random.default_rng([seed, 7])  # the validation draw's own stream
    by_class = [rng.permutation(np.flatnonzero(ds.train_y == c)) for c in range(ds.num_classes)]
    val = np.sort(np.concatenate([i[:val_per_class] for i in by_class]))
    rest = np.sort(np.concatenate([i[val_per_class:] if train_per_class is None else
                                   i[val_per_class:val_per_class + meta_per_class
                                     + train_per_class] for i in by_class]))
    held = dataclasses.replace(ds, train_x=ds.train_x[rest], train_y=ds.train_y[rest],
                               test_x=ds.train_x[val], test_y=ds.train_y[val])
    b = make_biased_data(held, meta_per_class=meta_per_class, seed=seed, **CASES[case])
    if dataset == "digits":
        # feature vectors [N, 64] (an npz of tabular data: the own-data model is then the MLP
        # of the built-in digits runs; uint8 8x8 images would get the CNN)
        form = lambda x: x.reshape(len(x), -1).astype(np.float32)
    else:  # uint8 images [N, H, W, C]: the own-data model is the CNN
        form = lambda x: x
    return {"x_train": form(b.train_x), "y_train": b.train_y, "y_train_true": b.train_clean_y,
            "x_meta": form(b.meta_x), "y_meta": b.meta_y, "x_test": form(b.test_x),
            "y_test": b.test_y}


def summary(results: dict) -> dict:
    """What the JSON keeps of a run's results.json."""
    det = results.get("label_issue_detection") or {}
    train = results.get("train", {})
    return {"val_accuracy": results["test_accuracy"],
            "best_val_accuracy": results["best_test_accuracy"],
            "weight_auroc": det.get("auroc"), "loss_auroc": det.get("loss_auroc"),
            "weight_clean": train.get("weight_clean"),
            "weight_corrupted": train.get("weight_corrupted"),
            "realized_noise_rate": results.get("realized_noise_rate"),
            "weight_curve": results.get("weight_curve"),
            "wall_seconds": results.get("wall_seconds_this_session")}


def _mean_std(values) -> tuple[float, float]:
    v = [x for x in values if x is not None]
    if not v:
        return float("nan"), 0.0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _rise(run: dict) -> float | None:
    """The learned weight at loss 8 less that at loss 0 (> 0: it rises with the loss)."""
    c = run.get("weight_curve") or {}
    return c["8"] - c["0"] if "8" in c and "0" in c else None


def table(runs: dict) -> str:
    """A markdown table of means (sample std) over seeds, one row per data set, case and
    candidate."""
    lines = ["| data set | case | weight net | seeds | val. acc. (%) | AUROC by weight | "
             "AUROC by loss | w(8) - w(0) |", "|---|---|---|---:|---:|---:|---:|---:|"]
    groups: dict = {}
    for r in runs.values():
        groups.setdefault((r.get("dataset", "digits"), r["case"], r["candidate"]), []).append(r)
    for (dataset, case, cand), g in sorted(groups.items()):
        acc = _mean_std(r["val_accuracy"] for r in g)
        auc = _mean_std(r["weight_auroc"] for r in g)
        loss_auc = _mean_std(r["loss_auroc"] for r in g)[0]
        rise = _mean_std(_rise(r) for r in g)[0]
        aucs = ("-", "-") if np.isnan(auc[0]) else (f"{auc[0]:.3f} (sd {auc[1]:.3f})",
                                                     f"{loss_auc:.3f}")
        lines.append(f"| {dataset} | {case} | {cand} | {len(g)} | {acc[0]:.2f} (sd {acc[1]:.2f}) | "
                     f"{aucs[0]} | {aucs[1]} | {rise:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        commandline.fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    if not FLAGS.out or not FLAGS.json:
        commandline.fail("--out and --json are required", 2)
    for name, known in (("cases", CASES), ("candidates", CANDIDATES)):
        bad = [v for v in getattr(FLAGS, name) if v not in known]
        if bad:
            commandline.fail(f"--{name}: unknown {', '.join(bad)}", 2)
    runs = {}
    if os.path.exists(FLAGS.json):
        with open(FLAGS.json) as f:
            runs = json.load(f)["runs"]
    os.makedirs(os.path.join(FLAGS.out, "data"), exist_ok=True)
    for seed in [int(s) for s in FLAGS.seeds]:
        for case in FLAGS.cases:
            path = os.path.join(FLAGS.out, "data", f"{FLAGS.dataset}-{case}-s{seed}.npz")
            if not os.path.exists(path):
                np.savez_compressed(path, **own_arrays(
                    FLAGS.dataset, case, seed, val_per_class=FLAGS.val_per_class,
                    meta_per_class=FLAGS.meta_per_class, train_per_class=FLAGS.train_per_class))
            for cand in FLAGS.candidates:
                key = f"{FLAGS.dataset}-{case}-{cand}-s{seed}"
                if key in runs:
                    continue
                workdir = os.path.join(FLAGS.out, "runs", key)
                cmd = [sys.executable, "-m", "mwnet_tf.train", "--dataset=npz",
                       f"--data_dir={path}", "--method=mwnet", f"--seed={seed}",
                       f"--workdir={workdir}", "--notensorboard_images", *CANDIDATES[cand],
                       *FLAGS.extra]
                start = time.time()
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{key}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
                    continue
                with open(os.path.join(workdir, "results.json")) as f:
                    runs[key] = dict(dataset=FLAGS.dataset, case=case, candidate=cand, seed=seed,
                                     **summary(json.load(f)))
                print(f"{key}: val acc {runs[key]['val_accuracy']:.2f}, weight AUROC "
                      f"{runs[key]['weight_auroc']}, {time.time() - start:.0f} s", flush=True)
                tmp = FLAGS.json + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"command": " ".join(["python", "benchmarks/own_data_defaults.py",
                                                    *sys.argv[1:]]),
                               "candidates": CANDIDATES, "cases": CASES,
                               "runs": runs},
                              f, indent=1, sort_keys=True)
                os.replace(tmp, FLAGS.json)
    print(table(runs))


if __name__ == "__main__":
    commandline.run(main, define_flags, __doc__)
