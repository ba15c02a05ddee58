"""Figures of a run: the tracked samples' statistics, and the plot command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mwnet_tf import plot
from mwnet_tf.config import Config
from mwnet_tf.training import diagnostics, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tracked_samples_are_seeded_distinct_and_in_range():
    a, b = diagnostics.tracked_indices(5000, 3), diagnostics.tracked_indices(5000, 3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 2000 and a.min() >= 0 and a.max() < 5000
    assert not np.array_equal(a, diagnostics.tracked_indices(5000, 4))
    assert len(diagnostics.tracked_indices(300, 0)) == 300


def test_epoch_summary_counts_means_and_variation():
    rng = np.random.default_rng(0)
    losses = rng.exponential(1.0, 400)
    corrupted = rng.random(400) < 0.3
    weights, before = rng.random(400), rng.random(400)
    s = diagnostics.epoch_summary(losses, corrupted, weights, before)
    assert sum(s["loss_histogram"]["clean"]) == (~corrupted).sum()
    assert sum(s["loss_histogram"]["corrupted"]) == corrupted.sum()
    assert s["loss_histogram"]["bins"][-1] >= losses.max()
    assert sum(s["weight_histogram"]["corrupted"]) == corrupted.sum()
    assert s["weight_clean"] == pytest.approx(weights[~corrupted].mean())
    assert s["weight_corrupted"] == pytest.approx(weights[corrupted].mean())
    assert s["weight_variation_mean"] == pytest.approx(np.abs(weights - before).mean())
    assert s["weight_variation_std"] == pytest.approx((weights - before).std())
    plain = diagnostics.epoch_summary(losses, corrupted, None, None)
    assert set(plain) == {"loss_histogram"}
    # weights above 1 (L2RW's n * w_i) widen the bins to the next whole number
    wide = diagnostics.epoch_summary(losses, corrupted, 3.2 * weights, None)
    assert wide["weight_histogram"]["bins"][-1] == 4.0
    assert sum(wide["weight_histogram"]["clean"]) == (~corrupted).sum()
    assert s["weight_histogram"]["bins"][-1] == 1.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    small = dict(dataset="digits", model="tiny", epochs=2, lr_decay_epochs=(1,),
                 batch_size=100, meta_batch_size=50, progress_seconds=0.0, seed=1,
                 tensorboard_images=False)  # plot reads results.json, not TensorBoard
    for method in ("mwnet", "ce", "l2rw"):
        loop.train_and_evaluate(Config(**small, method=method), str(root / method),
                                   log=lambda s: None)
    return root


@pytest.mark.e2e
def test_plot_command_writes_every_figure(runs, tmp_path):
    out = tmp_path / "figs"
    proc = subprocess.run([sys.executable, "-m", "mwnet_tf.plot", str(runs / "mwnet"),
                           str(runs / "ce"), f"--out={out}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(out))
    assert names == ["confusion_matrices.png", "test_accuracy.png", "weight_functions.png",
                     "weight_histograms.png", "weight_variation.png"]
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a run without a weight function gives only the figures that do not need one
    only_ce = plot.plot([str(runs / "ce")], str(tmp_path / "ce"))
    assert sorted(os.path.basename(p) for p in only_ce) == ["confusion_matrices.png",
                                                          "test_accuracy.png"]
    # L2RW weighs samples without a function of the loss: its weights' histograms and
    # variation (Fig. 6, beside MW-Net's), no weight-function curve
    l2rw = plot.plot([str(runs / "l2rw")], str(tmp_path / "l2rw"))
    assert sorted(os.path.basename(p) for p in l2rw) == [
        "confusion_matrices.png", "test_accuracy.png", "weight_histograms.png",
        "weight_variation.png"]


def test_labels_name_method_setting_and_seed(runs):
    results = json.loads((runs / "mwnet" / "results.json").read_text())
    assert plot.label(results) == "mwnet, uniform 0.4, seed 1"


@pytest.mark.e2e
def test_a_run_missing_what_a_figure_needs_is_one_line(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    old = tmp_path / "old"
    old.mkdir()
    results = json.loads((runs / "ce" / "results.json").read_text())
    del results["history"]
    (old / "results.json").write_text(json.dumps(results))
    for folder, needle in ((empty, f"{empty}: no results.json"),
                           (old, f"{old}/results.json has no history")):
        proc = subprocess.run([sys.executable, "-m", "mwnet_tf.plot", str(folder),
                               f"--out={tmp_path}/o"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


def test_mean_weight_of_a_history_row_weighs_clean_and_corrupted_by_their_counts():
    hist = {"bins": [0, 0.5, 1], "clean": [3, 1], "corrupted": [1, 0]}
    row = {"weight_clean": 0.5, "weight_corrupted": 0.1}
    assert plot.mean_weight(row, hist) == pytest.approx((4 * 0.5 + 0.1) / 5)
    clean_only = {"bins": [0, 1], "clean": [2], "corrupted": [0]}
    assert plot.mean_weight({"weight_clean": 0.3, "weight_corrupted": None},
                            clean_only) == pytest.approx(0.3)


def _epoch_data(seed, scale, corrupted):
    """A tracked-samples summary and the weight function on its grid."""
    rng = np.random.default_rng(seed)
    losses = rng.exponential(scale, len(corrupted))
    weights = 1 / (1 + np.exp(losses - 1)) * rng.uniform(0.8, 1.0, len(corrupted))
    summary = diagnostics.epoch_summary(losses, corrupted, weights, None)
    grid = diagnostics.loss_grid(losses)
    return grid, 1 / (1 + np.exp(grid - 1)), summary


def test_reused_epoch_figures_draw_the_pictures_of_fresh_figures():
    """`EpochFigures` builds each figure once and draws it again each epoch: after epochs of
    other data (other ranges of losses and counts, histograms without corrupted samples,
    weights above 1) its pictures are, pixel for pixel, those of figures built for the
    epoch's data alone."""
    from mwnet_tf.reporting import figures

    rng = np.random.default_rng(0)
    corrupted = rng.random(2000) < 0.4
    reused = figures.EpochFigures()
    epochs = [(0.5, corrupted), (6.0, corrupted), (1.0, np.zeros(2000, bool)), (3.0, corrupted),
              (0.2, corrupted)]
    for epoch, (scale, bad) in enumerate(epochs, 1):
        grid, weights, summary = _epoch_data(epoch, scale, bad)
        if epoch == 4:  # weights above 1: other bins
            summary = diagnostics.epoch_summary(np.exp(-grid), bad[:len(grid)], 3.2 * weights,
                                                None)
        args = (grid, weights, summary["loss_histogram"], f"weight function, epoch {epoch}")
        np.testing.assert_array_equal(reused.weight_function(*args),
                                      figures.to_rgba(figures.weight_function(*args)))
        hist = (summary["weight_histogram"], f"weights, epoch {epoch}")
        np.testing.assert_array_equal(reused.weight_histograms(*hist),
                                      figures.to_rgba(figures.weight_histograms(*hist)))
    assert len(reused._figures) == 2  # one figure of each kind, kept


