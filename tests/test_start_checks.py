"""What `train` checks of own data before a run starts, and what a failed start leaves.

The trusted set's overlap with the training set by content (`mwnet_tf.data.content`), data of
a single class, the fingerprint of a run's data (`data.json`) against a resumed run folder,
and the run folder a failed start created. The command lines of these cases are in
tests/test_catalogue.py; here the parts, on tiny files, in seconds.
"""

import json
import os
import shutil

import numpy as np
import pytest
from test_own_data import image_rows, make_folder, write_csv, write_npz

from mwnet_tf import files, train
from mwnet_tf.data import DataUnavailableError, content, load_own_data, make_own_biased_data
from mwnet_tf.training import run_folder


def _folder_data(root):
    return load_own_data("folder", str(root), image_size=16)


def test_meta_of_hard_links_to_train_is_refused_by_content(tmp_path):
    root = tmp_path / "d"
    make_folder(root, {"train": 3, "test": 1})
    shutil.copytree(root / "train", root / "meta", copy_function=os.link)
    own = _folder_data(root)
    assert content.trusted_overlap(own.train_x, own.meta_x, own.test_x, True) == {
        "meta": 6, "meta_size": 6, "test": 0, "test_size": 2}
    with pytest.raises(DataUnavailableError, match="6 of the 6 images of the trusted set"):
        content.check_overlap(own)


def test_copies_under_other_names_count_and_a_few_only_warn(tmp_path):
    root = tmp_path / "d"
    make_folder(root, {"train": 3, "meta": 3, "test": 1})
    shutil.copy(root / "train" / "cat" / "0.png", root / "meta" / "dog" / "copy.png")
    lines = []
    counts = content.check_overlap(_folder_data(root), lines.append)
    assert counts == {"meta": 1, "meta_size": 7, "test": 0, "test_size": 2}
    assert lines == ["warning: 1 of the 7 trusted images and 0 of the 2 test images are also "
                     "training images (same content)"]
    for i, name in enumerate(["cat/1", "cat/2", "dog/0", "dog/1", "dog/2"]):
        shutil.copy(root / "train" / f"{name}.png", root / "meta" / "cat" / f"copy{i}.png")
    with pytest.raises(DataUnavailableError, match="6 of the 12 images"):  # half: refused
        content.check_overlap(_folder_data(root))


def test_npz_rows_and_csv_files_are_compared_by_content(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), np.arange(20) % 2
    xm = np.concatenate([x[:1], rng.normal(size=(9, 4))])
    lines = []
    own = load_own_data("npz", write_npz(tmp_path, x_train=x, y_train=y, x_meta=xm,
                                         y_meta=np.arange(10) % 2))
    assert content.check_overlap(own, lines.append)["meta"] == 1 and len(lines) == 1
    own = load_own_data("npz", write_npz(tmp_path, name="same.npz", x_train=x, y_train=y,
                                         x_meta=x[:10], y_meta=y[:10]))
    with pytest.raises(DataUnavailableError, match=r"(\d+) of the \1 images of the trusted set"):
        content.check_overlap(own)
    rows = image_rows(tmp_path, {"train": ["cat", "dog"] * 3, "test": ["cat", "dog"]})
    copies = tmp_path / "img" / "copies"
    copies.mkdir()
    meta = []
    for i, row in enumerate(rows[:4]):  # the trusted rows: copies of training images
        path, label, _ = row.split(",")
        shutil.copy(tmp_path / path, copies / f"{i}.png")
        meta.append(f"img/copies/{i}.png,{label},meta")
    own = load_own_data("csv", write_csv(tmp_path, rows + meta), image_size=16)
    with pytest.raises(DataUnavailableError, match="4 of the 4 images of the trusted set"):
        content.check_overlap(own)


