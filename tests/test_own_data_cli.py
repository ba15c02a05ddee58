"""Own data and the take-home files through the command line (`python -m mwnet_tf.train`):
--dataset=folder, csv, npz and tfds:NAME train and leave results.json with the own-data
summary and the classes, classes.json, label_issues.csv and classifier.keras; every method
writes label_issues.csv; --model=PATH.keras trains with the methods, fresh classifiers
included. The data is tiny and written by the tests."""

import csv
import json
import os

import keras
import numpy as np
import pytest
from cli import train_in_child  # (tests/cli.py)
from test_own_data import image_rows, make_folder, write_csv, write_npz

from mwnet_tf.config import METHODS
from mwnet_tf.outputs import prediction

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--epochs=1", "--lr_decay_epochs=", "--progress_seconds=0", "--notensorboard_images"]
TAKEHOME = ("results.json", "classes.json", "label_issues.csv", "classifier.keras",
            "classifier.json")


def tabular_npz(root, n=60, d=5, classes=3, seed=0, **extra):
    """An .npz of feature vectors: 60 training rows, 30 trusted, 15 test, true labels."""
    rng = np.random.default_rng(seed)

    def rows(k):
        y = np.arange(k) % classes
        return rng.normal(0, 1, (k, d)) + y[:, None], y
    x, y = rows(n)
    xm, ym = rows(30)
    xt, yt = rows(15)
    given = np.where(np.arange(n) % 6 == 0, (y + 1) % classes, y)
    return write_npz(root, x_train=x, y_train=given, y_train_true=y, x_meta=xm, y_meta=ym,
                     x_test=xt, y_test=yt, class_names=np.array(["low", "mid", "high"]),
                     **extra)


def csv_table(root):
    labels = {"train": ["cat", "dog"] * 8, "meta": ["cat", "dog"] * 3, "test": ["cat", "dog"]}
    true = (["cat", "dog"] * 6 + ["dog", "cat"] * 2) + ["cat", "dog"] * 4
    return write_csv(root, image_rows(root, labels, true), "path,label,split,true_label")


def read_issues(run):
    with open(os.path.join(run, "label_issues.csv")) as f:
        return list(csv.DictReader(f))


def check_run_outputs(run, classes, dataset):
    for name in TAKEHOME:
        assert os.path.isfile(os.path.join(run, name)), name
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["classes"] == list(classes)
    assert json.load(open(os.path.join(run, "classes.json"))) == list(classes)
    assert results["own_data"]["dataset"] == dataset
    assert results["own_data"]["classes"] == list(classes)
    assert json.load(open(os.path.join(run, "classifier.json")))["class_names"] == list(classes)
    assert not [n for n in os.listdir(run) if ".tmp-" in n or ".old-" in n]
    return results


