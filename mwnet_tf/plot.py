"""PNG figures from finished run folders (their `results.json` alone).

    python -m mwnet_tf.plot runs/fashion/fashion_flip0.4-mwnet-s0 runs/fashion/... --out figs

Writes to `--out`:
- `weight_functions.png`: the learned weight functions of the runs that have one, overlaid
  (the paper's Fig. 1 (d)-(f));
- `confusion_matrices.png`: the final test confusion matrices side by side (Fig. 3);
- `test_accuracy.png`: test accuracy per epoch (Fig. 4);
- `weight_histograms.png`: weights of clean and corrupted tracked samples in the last epoch,
  one panel per run that weighs samples (Fig. 5);
- `weight_variation.png`: mean absolute change of the tracked samples' weights per epoch, with
  its standard deviation as a band (Fig. 6): MW-Net's weight net beside L2RW's meta-gradient
  weights (`n * w_i`, 1 the uniform weight of a batch of n) when both runs are given; beside
  it the same divided by the epoch's mean tracked weight, since the two methods' weights
  live on different scales.

With `--cost`, the folders are the runs of one cost comparison (cross-entropy, the exact
MW-Net step and its cheap variants, the same seeds; `mwnet_tf.reporting.cost`), and the one
figure written is `accuracy_vs_cost.png`: final test accuracy (mean over seeds, bars one
sample std) against wall time relative to cross-entropy, one panel per setting, the exact
step's accuracy less 0.5 points and 1.1x cross-entropy's time drawn as the goal's edges.

    python -m mwnet_tf.plot --cost runs/reference/fashion_memorize_cost/* --out figs

A run folder without `results.json`, or whose `results.json` lacks what a figure needs (runs
written before this version have no per-epoch history), is a one-line error naming the
folder and the file, exit 2.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from mwnet_tf import files
from mwnet_tf.cli import commandline
from mwnet_tf.errors import PlotError

FLAGS = flags.FLAGS
NEEDED = ("history", "confusion_matrix")


def define_flags() -> None:
    flags.DEFINE_string("out", "figures", "Folder for the PNG files (created).")
    flags.DEFINE_boolean("cost", False, "Only the accuracy-against-cost figure of the runs "
                         "(accuracy_vs_cost.png).")


def load_run(folder: str) -> dict:
    path = os.path.join(folder, files.RESULTS)
    if not os.path.isfile(path):
        raise PlotError(f"{folder}: no results.json (is it a finished run folder?)")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PlotError(f"{path}: not readable JSON ({e})") from None
    missing = [k for k in NEEDED if k not in results]
    if missing:
        raise PlotError(f"{path} has no {' or '.join(missing)} (written before per-epoch "
                        "history was kept: rerun it with this version)")
    if "heldout_noisy_accuracy" in results:
        raise PlotError(f"{path}: a run evaluated on a part of its training set held out with "
                        "its given labels (heldout_noisy_accuracy) has no test accuracy to plot")
    return results


def label(results: dict) -> str:
    """The run's setting in a few words: method, noise or long tail, seed."""
    from mwnet_tf.reporting.tables import setting, setting_label

    c = results.get("config", {})
    extra = ""
    if c.get("meta_scope", "full") != "full":
        extra += f" {c['meta_scope']}"
    if int(c.get("meta_interval", 1)) != 1:
        extra += f" every {c['meta_interval']}"
    where = setting_label(*setting(c)) if "noise" in c else "?"
    return f"{c.get('method', '?')}{extra}, {where}, seed {c.get('seed', '?')}"


