"""The order of label_issues.csv on own data, through the command line: the built-in digits
written as PNG class folders (and as a CSV table), 30% of the training labels moved to
another class with the truth kept aside (not in the data), every method on the own-data
defaults but for a few epochs. The file's order, read as written, must find the wrong labels
(AUROC >= 0.9 against the kept-aside truth): its order is the final loss for every method
(`label_issues.ORDER`), which the method's own evidence is not (MW-Net's rising weight
function ranked them at AUROC 0.13 here)."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from mwnet_tf.config import METHODS
from mwnet_tf.outputs.label_issues import auroc

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

# The own-data defaults in fewer epochs: --epochs alone (the decay moves with it); no
# TensorBoard images (output only).
ARGS = ["--epochs=8", "--notensorboard_images", "--progress_seconds=0"]
WRONG = 0.3
MIN_AUROC = 0.9


@pytest.fixture(scope="module")
def digits_own(tmp_path_factory):
    """(folder, csv table, {real path of a training image: its label is wrong})."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits_own")
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    meta = np.concatenate([order[digits.target[order] == c][:10] for c in range(10)])
    rest = np.setdiff1d(order, meta, assume_unique=True)
    rest = rest[rng.permutation(len(rest))]
    test, train = rest[:200], rest[200:]
    given = digits.target[train].copy()
    wrong = np.zeros(len(train), bool)
    wrong[rng.choice(len(train), round(WRONG * len(train)), replace=False)] = True
    given[wrong] = (given[wrong] + rng.integers(1, 10, wrong.sum())) % 10  # another class
    rows, truth = ["path,label,split"], {}
    for split, rows_of, labels in (("train", train, given), ("meta", meta, digits.target[meta]),
                                   ("test", test, digits.target[test])):
        for i, label, bad in zip(rows_of, labels, wrong if split == "train" else
                                 np.zeros(len(rows_of), bool)):
            rel = os.path.join("folder", split, str(label), f"{i}.png")
            os.makedirs(os.path.dirname(root / rel), exist_ok=True)
            Image.fromarray(images[i]).save(root / rel)
            rows.append(f"{rel},{label},{split}")
            if split == "train":
                truth[os.path.realpath(root / rel)] = bool(bad)
    (root / "digits.csv").write_text("\n".join(rows) + "\n")
    return str(root / "folder"), str(root / "digits.csv"), truth


def file_order_auroc(run, truth, base):
    """AUROC of label_issues.csv's order as written (first row most suspect) against the
    kept-aside truth, and the file's rows (paths relative to `base`, the data's folder)."""
    with open(os.path.join(run, "label_issues.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = np.array([truth[os.path.realpath(os.path.join(base, r["path"]))] for r in rows])
    assert len(rows) == len(truth) and [int(r["rank"]) for r in rows] == list(
        range(1, len(rows) + 1))
    return auroc(-np.arange(len(rows), dtype=np.float64), wrong), rows


# In the default run: MW-Net (whose rising weight function once ranked the file upside
# down), CMW-Net (a weight per class group), Co-teaching (two networks) and cross-entropy.
# Every other method is in the slow tier (`-m slow`): the order is the final loss for every
# method, and tests/test_own_data_cli.py checks each method's file is in that order.
DEFAULT = ("ce", "mwnet", "cmwnet", "co_teaching")


@pytest.mark.parametrize("method", [m if m in DEFAULT else pytest.param(m, marks=pytest.mark.slow)
                                    for m in METHODS])
def test_folder_route_file_order_finds_the_wrong_labels(cli, digits_own, tmp_path, method):
    folder, _, truth = digits_own
    run = str(tmp_path / method)
    out = cli.run("--dataset=folder", f"--data_dir={folder}", f"--method={method}", *ARGS,
                  f"--workdir={run}", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    area, rows = file_order_auroc(run, truth, folder)
    print(f"{method}: file order AUROC {area:.4f}")
    assert area >= MIN_AUROC, method
    assert "most suspect (ranked by loss)" in out.stdout
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True)


def test_csv_route_mwnet_file_order_finds_the_wrong_labels(cli, digits_own, tmp_path):
    _, table, truth = digits_own
    run = str(tmp_path / "mwnet_csv")
    out = cli.run("--dataset=csv", f"--data_dir={table}", "--method=mwnet", *ARGS,
                  f"--workdir={run}", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    area, _ = file_order_auroc(run, truth, os.path.dirname(table))
    print(f"mwnet csv: file order AUROC {area:.4f}")
    assert area >= MIN_AUROC