def test_folder_csv_and_npz_train_through_the_command_line(cli, tmp_path):
    folder = make_folder(tmp_path / "folder", {"train": 8, "meta": 3}, classes=("dog", "cat"))
    (tmp_path / "table").mkdir()
    table = csv_table(tmp_path / "table")
    (tmp_path / "arrays").mkdir()
    arrays = tabular_npz(tmp_path / "arrays")
    runs = {
        "folder": ([f"--data_dir={folder}", "--image_size=16", "--batch_size=4",
                    "--meta_batch_size=2"], ("cat", "dog")),
        "csv": ([f"--data_dir={table}", "--image_size=16", "--batch_size=4",
                 "--meta_batch_size=2", "--method=ce"], ("cat", "dog")),
        "npz": ([f"--data_dir={arrays}", "--batch_size=10", "--meta_batch_size=6"],
                ("low", "mid", "high")),
    }
    for dataset, (args, classes) in runs.items():
        run = str(tmp_path / f"run_{dataset}")
        out = cli.run(f"--dataset={dataset}", *args, *QUICK, f"--workdir={run}")
        assert out.returncode == 0, out.stderr[-3000:]
        assert "classes: " + ", ".join(classes) in out.stdout
        results = check_run_outputs(run, classes, dataset)
        assert results["config"]["model"] == ("mlp" if dataset == "npz" else "cnn")
        issues = read_issues(run)
        assert len(issues) == results["own_data"]["train"]
        assert {r["given_class"] for r in issues} == set(classes)
        assert all(r["predicted_class"] == classes[int(r["predicted_label"])] for r in issues)
        if dataset == "folder":  # no test/: half the trusted set held out, said so
            assert results["own_data"]["test_held_out"] == 0.5
            assert "held out: 0.5 of the trusted set" in out.stdout
            assert "label_issue_detection" not in results
            assert all(os.path.isfile(os.path.join(folder, r["path"])) for r in issues)
        else:  # true labels known: the ranking is scored
            assert results["label_issue_detection"]["n"] == len(issues)
    flags = open(os.path.join(tmp_path, "run_npz", "flags.cfg")).read()
    assert "--model=auto" in flags and "--noise=none" in flags
    # predict on each format: the layout, the table, the arrays, a plain folder of images
    inputs = {"folder": (folder, 16 + 6), "csv": (table, 16 + 6 + 2),
              "npz": (arrays, 15), "images": (os.path.join(folder, "train"), 16)}
    for kind, (source, n) in inputs.items():
        run = str(tmp_path / f"run_{'folder' if kind == 'images' else kind}")
        out = str(tmp_path / f"pred_{kind}.csv")
        assert prediction.predict(run, source, out) == n
        rows = list(csv.DictReader(open(out)))
        assert len(rows) == n
        if kind in ("folder", "csv"):
            assert {r["split"] for r in rows} >= {"train", "meta"}
            assert {r["given_class"] for r in rows} == {"cat", "dog"}
            assert all(os.path.isfile(os.path.join(os.path.dirname(source) if kind == "csv"
                                                   else source, r["path"])) for r in rows)
        assert {r["predicted_class"] for r in rows} <= set(
            ("low", "mid", "high") if kind == "npz" else ("cat", "dog"))
    with open(tmp_path / "bad.csv", "w") as f:
        f.write("path,label\ntable/img/train_0.png,cow\n")
    with pytest.raises(prediction.PredictError, match="label 'cow' is not one of the 2 classes"):
        prediction.predict(str(tmp_path / "run_csv"), str(tmp_path / "bad.csv"),
                        str(tmp_path / "p.csv"))


def test_tfds_name_trains_through_the_command_line(tmp_path):
    """tfds:mnist from `tfds.testing.mock_data` (counted as prepared) in a process of its own:
    the mock lives in that process."""
    run = str(tmp_path / "run")
    argv = ["mwnet_tf.train", *QUICK, "--dataset=tfds:mnist", "--method=ce",
            "--meta_per_class=1", "--batch_size=10", "--meta_batch_size=5", f"--workdir={run}"]
    out = train_in_child(argv, mock_tfds=40)
    assert out.returncode == 0, out.stderr[-3000:]
    results = check_run_outputs(run, [str(k) for k in range(10)], "tfds:mnist")
    assert results["own_data"]["trusted"] is None and results["config"]["model"] == "cnn"


CMW = {"cmwnet": [], "cmwnet_sl": ["--select_per_class=2", "--sl_warmup_epochs=1"]}


