"""`--meta_source=selected` through the command line (`python -m mwnet_tf.train`): own data with
only a training set (folder, CSV without a split column, .npz without x_meta or x_test) trains
and leaves label_issues.csv and the classifier, its held-out part reported as
`heldout_noisy_accuracy`; the meta methods on digits select at the point they read the set and
record how clean it is; a run killed and rerun ends bitwise where an uninterrupted one ends."""

import csv
import json
import os
import signal

import numpy as np
import pytest
from cli import train_in_child  # (tests/cli.py)
from test_own_data import image_rows, make_folder, write_csv, write_npz

from mwnet_tf.outputs import prediction

pytestmark = pytest.mark.e2e

QUICK = ["--epochs=2", "--lr_decay_epochs=", "--progress_seconds=0", "--notensorboard_images"]
TAKEHOME = ("results.json", "classes.json", "label_issues.csv", "classifier.keras",
            "classifier.json", "history.json")
SMOKE = ["--flagfile=flags/smoke.cfg", "--progress_seconds=0", "--notensorboard_images"]


def _results(run):
    with open(os.path.join(run, "results.json")) as f:
        return json.load(f)


def _one_error_line(proc, code, *texts):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for text in texts:
        assert text in lines[0], lines[0]


def _own_training_only(tmp_path):
    """The three routes with a training set alone: {dataset: (data_dir, extra flags)}."""
    folder = make_folder(tmp_path / "folder", {"train": 12}, classes=("dog", "cat"))
    (tmp_path / "table").mkdir()
    rows = image_rows(tmp_path / "table", {"train": ["cat", "dog"] * 12})
    table = write_csv(tmp_path / "table", [r.rsplit(",", 1)[0] for r in rows], "path,label")
    (tmp_path / "arrays").mkdir()
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    given = np.where(np.arange(90) % 6 == 0, (y + 1) % 3, y)
    arrays = write_npz(tmp_path / "arrays", x_train=rng.normal(0, 1, (90, 5)) + y[:, None],
                       y_train=given, y_train_true=y)
    images = ["--image_size=16", "--batch_size=4", "--meta_batch_size=4"]
    return {"folder": (folder, images), "csv": (table, images),
            "npz": (arrays, ["--batch_size=10", "--meta_batch_size=6"])}


def test_own_data_with_only_a_training_set_trains_with_a_selected_meta_set(cli, tmp_path):
    routes = _own_training_only(tmp_path)
    for dataset, (data_dir, extra) in routes.items():
        run = str(tmp_path / f"run_{dataset}")
        argv = [f"--dataset={dataset}", f"--data_dir={data_dir}", *extra, *QUICK,
                f"--workdir={run}"]
        refused = cli.run(*argv)  # the default: a trusted set is needed
        _one_error_line(refused, 1, "--meta_source=selected")
        assert not os.path.exists(run)
        out = cli.run(*argv, "--meta_source=selected", "--select_per_class=3")
        assert out.returncode == 0, out.stderr[-3000:]
        for name in TAKEHOME:
            assert os.path.isfile(os.path.join(run, name)), (dataset, name)
        r = _results(run)
        classes = 3 if dataset == "npz" else 2
        assert r["meta_source"] == "selected" and r["config"]["meta_source"] == "selected"
        assert r["meta_selection"]["size"] == 3 * classes
        assert r["meta_selection"]["ranked_by"] == "classifier"
        assert "test_accuracy" not in r and "best_test_accuracy" not in r
        assert 0 <= r["heldout_noisy_accuracy"] <= 100 and "best_heldout_noisy_accuracy" in r
        held = r["own_data"]
        assert held["test_labels_given"] and held["test_held_out"] == 0.1
        assert held["test"] == classes * (1 if dataset != "npz" else 3)
        assert held["trusted"] is None
        assert r["heldout_noisy"] == {"size": held["test"], "fraction": 0.1,
                                      "labels": "given (possibly wrong)"}
        assert all("heldout_noisy_accuracy" in row and "test_accuracy" not in row
                   for row in r["history"])
        assert "heldout_noisy_accuracy" in out.stdout and "not a test accuracy" in out.stdout
        assert "heldout (given labels) loss" in out.stdout
        assert "meta set: selected from the training set" in out.stdout
        assert os.path.isdir(os.path.join(run, "heldout_noisy"))
        assert not os.path.exists(os.path.join(run, "test"))
        with open(os.path.join(run, "label_issues.csv")) as f:
            assert len(list(csv.DictReader(f))) == held["train"]
        if dataset == "npz":  # true labels known: the selected set's cleanness and the ranking
            assert all(0 <= row["meta_clean_fraction"] <= 1 for row in r["history"])
            assert r["label_issue_detection"]["n"] == held["train"]
        else:
            assert all("meta_clean_fraction" not in row for row in r["history"])
    # plot refuses a run without a test accuracy in one line
    from mwnet_tf import plot
    from mwnet_tf.errors import PlotError
    with pytest.raises(PlotError, match="has no test accuracy to plot"):
        plot.load_run(str(tmp_path / "run_npz"))
    # predict reads the layout without meta/ too
    folder = routes["folder"][0]
    out = str(tmp_path / "pred.csv")
    assert prediction.predict(str(tmp_path / "run_folder"), folder, out) == 24


def _history(run):
    return _results(run)["history"]