def plot(folders: list[str], out: str) -> list[str]:
    """Writes the figures of the runs in `folders` to `out`; returns the files written."""
    from mwnet_tf.reporting import figures

    runs = [(folder, load_run(folder)) for folder in folders]
    labels = [label(r) for _, r in runs]
    os.makedirs(out, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out, name)
        files.write_bytes(path, figures.to_png(fig))
        written.append(path)

    hist = [(lab, [row["epoch"] for row in r["history"]],
             [row["test_accuracy"] for row in r["history"]]) for lab, (_, r) in zip(labels, runs)]
    save(figures.curves(hist, "epoch", "test accuracy (%)", "Test accuracy per epoch"),
         "test_accuracy.png")
    save(figures.confusion_matrices([(lab, r["confusion_matrix"])
                                     for lab, (_, r) in zip(labels, runs)]),
         "confusion_matrices.png")
    functions = [(lab, r) for lab, (_, r) in zip(labels, runs) if "weight_function" in r]
    if functions:
        save(figures.curves(_function_curves(functions), "training loss", "weight",
                            "Learned weight functions"),
             "weight_functions.png")
    weighted = [(lab, r) for lab, (_, r) in zip(labels, runs) if "weight_histogram" in r]
    if weighted:
        save(figures.histogram_panels([(lab, r["weight_histogram"]) for lab, r in weighted],
                                      "weight"), "weight_histograms.png")
    varying = [(lab, r) for lab, r in weighted
               if any("weight_variation_mean" in row for row in r["history"])]
    if varying:
        series, bands, relative, relative_bands = [], [], [], []
        for lab, r in varying:
            rows = [row for row in r["history"] if "weight_variation_mean" in row]
            epochs = [row["epoch"] for row in rows]
            series.append((lab, epochs, [row["weight_variation_mean"] for row in rows]))
            bands.append([row["weight_variation_std"] for row in rows])
            means = [mean_weight(row, r["weight_histogram"]) for row in rows]
            relative.append((lab, epochs, [row["weight_variation_mean"] / m
                                           for row, m in zip(rows, means)]))
            relative_bands.append([row["weight_variation_std"] / m
                                   for row, m in zip(rows, means)])
        save(figures.curve_panels([
            (series, "epoch", "mean |change of weight|",
             "Weight variation of tracked samples", bands),
            (relative, "epoch", "mean |change of weight| / mean weight",
             "Relative to the epoch's mean weight", relative_bands)]),
            "weight_variation.png")
    return written


def plot_cost(folders: list[str], out: str) -> list[str]:
    """Writes `accuracy_vs_cost.png` of the runs in `folders`; returns the file written."""
    from mwnet_tf.reporting import cost, figures
    from mwnet_tf.reporting.tables import ReportError, read_results

    runs = []
    for folder in folders:
        path = os.path.join(folder, files.RESULTS)
        if not os.path.isfile(path):
            raise PlotError(f"{folder}: no results.json (is it a finished run folder?)")
        try:
            runs.append((folder, read_results(path)))
        except ReportError as e:
            raise PlotError(str(e)) from None
    try:
        settings = cost.points(runs)
    except ReportError as e:
        raise PlotError(str(e)) from None
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "accuracy_vs_cost.png")
    files.write_bytes(path, figures.to_png(figures.cost_panels(settings, cost.WITHIN,
                                                                 cost.GOAL, cost.EXACT)))
    return [path]


def _function_curves(functions) -> list[tuple[str, list, list]]:
    """One line per run's weight function; a class-aware one (CMW-Net) one per class group."""
    out = []
    for lab, r in functions:
        wf = r["weight_function"]
        groups = wf.get("groups")
        if groups:
            out.extend((f"{lab}: {name}", wf["losses"], w) for name, w in groups.items())
        else:
            out.append((lab, wf["losses"], wf["weights"]))
    return out


def mean_weight(row: dict, weight_histogram: dict) -> float:
    """The mean weight of the tracked samples in a history row, from its clean and corrupted
    means and the numbers of clean and corrupted tracked samples (the same samples every
    epoch: the counts of the last epoch's weight histogram); the row's own mean when the truth
    of the labels is unknown."""
    if "weight_mean" in row:
        return row["weight_mean"]
    n_clean, n_bad = sum(weight_histogram["clean"]), sum(weight_histogram["corrupted"])
    total = n_clean * row["weight_clean"] + (n_bad * row["weight_corrupted"] if n_bad else 0.0)
    return total / (n_clean + n_bad)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        print("error: give one or more run folders: python -m mwnet_tf.plot RUN [RUN ...] "
              "--out DIR", file=sys.stderr)
        sys.exit(2)
    try:
        written = (plot_cost if FLAGS.cost else plot)(argv[1:], FLAGS.out)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)


def run() -> None:
    """The entry point of `python -m mwnet_tf.plot` and of the `mwnet-plot` script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
