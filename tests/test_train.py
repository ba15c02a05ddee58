"""The training loop and the command line: outputs, resume, determinism, errors."""

import copy
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.config import Config
from mwnet_tf.models import weight_function
from mwnet_tf.training import loop

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
             batch_size=100, meta_batch_size=50, lr_decay_epochs=(1,), progress_seconds=0.0,
             seed=3)
# The determinism tests' runs: deterministic ops, no TensorBoard images (the first run test
# checks those; without them a small run takes a third less).
EXACT = dict(deterministic=True, tensorboard_images=False)




def _events(path):
    tags = set()
    for f in glob.glob(os.path.join(path, "events.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            tags.update(v.tag for v in e.summary.value)
    return tags


def test_lr_decays_on_the_first_epoch_after_each_decay_epoch():
    # Epochs (0-based) 0-4 at 0.1, 5-6 at 0.01, 7 at 0.001 for decay epochs (5, 7).
    expected = {0: 0.1, 4: 0.1, 5: 0.01, 6: 0.01, 7: 0.001}
    for epoch, lr in expected.items():
        assert loop.epoch_lr(0.1, (5, 7), 0.1, epoch) == pytest.approx(lr), epoch


def test_run_writes_results_weight_fn_checkpoints_and_summaries(tmp_path):
    logs = []
    results = loop.train_and_evaluate(Config(**SMALL), str(tmp_path), log=logs.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert 0 < saved["test_accuracy"] <= saved["best_test_accuracy"] <= 100
    assert 0.3 < saved["realized_noise_rate"] < 0.45  # 0.4 * 9/10 expected
    assert set(saved["weight_curve"]) >= {"0", "1", "8"}
    assert sum("epoch 2/2" in line for line in logs) >= 1
    assert os.path.exists(tmp_path / "checkpoints" / "checkpoint")
    assert {"loss", "accuracy", "meta_loss", "weight_clean", "weight_corrupted",
            "learning_rate"} <= _events(tmp_path / "train")
    assert {"loss", "accuracy", "class_accuracy/000", "class_accuracy/009"} <= _events(
        tmp_path / "test")
    assert len(saved["per_class_test_accuracy"]) == 10
    # the digits test set is stratified (about 50 per class): per-class mean ~ overall accuracy
    assert np.mean(saved["per_class_test_accuracy"]) == pytest.approx(saved["test_accuracy"],
                                                                      abs=1.0)
    # The SavedModel's serving signature maps losses float32[N, 1] to weights float32[N, 1].
    sig = tf.saved_model.load(str(tmp_path / "weight_fn")).signatures["serving_default"]
    spec = sig.structured_input_signature[1]["losses"]
    assert spec.shape.as_list() == [None, 1] and spec.dtype == tf.float32
    out = sig(losses=tf.constant([[0.5], [3.0]]))["weights"]
    assert out.shape == (2, 1)
    # figures: TensorBoard images and histograms each epoch, their data in results.json
    assert {"weight_function", "weights_clean_corrupted", "weights/clean", "weights/corrupted",
            "losses/clean", "losses/corrupted", "weight_variation/mean"} <= _events(
        tmp_path / "train")
    assert "confusion_matrix" in _events(tmp_path / "test")
    assert [row["epoch"] for row in saved["history"]] == [1, 2]
    assert "weight_variation_mean" in saved["history"][1]
    assert saved["history"][1]["test_accuracy"] == saved["test_accuracy"]
    matrix = np.array(saved["confusion_matrix"])
    assert matrix.sum() == 500 and np.trace(matrix) == round(5 * saved["test_accuracy"])
    assert len(saved["weight_function"]["losses"]) == len(saved["weight_function"]["weights"])
    hist = saved["weight_histogram"]
    assert sum(hist["clean"]) + sum(hist["corrupted"]) == min(2000, 1197)
    fn = weight_function.load_weight_fn(str(tmp_path / "weight_fn"))
    np.testing.assert_allclose(fn([1.0, 8.0]), [saved["weight_curve"]["1"],
                                                saved["weight_curve"]["8"]], atol=1e-5)


@pytest.mark.parametrize("method", ["ce", "mwnet"])
def test_fashion_mnist_idx_files_train_the_cnn_with_each_method(tmp_path, method):
    """The whole Fashion-MNIST path on 200 + 50 random 28x28 images in the four IDX files."""
    from test_idx import _write_folder

    _write_folder(tmp_path / "idx", n_train=200, n_test=50)
    config = Config(dataset="fashion_mnist", data_dir=str(tmp_path / "idx"), model="cnn",
                    method=method, noise="flip", rate=0.4, meta_per_class=2, epochs=2,
                    lr_decay_epochs=(), batch_size=20, meta_batch_size=20,
                    progress_seconds=0.0, seed=0)
    logs = []
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), log=logs.append)
    assert logs[0].startswith("fashion_mnist: 180 training images") and "20 meta" in logs[0]
    assert "with cnn" in logs[0]
    assert 0 <= results["test_accuracy"] <= 100 and np.isfinite(results["test_accuracy"])
    assert ("weight_curve" in results) == (method == "mwnet")
    # TensorBoard holds every figure of the run, each epoch (the section 1)
    images = _images(tmp_path / "run" / "train")
    test_images = _images(tmp_path / "run" / "test")
    assert test_images["confusion_matrix"][2] in (3, 4) and "class_accuracy/009" in _events(
        tmp_path / "run" / "test")
    if method == "mwnet":
        assert set(images) == {"weight_function", "weights_clean_corrupted"}
        for tag, (h, w, c) in images.items():
            assert h >= 200 and w >= 300 and c in (3, 4), (tag, h, w, c)
        assert {"weights/clean", "weights/corrupted", "losses/clean", "losses/corrupted",
                "weight_variation/mean", "weight_variation/std"} <= _events(
            tmp_path / "run" / "train")


def _images(folder):
    """{tag: (height, width, channels)} of the PNG images in a folder's event files."""
    out = {}
    for f in glob.glob(os.path.join(folder, "events.*")):
        for event in tf.compat.v1.train.summary_iterator(f):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    data = tf.make_ndarray(value.tensor)
                    shape = tuple(tf.io.decode_png(data[2]).shape)
                    assert shape[:2] == (int(data[1]), int(data[0]))  # height, width stored
                    out[value.tag] = shape
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """SMALL with determinism on, uninterrupted (steps_per_call 10: calls of 10 and 1 steps)."""
    return loop.train_and_evaluate(Config(**SMALL, **EXACT),
                                      str(tmp_path_factory.mktemp("full")), log=lambda s: None)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, uninterrupted):
    config = Config(**SMALL, **EXACT)
    full = copy.deepcopy(uninterrupted)  # its history rows are popped below

    class Interrupt(Exception):
        pass

    def die_after_first_epoch(line):
        if line.startswith("epoch 1/2"):
            raise Interrupt

    with pytest.raises(Interrupt):
        loop.train_and_evaluate(config, str(tmp_path / "cut"), log=die_after_first_epoch)
    assert not os.path.exists(tmp_path / "cut" / "results.json")
    logs = []
    resumed = loop.train_and_evaluate(config, str(tmp_path / "cut"), log=logs.append)
    assert any(line.startswith("resumed from") for line in logs)
    assert sum(line.startswith("epoch ") for line in logs) == 1
    assert resumed["test_accuracy"] == pytest.approx(full["test_accuracy"], abs=1e-9)
    assert resumed["weight_curve"] == pytest.approx(full["weight_curve"], abs=1e-6)
    # the per-epoch history survives the interruption, weight variation of the first resumed
    # epoch included (measured against the tracked weights the checkpoint gives back)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]
    # --notensorboard_images: the histograms and scalars, no images
    tags = _events(tmp_path / "cut" / "train")
    assert {"weights/clean", "losses/corrupted", "weight_variation/mean"} <= tags
    assert not tags & {"weight_function", "weights_clean_corrupted"}
    assert "confusion_matrix" not in _events(tmp_path / "cut" / "test")
    for a, b in zip(resumed["history"], full["history"]):
        assert a.pop("train") == pytest.approx(b.pop("train"), abs=1e-9)
        assert a == pytest.approx(b, abs=1e-9)


