"""examples/fashion_to_files.py on a tiny fake Fashion-MNIST (IDX files): the folder tree, the
CSV and the npz hold the same split, labels and pixels, and it is the built-in run's split."""

import csv
import gzip
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mwnet_tf.data import load_dataset, make_biased_data
from mwnet_tf.data.custom.from_npz import is_image_array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location(
        "fashion_to_files", os.path.join(ROOT, "examples", "fashion_to_files.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_idx(path, array):
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(folder, n_train=300, n_test=40):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for name, a in arrays.items():
        _write_idx(os.path.join(folder, name + ".gz"), a)


def _read_folder(out, split, names):
    xs, ys = [], []
    for k, name in enumerate(names):
        for f in sorted(os.listdir(os.path.join(out, split, name))):
            xs.append(np.asarray(Image.open(os.path.join(out, split, name, f))))
            ys.append(k)
    return np.array(xs), np.array(ys)


def test_folders_csv_and_npz_hold_the_built_in_split(tmp_path):
    idx, out = tmp_path / "idx", str(tmp_path / "out")
    idx.mkdir()
    _fake_fashion(str(idx))
    script = _script()
    arrays = script.biased_split(3, meta_per_class=5, data_dir=str(idx))
    script.write_files(out, arrays)

    b = make_biased_data(load_dataset("fashion_mnist", str(idx)), noise="flip", rate=0.4,
                         meta_per_class=5, seed=3)
    np.testing.assert_array_equal(arrays["y_train"], b.train_y)
    np.testing.assert_array_equal(arrays["y_train_true"], b.train_clean_y)
    np.testing.assert_array_equal(arrays["x_meta"], b.meta_x[..., 0])
    assert 0 < np.mean(arrays["y_train"] != arrays["y_train_true"]) < 1

    npz = np.load(os.path.join(out, "fashion.npz"))
    names = [str(n) for n in npz["class_names"]]
    assert names == list(script.CLASS_NAMES)
    with open(os.path.join(out, "fashion.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "split", "true_label"]
    for split in ("train", "meta", "test"):
        x, y = npz[f"x_{split}"], npz[f"y_{split}"]
        assert is_image_array(x)  # [N, 28, 28, 1]: images to --dataset=npz, not features
        x = x[..., 0]
        np.testing.assert_array_equal(x, arrays[f"x_{split}"])
        np.testing.assert_array_equal(y, arrays[f"y_{split}"])
        part = [r for r in rows if r["split"] == split]
        assert len(part) == len(y)
        # CSV row i is image i of the split: its file, label and pixels agree with the npz
        for i, r in enumerate(part):
            assert r["path"] == f"{split}/{names[y[i]]}/{i:05d}.png"
            assert r["label"] == names[y[i]]
            true = npz["y_train_true"][i] if split == "train" else y[i]
            assert r["true_label"] == names[true]
            np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(out, r["path"]))),
                                          x[i])
        # the folder tree holds the same images under the same labels
        fx, fy = _read_folder(out, split, names)
        order = np.lexsort((np.arange(len(y)), y))
        np.testing.assert_array_equal(fy, y[order])
        np.testing.assert_array_equal(fx, x[order])


def test_train_per_class_keeps_a_seeded_stratified_subset(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    _fake_fashion(str(idx))
    script = _script()
    full = script.biased_split(1, meta_per_class=5, data_dir=str(idx))
    a = script.biased_split(1, meta_per_class=5, train_per_class=4, data_dir=str(idx))
    b = script.biased_split(1, meta_per_class=5, train_per_class=4, data_dir=str(idx))
    np.testing.assert_array_equal(a["x_train"], b["x_train"])
    assert np.bincount(a["y_train"], minlength=10).tolist() == [4] * 10
    np.testing.assert_array_equal(a["x_meta"], full["x_meta"])
    np.testing.assert_array_equal(a["x_test"], full["x_test"])
    # every kept image is one of the full training set, with its labels
    rows = {a_x.tobytes(): (y, t) for a_x, y, t in
            zip(full["x_train"], full["y_train"], full["y_train_true"])}
    for x, y, t in zip(a["x_train"], a["y_train"], a["y_train_true"]):
        assert rows[x.tobytes()] == (y, t)


def _worked_example_commands():
    """The command lines of docs/data.md's worked example, backslash continuations joined."""
    with open(os.path.join(ROOT, "docs", "data.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## A worked example"):]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(("python examples/fashion_to_files.py", "python -m mwnet_tf.")):
                commands.append(shlex.split(line)[1:])
    return commands


# The worked example's sizes scaled to the fake data set (300 training images).
SCALED = {"--epochs": "1", "--lr_decay_epochs": "", "--batch_size": "20",
          "--meta_batch_size": "10", "--eval_batch_size": "50"}


@pytest.mark.e2e
def test_the_worked_example_runs_as_the_docs_write_it(tmp_path, cli):
    idx = tmp_path / "idx"
    idx.mkdir()
    _fake_fashion(str(idx))
    places = {"/tmp/fashion-s0": str(tmp_path / "files"), "runs/": str(tmp_path / "runs") + "/",
              "predictions.csv": str(tmp_path / "predictions.csv")}

    def scaled(arg):
        for old, new in places.items():
            arg = arg.replace(old, new)
        name, _, value = arg.partition("=")
        return f"{name}={SCALED[name]}" if name in SCALED and value else arg

    ran = []
    for command in _worked_example_commands():
        args = [scaled(a) for a in command]
        if args[0] == "examples/fashion_to_files.py":
            args += [f"--data_dir={idx}", "--meta_per_class=5"]
            out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
        elif args[:2] == ["-m", "mwnet_tf.train"]:
            out = cli.run(*args[2:])
        else:
            out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                                 text=True, timeout=300)
        assert out.returncode == 0, (args, out.stderr[-3000:])
        ran.append(args[1] if args[0] == "-m" else args[0])
        if args[:2] == ["-m", "mwnet_tf.train"]:
            run = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
            results = json.load(open(os.path.join(run, "results.json")))
            assert results["own_data"]["train"] == 300 - 50  # 5 trusted images per class
            dataset = next(a.split("=", 1)[1] for a in args if a.startswith("--dataset="))
            assert ("label_issue_detection" in results) == (dataset != "folder")
            ran[-1] += ":" + dataset
    assert ran == ["examples/fashion_to_files.py", "mwnet_tf.train:folder", "mwnet_tf.train:csv",
                   "mwnet_tf.train:npz", "mwnet_tf.predict"]
    with open(tmp_path / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 40  # the fake test set