def test_cmwnet_methods_train_on_the_folder_and_csv_routes(cli, tmp_path):
    """CMW-Net-SL on an image folder and a CSV table, CMW-Net on the table (its image folder:
    two workers against one process, tests/test_multi_worker.py; npz: the test below, every
    method; digits: tests/test_methods_cli.py; tfds: the next test)."""
    folder = make_folder(tmp_path / "folder", {"train": 8, "meta": 3}, classes=("dog", "cat"))
    (tmp_path / "table").mkdir()
    table = csv_table(tmp_path / "table")
    for method, extra in CMW.items():
        for dataset, data_dir in (("folder", folder), ("csv", table)):
            if (method, dataset) == ("cmwnet", "folder"):
                continue
            run = str(tmp_path / f"{method}_{dataset}")
            out = cli.run(f"--dataset={dataset}", f"--data_dir={data_dir}", "--image_size=16",
                          "--batch_size=4", "--meta_batch_size=2", f"--method={method}",
                          *QUICK[1:], "--epochs=2", *extra, f"--workdir={run}")
            assert out.returncode == 0, (method, dataset, out.stderr[-3000:])
            results = check_run_outputs(run, ("cat", "dog"), dataset)
            assert results["config"]["method"] == method
            assert os.path.isdir(os.path.join(run, "weight_fn"))
            assert len(results["weight_curves"]) == len(set(results["class_groups"]))


@pytest.mark.parametrize("method", sorted(CMW))
def test_cmwnet_methods_train_on_a_tfds_name(tmp_path, method):
    run = str(tmp_path / "run")
    extra = ["--select_per_class=1", "--sl_warmup_epochs=1"] if method == "cmwnet_sl" else []
    argv = ["mwnet_tf.train", *QUICK[1:], "--epochs=2", "--dataset=tfds:mnist",
            f"--method={method}", "--meta_per_class=1", "--batch_size=10",
            "--meta_batch_size=5", *extra, f"--workdir={run}"]
    out = train_in_child(argv, mock_tfds=40)
    assert out.returncode == 0, out.stderr[-3000:]
    results = check_run_outputs(run, [str(k) for k in range(10)], "tfds:mnist")
    assert results["config"]["method"] == method


def test_every_method_writes_label_issues(cli, tmp_path):
    (tmp_path / "arrays").mkdir()
    arrays = tabular_npz(tmp_path / "arrays")
    for method in METHODS:
        extra = {"confident_learning": ["--cl_folds=2"]}.get(method, [])
        run = str(tmp_path / method)
        out = cli.run("--dataset=npz", f"--data_dir={arrays}", f"--method={method}",
                      "--model=tiny", "--batch_size=10", "--meta_batch_size=6", *QUICK, *extra,
                      f"--workdir={run}")
        assert out.returncode == 0, (method, out.stderr[-3000:])
        issues = read_issues(run)
        assert len(issues) == 60 and issues[0]["rank"] == "1", method
        # the order of every method's file is its final loss, highest first
        assert "most suspect (ranked by loss)" in out.stdout, method
        losses = [float(r["loss"]) for r in issues]
        assert losses == sorted(losses, reverse=True) and len(set(losses)) > 1, method
        assert os.path.isfile(os.path.join(run, "classifier.keras")), method