@pytest.mark.parametrize("method", ["mwnet", "l2rw"])
def test_a_selected_meta_set_is_chosen_each_epoch_and_its_cleanness_recorded(cli, tmp_path,
                                                                             method):
    import tensorflow as tf
    run = str(tmp_path / "run")
    out = cli.run(*SMOKE, f"--method={method}", "--meta_source=selected", f"--workdir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    r = _results(run)
    clean = [row["meta_clean_fraction"] for row in r["history"]]
    assert len(clean) == 2 and all(0 <= c <= 1 for c in clean)
    # the first epoch ranks by the classifier as initialized; the second by a trained one,
    # whose lowest losses are mostly clean labels (40% uniform noise: 64% of labels clean)
    assert clean[1] > 0.8 > 1 - r["realized_noise_rate"] + 0.1
    assert r["meta_selection"]["meta_clean_fraction"] == clean[-1]
    assert r["test_accuracy"] > 50 and "heldout_noisy_accuracy" not in r
    assert f"meta clean {clean[0]:.3f}" in out.stdout
    assert "the trusted meta set is not used" in out.stdout
    tags = set()
    for name in os.listdir(os.path.join(run, "train")):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(run, "train", name)):
            tags |= {v.tag for v in event.summary.value}
    assert "meta_set/clean_fraction" in tags


@pytest.mark.parametrize("method, reads", [("glc", [False, True, True, True]),
                                           ("fine_tune", [False, False, True, True])])
def test_glc_and_fine_tune_select_where_they_read_the_meta_set(cli, tmp_path, method, reads):
    """GLC: at the end of its estimate stage (the corruption matrix) and at each corrected
    epoch; fine-tuning: at each epoch of its fine-tuning stage."""
    run = str(tmp_path / "run")
    out = cli.run(*SMOKE, f"--method={method}", "--meta_source=selected", f"--workdir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    history = _history(run)
    assert ["meta_clean_fraction" in row for row in history] == reads
    r = _results(run)
    if method == "glc":  # estimated from samples whose given labels the model fits best
        c_hat = np.array(r["corruption_matrix"])
        assert c_hat.shape == (10, 10) and np.all(np.diag(c_hat) > 0.5)


def test_unsuited_flags_end_in_one_line(cli, tmp_path):
    run = str(tmp_path / "run")
    cases = [(["--meta_source=selected", "--select_per_class=500"], 2,
              "fewer than the 500 per class"),
             (["--meta_source=selected", "--method=ce"], 2, "--method=ce reads none"),
             (["--select_per_class=5"], 2, "--select_per_class goes with"),
             (["--meta_source=selected", "--select_per_class=5"], 2,
              "raise select_per_class")]
    for extra, code, text in cases:
        _one_error_line(cli.run(*SMOKE, *extra, f"--workdir={run}"), code, text)
        assert not os.path.exists(run)


# a run killed and rerun: as tests/test_preemption.py, with the meta set selected
ARGS = ["--flagfile=flags/smoke.cfg", "--model=tiny", "--epochs=3", "--lr_decay_epochs=2",
        "--deterministic", "--progress_seconds=0", "--notensorboard_images", "--steps_per_call=2",
        "--checkpoint_every_steps=3", "--meta_source=selected"]
VOLATILE = ("wall_seconds_this_session", "cpu_seconds_this_session",
            "figure_seconds_this_session")


def _kept(run):
    r = _results(run)
    for k in VOLATILE:
        r.pop(k)
    r["config"].pop("workdir", None)
    with open(os.path.join(run, "label_issues.csv")) as f:
        r["label_issues"] = f.read()
    return r


@pytest.mark.parametrize("method, faults", [
    ("mwnet", ["after_call:3", "eval:2", "checkpoint_after:2", "export:1", "results:1"]),
    ("glc", ["after_call:8", "eval:2"])])
def test_killed_and_rerun_it_ends_bitwise_as_an_uninterrupted_run(cli, tmp_path, method,
                                                                  faults):
    full = str(tmp_path / "full")
    proc = cli.run(*ARGS, f"--method={method}", f"--workdir={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = str(tmp_path / "run")
    for fault in faults:
        proc = cli.run(*ARGS, f"--method={method}", f"--workdir={run}", MWNET_TF_FAULT=fault)
        assert proc.returncode == -signal.SIGKILL, (fault, proc.stderr[-2000:])
    proc = cli.run(*ARGS, f"--method={method}", f"--workdir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    uninterrupted = _kept(full)
    assert any("meta_clean_fraction" in row for row in uninterrupted["history"])
    assert _kept(run) == uninterrupted


def test_a_selected_meta_set_under_mirrored_strategy(tmp_path, cli):
    """Two logical CPUs, --strategy=mirrored: the selection (its variable mirrored, the ranking
    in cross-replica context) picks, from the same initial classifier, the first epoch's set
    that one device picks."""
    runs = {k: str(tmp_path / k) for k in ("one", "two")}
    one = cli.run(*SMOKE, "--meta_source=selected", f"--workdir={runs['one']}")
    assert one.returncode == 0, one.stderr[-3000:]
    argv = ["mwnet_tf.train", *SMOKE, "--meta_source=selected", "--strategy=mirrored",
            f"--workdir={runs['two']}"]
    out = train_in_child(argv, two_cpus=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on 2 replica(s)" in out.stdout
    first = [_history(runs[k])[0]["meta_clean_fraction"] for k in ("one", "two")]
    assert first[0] == first[1]
    assert _results(runs["two"])["meta_selection"]["size"] == 100