def test_confusion_matrix_drawn_cell_by_cell_is_the_fresh_picture():
    """The per-epoch confusion matrix draws only the cells that changed (and the title): its
    pictures equal a fresh figure's of the same matrix, and the plot command's, but for the
    rounding of a few pixels where a tick mark crosses a redrawn border cell (at most one
    level of 255)."""
    import io

    import matplotlib.image

    from mwnet_tf.reporting import figures

    rng = np.random.default_rng(0)
    matrices = [rng.integers(0, 30, (10, 10)) + np.diag(rng.integers(0, 300, 10))]
    for change in ([(4, 5), (5, 4)], [(0, 3), (9, 9), (2, 0)], [], "all", [(3, 3)]):
        m = matrices[-1].copy()
        if change == "all":
            m = rng.integers(0, 30, (10, 10))
            m[3] = 0  # a class without test images
        for i, j in change if change != "all" else ():
            m[i, j] += 7
        matrices.append(m)
    figure = figures.ConfusionFigure(10)
    for epoch, m in enumerate(matrices, 1):
        title = f"test confusion matrix, epoch {epoch}"
        got = figure.render(m, title).astype(int)
        fresh = figures.to_rgba(figures.confusion_matrix(m, title))
        plotted = np.round(255 * matplotlib.image.imread(io.BytesIO(figures.to_png(
            figures.confusion_matrices([(title, m)]))), format="png")).astype(np.uint8)
        np.testing.assert_array_equal(fresh, plotted)
        assert got.shape == fresh.shape
        off = np.abs(got - fresh).max(-1)
        assert off.max() <= 1 and (off > 0).sum() <= 20, (epoch, off.max(), (off > 0).sum())