def keras_file(path, d=5, classes=3, *, lam=False, outputs=None):
    inputs = keras.Input((d,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    model = keras.Model(inputs, keras.layers.Dense(outputs or classes)(x))
    model.save(path)
    return str(path)


@pytest.mark.parametrize("method", ["mwnet", "ce", "glc", "co_teaching"])
def test_a_keras_model_file_trains_with_the_methods(cli, tmp_path, method):
    (tmp_path / "arrays").mkdir()
    arrays = tabular_npz(tmp_path / "arrays")
    model = keras_file(tmp_path / "net.keras")
    run = str(tmp_path / "run")
    extra = ["--glc_estimate_epochs=1", "--epochs=2"] if method == "glc" else []
    out = cli.run("--dataset=npz", f"--data_dir={arrays}", f"--method={method}",
                  f"--model={model}", "--batch_size=10", "--meta_batch_size=6", *QUICK,
                  *extra, f"--workdir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"with {model}" in out.stdout
    results = check_run_outputs(run, ("low", "mid", "high"), "npz")
    assert results["config"]["model"] == model
    saved = keras.saving.load_model(os.path.join(run, "classifier.keras"))
    assert [w.shape for w in saved.weights] == [w.shape for w in
                                                keras.saving.load_model(model).weights]


def test_image_folder_under_mirrored_strategy_reads_each_pipelines_files(tmp_path):
    """Two logical CPUs, --strategy=mirrored: own data read from files goes through
    `distribute_datasets_from_function` (each input pipeline decodes only its part of a
    batch) and the run ends with its take-home files."""
    folder = make_folder(tmp_path / "folder", {"train": 8, "meta": 3, "test": 2})
    run = str(tmp_path / "run")
    argv = ["mwnet_tf.train", *QUICK, "--dataset=folder", f"--data_dir={folder}",
            "--image_size=16", "--batch_size=4", "--meta_batch_size=2", "--strategy=mirrored",
            f"--workdir={run}"]
    out = train_in_child(argv, two_cpus=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on 2 replica(s)" in out.stdout
    check_run_outputs(run, ("cat", "dog"), "folder")


def test_an_image_damaged_after_loading_is_named_when_the_run_reads_it(tmp_path):
    """Not verified at load time (the data is given), an image damaged inside fails in
    TensorFlow's decoder, whose message does not name the file: the run names it."""
    from test_own_data import damage

    from mwnet_tf.config import Config
    from mwnet_tf.data import load_image_folder, make_own_biased_data
    from mwnet_tf.errors import DataUnavailableError, ImageError, TrainingError
    from mwnet_tf.training import loop

    root = make_folder(tmp_path / "folder", {"train": 8, "meta": 2, "test": 1}, size=(48, 48))
    own = load_image_folder(root, image_size=8, verify=False, mean_std=((0.5,), (0.25,)))
    data = make_own_biased_data(own, seed=0)
    bad = str(data.train_x[5])
    damage(bad)
    config = Config(dataset="folder", noise="none", rate=0.0, meta_per_class=None,
                    model="tiny", epochs=1, batch_size=4, meta_batch_size=2,
                    tensorboard_images=False, progress_seconds=0)
    # read first by the tracked samples (before the run starts) or by training
    with pytest.raises((DataUnavailableError, ImageError, TrainingError)) as info:
        loop.train_and_evaluate(config, str(tmp_path / "run"), data=data, log=lambda s: None)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{bad}: cannot be decoded"), message


def test_file_backed_data_killed_and_rerun_ends_bitwise_equal(cli, tmp_path):
    """Image files streamed through tf.data with augmentation: a run SIGKILLed mid-epoch,
    during evaluation and after a checkpoint, each time rerun in the same folder, ends with
    the results.json and label_issues.csv of an uninterrupted run."""
    folder = make_folder(tmp_path / "folder", {"train": 12, "meta": 4, "test": 2})
    args = [f"--data_dir={folder}", "--dataset=folder", "--image_size=16", "--augment",
            "--batch_size=4", "--meta_batch_size=4", "--epochs=3", "--lr_decay_epochs=2",
            "--deterministic", "--progress_seconds=0", "--notensorboard_images",
            "--steps_per_call=2", "--checkpoint_every_steps=3"]

    def outputs(run):
        results = json.load(open(os.path.join(run, "results.json")))
        for key in ("wall_seconds_this_session", "cpu_seconds_this_session",
                    "figure_seconds_this_session"):
            results.pop(key)
        results["config"].pop("workdir", None)
        return results, open(os.path.join(run, "label_issues.csv")).read()

    full = str(tmp_path / "full")
    out = cli.run(*args, f"--workdir={full}")
    assert out.returncode == 0, out.stderr[-3000:]
    run = str(tmp_path / "run")
    for fault in ("after_call:4", "eval:2", "checkpoint_after:3"):
        out = cli.run(*args, f"--workdir={run}", MWNET_TF_FAULT=fault)
        assert out.returncode == -9, (fault, out.stderr[-2000:])
        assert not os.path.exists(os.path.join(run, "results.json"))
    out = cli.run(*args, f"--workdir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stdout
    assert outputs(run) == outputs(full)
