"""The one atomic writer (`training/run_folder.py`): files, folders, leftovers, progress files."""

import json
import os

import pytest

from mwnet_tf import files
from mwnet_tf.errors import TrainingError
from mwnet_tf.training import run_folder


def _names(folder):
    return sorted(os.listdir(folder))


def test_a_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a.json"
    files.write_json(str(path), {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    files.write_json(str(path), {"a": 3})
    assert json.loads(path.read_text()) == {"a": 3}
    assert _names(tmp_path) == ["a.json"]


def test_a_write_failing_half_way_leaves_the_old_file_intact_and_no_temporary_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk gone"):
        with files.atomic_file(str(path), "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk gone")
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["results.json"]


def test_a_fault_after_the_temporary_file_is_written_keeps_the_old_file(tmp_path, monkeypatch):
    """The "results" fault point sits between the temporary file and the rename."""
    monkeypatch.setenv("MWNET_TF_FAULT", "results:1:enospc")
    monkeypatch.setattr(files.faults, "_counts", {})
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(OSError, match="No space left"):
        files.write_json(str(path), {"new": True}, fault="results")
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["results.json"]


def test_the_temporary_file_is_hidden_beside_the_file_and_named_a_leftover(tmp_path):
    tmp = files.temporary_name(str(tmp_path / "flags.cfg"))
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp) == f".flags.cfg.tmp-{os.getpid()}"
    assert files.is_leftover(os.path.basename(tmp))
    for name in ("results.json", "flags.cfg", "ckpt-3.index", "progress-3.json", "weight_fn"):
        assert not files.is_leftover(name), name


def test_an_equal_file_is_left_untouched_with_keep_equal(tmp_path):
    path = tmp_path / "flags.cfg"
    path.write_text("--seed=1\n")
    os.utime(path, (1_000_000, 1_000_000))
    assert not files.write_text(str(path), "--seed=1\n", keep_equal=True)
    assert os.stat(path).st_mtime == 1_000_000
    assert files.write_text(str(path), "--seed=2\n", keep_equal=True)
    assert path.read_text() == "--seed=2\n"
    assert files.write_text(str(path), "--seed=2\n")  # without it: always written


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("old")
    os.chmod(path, 0o600)
    files.write_bytes(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_folder_variant_replaces_a_folder_whole(tmp_path):
    path = tmp_path / "weight_fn"
    with files.atomic_folder(str(path)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and _names(tmp) == []
        (tmp_path / os.path.basename(tmp) / "saved_model.pb").write_text("one")
        (tmp_path / os.path.basename(tmp) / "extra").write_text("one")
    assert _names(path) == ["extra", "saved_model.pb"]
    with files.atomic_folder(str(path)) as tmp:
        (tmp_path / os.path.basename(tmp) / "saved_model.pb").write_text("two")
    assert _names(path) == ["saved_model.pb"]  # nothing of the old folder is left
    assert (path / "saved_model.pb").read_text() == "two"
    assert _names(tmp_path) == ["weight_fn"]


def test_a_folder_write_failing_half_way_leaves_the_old_folder_intact(tmp_path):
    path = tmp_path / "weight_fn"
    path.mkdir()
    (path / "saved_model.pb").write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_folder(str(path)) as tmp:
            (tmp_path / os.path.basename(tmp) / "saved_model.pb").write_text("half")
            raise RuntimeError("killed")
    assert (path / "saved_model.pb").read_text() == "old"
    assert _names(tmp_path) == ["weight_fn"]


def test_leftovers_are_removed_and_an_old_folder_never_replaced_is_moved_back(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for name in (".results.json.tmp-12", "results.json.tmp-13", "keep.json", "flags.cfg"):
        (tmp_path / name).write_text("x")
    (ckpts / ".progress-4.json.tmp-12").write_text("x")
    (ckpts / "progress-4.json").write_text("x")
    (tmp_path / ".weight_fn.tmp-12").mkdir()  # the new export, interrupted
    (tmp_path / ".weight_fn-abc123").mkdir()  # an export folder of the earlier writer
    (tmp_path / ".weight_fn.old-12").mkdir()  # the old export, moved aside
    (tmp_path / ".weight_fn.old-12" / "saved_model.pb").write_text("old")
    (tmp_path / ".label_issues.npz.old-9").mkdir()  # a file of that name exists: removed
    (tmp_path / "label_issues.npz").write_text("x")
    run_folder.remove_leftovers(str(tmp_path))
    assert _names(tmp_path) == ["checkpoints", "flags.cfg", "keep.json", "label_issues.npz",
                                "weight_fn"]
    assert (tmp_path / "weight_fn" / "saved_model.pb").read_text() == "old"
    assert _names(ckpts) == ["progress-4.json"]


def test_progress_files_are_read_and_pruned(tmp_path):
    ckpts = str(tmp_path)
    assert run_folder.read_progress(ckpts, None) == {}
    assert run_folder.read_progress(ckpts, os.path.join(ckpts, "ckpt-7")) == {}
    files.write_json(run_folder.progress_path(ckpts, 7), {"sums": {"loss_sum": 1.5}})
    files.write_json(run_folder.progress_path(ckpts, 9), {"sums": {}})
    assert run_folder.read_progress(ckpts, os.path.join(ckpts, "ckpt-7")) == {"loss_sum": 1.5}
    run_folder.prune_progress(ckpts, [os.path.join(ckpts, "ckpt-9")])
    assert _names(tmp_path) == ["progress-9.json"]
    (tmp_path / "progress-9.json").write_text("{")
    with pytest.raises(TrainingError, match="cannot read .*progress-9.json"):
        run_folder.read_progress(ckpts, os.path.join(ckpts, "ckpt-9"))


def test_a_killed_classifier_export_leaves_nothing_the_next_run_keeps(tmp_path):
    """`serving.export_classifier`'s temporary names: the Keras file (which Keras saves only to
    a .keras name), the serving SavedModel's folder, classifier.json's file; and the old
    serving folder moved aside, moved back."""
    (tmp_path / ".classifier.tmp-12.keras").write_text("x")
    (tmp_path / ".classifier.json.tmp-12").write_text("x")
    (tmp_path / ".label_issues.csv.tmp-12").write_text("x")
    (tmp_path / ".classifier_serving.tmp-12").mkdir()
    (tmp_path / ".classifier_serving.old-12").mkdir()
    (tmp_path / "classifier.keras").write_text("kept")
    run_folder.remove_leftovers(str(tmp_path))
    assert _names(tmp_path) == ["classifier.keras", "classifier_serving"]
    assert not files.is_leftover("classifier.keras")