@pytest.mark.parametrize("route", ["folder", "csv", "npz"])
def test_a_single_class_is_refused_in_one_line(tmp_path, route):
    if route == "folder":
        make_folder(tmp_path / "d", {"train": 4, "meta": 2, "test": 1}, classes=("cat",))
        path = str(tmp_path / "d")
    elif route == "csv":
        rows = image_rows(tmp_path, {"train": ["cat"] * 4, "meta": ["cat"] * 2,
                                     "test": ["cat"]})
        path = write_csv(tmp_path, rows)
    else:
        x = np.random.default_rng(0).normal(size=(10, 3))
        path = write_npz(tmp_path, x_train=x, y_train=np.zeros(10, int), x_meta=x[:4] + 9,
                         y_meta=np.zeros(4, int))
    with pytest.raises(DataUnavailableError, match="a single class") as e:
        load_own_data(route, path, image_size=16)
    assert "\n" not in str(e.value) and path in str(e.value)


def _fingerprint(root):
    own = _folder_data(root)
    return content.fingerprint(make_own_biased_data(own), contents=True)


def test_fingerprint_follows_labels_and_images_not_paths_or_order(tmp_path):
    root = tmp_path / "d"
    make_folder(root, {"train": 3, "meta": 2, "test": 1})
    before = _fingerprint(root)
    moved = tmp_path / "moved"
    shutil.move(root, moved)  # --data_dir may change on resume
    assert _fingerprint(moved) == before
    train_dir = moved / "train"
    os.rename(train_dir / "cat", train_dir / "tmp")
    os.rename(train_dir / "dog", train_dir / "cat")
    os.rename(train_dir / "tmp", train_dir / "dog")  # equal counts, labels swapped
    after = _fingerprint(moved)
    assert after["train"] != before["train"]
    assert (after["meta"], after["test"]) == (before["meta"], before["test"])


def _run_folder(path, prints, checkpoint=True):
    os.makedirs(path / "checkpoints")
    if checkpoint:
        (path / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: 'ckpt-1'\n")
    (path / files.DATA).write_text(json.dumps(prints))


def test_a_resumed_run_on_other_data_is_refused_in_one_line(tmp_path):
    prints = {"train": "a", "meta": "b", "test": "c"}
    _run_folder(tmp_path / "run", prints)
    run_folder.check_same_data(str(tmp_path / "run"), prints)  # the same data: resumes
    with pytest.raises(ValueError, match=r"run started on other data \(its training images"):
        run_folder.check_same_data(str(tmp_path / "run"), {**prints, "train": "z"})
    # without checkpoints the run starts afresh; without data.json it is not checked
    _run_folder(tmp_path / "fresh", prints, checkpoint=False)
    run_folder.check_same_data(str(tmp_path / "fresh"), {**prints, "train": "z"})
    run_folder.check_same_data(str(tmp_path / "nowhere"), prints)
    (tmp_path / "run" / files.DATA).write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        run_folder.check_same_data(str(tmp_path / "run"), prints)


def test_a_failed_start_removes_the_folder_it_created_and_only_that(tmp_path):
    def started(path, *names):
        folder = train._RunFolder(str(path), chief=True)
        os.makedirs(path / "train", exist_ok=True)  # what a start writes before failing
        for name in ("flags.cfg", "classes.json", *names):
            (path / name).write_text("x")
        return folder

    started(tmp_path / "new").abandon()
    assert not (tmp_path / "new").exists()
    folder = started(tmp_path / "saved")  # a checkpoint was saved: the run is kept
    os.makedirs(tmp_path / "saved" / "checkpoints")
    (tmp_path / "saved" / "checkpoints" / "checkpoint").write_text("x")
    folder.abandon()
    assert (tmp_path / "saved" / "checkpoints" / "checkpoint").exists()
    os.makedirs(tmp_path / "old")  # it existed before this command: left as it is
    started(tmp_path / "old").abandon()
    assert sorted(os.listdir(tmp_path / "old")) == ["classes.json", "flags.cfg", "train"]