def test_a_different_seed_is_a_different_run(tmp_path, uninterrupted):
    """The same seed repeats a run: the resume test above (its first epoch, then its resumed
    second, equal the uninterrupted run's) and, bitwise after kills, tests/test_preemption.py.
    Another seed gives other noisy labels, another meta split and another run."""
    other = loop.train_and_evaluate(Config(**{**SMALL, "seed": 4}, **EXACT),
                                       str(tmp_path / "other"), log=lambda s: None)
    assert other["config"]["seed"] == 4 and uninterrupted["config"]["seed"] == 3
    assert other["weight_curve"] != uninterrupted["weight_curve"]
    assert other["train"] != uninterrupted["train"]


def test_cli_smoke_run_writes_rerunnable_flagfile(tmp_path, cli):
    work = tmp_path / "run"
    proc = cli.run("--flagfile=flags/smoke.cfg", f"--workdir={work}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test accuracy" in proc.stdout
    flagfile = (work / "flags.cfg").read_text()
    assert "--dataset=digits" in flagfile and f"--workdir={work}" in flagfile
    # The same flags.cfg repeats the run: it finds the finished checkpoint and trains no more.
    again = cli.run(f"--flagfile={work}/flags.cfg")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout and "epoch 1/" not in again.stdout


# Bad flag values, missing data and corrupt checkpoints: tests/test_catalogue.py.


def test_nan_loss_stops_with_one_line_error(tmp_path, cli):
    work = tmp_path / "run"
    proc = cli.run("--flagfile=flags/smoke.cfg", f"--workdir={work}", "--lr=1e30")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "NaN" in proc.stderr.strip().splitlines()[-1]
    assert (work / "flags.cfg").exists() and not (work / "results.json").exists()
    assert not glob.glob(str(work / "checkpoints" / "ckpt-*"))


def test_steps_per_call_changes_nothing_but_the_host_round_trips(tmp_path, uninterrupted):
    # 11 steps per epoch: one call each, or (the default 10) calls of 10 and 1 (a remainder).
    one = loop.train_and_evaluate(Config(**SMALL, **EXACT, steps_per_call=1),
                                     str(tmp_path / "k1"), log=lambda s: None)
    assert uninterrupted["config"]["steps_per_call"] == 10
    assert uninterrupted["test_accuracy"] == one["test_accuracy"]
    for name, value in one["train"].items():
        assert uninterrupted["train"][name] == pytest.approx(value, rel=1e-6), name
    assert uninterrupted["weight_curve"] == pytest.approx(one["weight_curve"], abs=1e-7)


def test_a_run_prints_nothing_on_stderr_and_a_progress_bar_in_a_terminal(tmp_path):
    """TensorFlow's C++ start-up lines (CUDA probing, device discovery) are silenced unless
    TF_CPP_MIN_LOG_LEVEL asks for them, so that errors stay one line; with stdout a terminal
    (a pseudo-terminal here) each epoch shows Keras' progress bar instead of the throttled
    lines."""
    import pty

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mwnet_tf.train", "--flagfile=flags/smoke.cfg",
                             "--model=tiny", "--epochs=1", "--lr_decay_epochs=",
                             "--steps_per_call=2", f"--workdir={tmp_path}/run"], cwd=REPO,
                            env=env, stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    os.close(master)
    _, err = proc.communicate(timeout=300)
    out = "".join(chunks)
    assert proc.returncode == 0 and err == "", err[-3000:]
    assert "11/11" in out and "/step" in out and "loss:" in out and "meta_loss:" in out, out
    assert "\r" in out or "\x1b" in out  # redrawn in place
    assert "steps/s" not in out  # not the log-file lines
