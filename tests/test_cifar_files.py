"""CIFAR's Python-pickle folders, CIFAR-N's human labels, and the restricted unpickler.

Every file here is written by the test in the real layout (`tests/cifar_files.py`); nothing is
downloaded.
"""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from cifar_files import (
    cifar_n_arrays,
    noisy_copy,
    prepare_with_tfds,
    py2_pickle,
    write_cifar10_binary,
    write_cifar_folder,
    write_cifar_n,
)

from mwnet_tf.config import Config
from mwnet_tf.data import DataUnavailableError, load_dataset, make_biased_data, safe_pickle
from mwnet_tf.data.human_noise import load_human_labels
from mwnet_tf.protocols import run_name


class _Evil:
    """Unpickling this would run a shell command that writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalEvil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({self.marker!r}, 'w').write('ran')",)


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ the restricted unpickler


@pytest.mark.parametrize("evil", [_Evil, _EvalEvil])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, evil, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": evil(str(marker))}, protocol=protocol))
    with pytest.raises(DataUnavailableError) as err:
        safe_pickle.load(str(path), encoding="bytes")
    message = _one_line(err)
    assert str(path) in message and "refused to unpickle" in message
    assert ("system" in message) if evil is _Evil else ("eval" in message)  # __builtin__ < 3
    assert not marker.exists()


def test_crafted_files_in_the_data_folder_and_the_label_file_run_nothing(tmp_path):
    marker = tmp_path / "marker"
    out = write_cifar_folder(str(tmp_path), per_batch=2, test=2)
    batch = os.path.join(out["folder"], "data_batch_3")
    with open(batch, "wb") as f:
        pickle.dump({b"data": _Evil(str(marker)), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert batch in _one_line(err) and "posix.system" in str(err.value)
    label_file = tmp_path / "CIFAR-10_human.pt"
    with zipfile.ZipFile(label_file, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"worse_label": _Evil(str(marker))}))
    ds = write_cifar_folder(str(tmp_path / "ok"), per_batch=2, test=2)
    with pytest.raises(DataUnavailableError) as err:
        load_human_labels(str(label_file), "worst", load_dataset("cifar10", ds["folder"]))
    assert "archive/data.pkl" in _one_line(err) and "refused" in str(err.value)
    assert not marker.exists()


def test_torch_tensors_and_object_arrays_are_refused(tmp_path):
    class Persistent(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "0") if isinstance(obj, bytearray) else None

    import io
    buf = io.BytesIO()
    Persistent(buf, protocol=2).dump({"noisy_label": bytearray(b"x")})
    with pytest.raises(DataUnavailableError, match="persistent id"):
        safe_pickle.loads(buf.getvalue(), "t.pkl")
    with pytest.raises(DataUnavailableError, match="refused|Python objects"):
        safe_pickle.loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "o.pkl")


def test_numpy_arrays_and_python2_pickles_load(tmp_path):
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    for protocol in (2, 3, 4):  # 5 pickles arrays through numpy's _frombuffer: not admitted
        got = safe_pickle.loads(pickle.dumps({"a": a, "b": [1, 2.5, "x"]}, protocol), "p")
        np.testing.assert_array_equal(got["a"], a)
        assert got["b"] == [1, 2.5, "x"]
    rows = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    got = safe_pickle.loads(py2_pickle({b"data": rows, b"labels": [3, 300]}), "p",
                            encoding="bytes")
    np.testing.assert_array_equal(got[b"data"], rows)
    assert got[b"labels"] == [3, 300]


@pytest.mark.parametrize("damage,needle", [(lambda raw: raw[: len(raw) // 2], "truncated"),
                                           (lambda raw: b"not a pickle at all\n" + raw,
                                            "not a readable pickle")])
def test_damaged_pickles_are_one_line(damage, needle):
    raw = pickle.dumps({"a": np.arange(100)}, protocol=2)
    with pytest.raises(DataUnavailableError, match=needle) as err:
        safe_pickle.loads(damage(raw), "f.pkl")
    assert _one_line(err).startswith("f.pkl: ")


# ------------------------------------------------------------------ CIFAR's Python folders


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_pickle_folder_loads_in_file_order_and_tfds_orientation(tmp_path, name):
    out = write_cifar_folder(str(tmp_path), name, per_batch=6, test=5)
    for data_dir in (str(tmp_path), out["folder"]):  # holding the folder, or the folder itself
        ds = load_dataset(name, data_dir=data_dir)
        assert ds.name == name and ds.augment and ds.num_classes == (10 if name == "cifar10"
                                                                      else 100)
        assert ds.train_x.shape == (30, 32, 32, 3) and ds.train_x.dtype == np.uint8
        assert ds.test_x.shape == (5, 32, 32, 3) and ds.train_y.dtype == np.int64
        np.testing.assert_array_equal(ds.train_x, out["train_x"])
        np.testing.assert_array_equal(ds.train_y, out["train_y"])
        np.testing.assert_array_equal(ds.test_x, out["test_x"])
        np.testing.assert_array_equal(ds.test_y, out["test_y"])
        if name == "cifar100":
            np.testing.assert_array_equal(ds.train_coarse, out["train_y"] // 5)
        else:
            assert ds.train_coarse is None
    # Orientation, from the raw bytes: row byte c*1024 + r*32 + col is pixel (r, col, c).
    raw = safe_pickle.load(os.path.join(out["folder"], "test_batch" if name == "cifar10"
                                        else "test"), encoding="bytes")[b"data"]
    assert ds.test_x[2, 5, 7, 1] == raw[2, 1 * 1024 + 5 * 32 + 7]
    assert ds.test_x[4, 31, 0, 2] == raw[4, 2 * 1024 + 31 * 32 + 0]


def _truncate(path):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 3])


def _foreign(path):
    open(path, "w").write("<html>404 Not Found</html>\n")


def _cifar100_batch(path):
    fine = [1, 2]
    open(path, "wb").write(py2_pickle({b"data": np.zeros((2, 3072), np.uint8),
                                       b"fine_labels": fine, b"coarse_labels": [0, 0]}))


def _label_out_of_range(path):
    open(path, "wb").write(py2_pickle({b"data": np.zeros((2, 3072), np.uint8),
                                       b"labels": [3, 12]}))


def _wrong_shape(path):
    open(path, "wb").write(py2_pickle({b"data": np.zeros((2, 1024), np.uint8),
                                       b"labels": [3, 2]}))


def _meta_of_cifar100(path):
    open(path, "wb").write(py2_pickle({b"fine_label_names": [b"x"] * 100}))


@pytest.mark.parametrize("fname,damage,needle", [
    ("data_batch_3", os.remove, "missing"),
    ("data_batch_2", _truncate, "truncated pickle"),
    ("test_batch", _foreign, "not a readable pickle"),
    ("data_batch_1", _cifar100_batch, "a cifar100 batch"),
    ("data_batch_5", _label_out_of_range, "label 12 outside 0..9"),
    ("data_batch_4", _wrong_shape, "uint8 array [N, 3072]"),
    ("batches.meta", _meta_of_cifar100, "not cifar10's meta file"),
])
def test_bad_cifar_files_are_one_line_errors_naming_the_file(tmp_path, fname, damage, needle):
    out = write_cifar_folder(str(tmp_path), per_batch=2, test=2)
    path = os.path.join(out["folder"], fname)
    damage(path)
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = _one_line(err)
    assert message.startswith(path + ": ") and needle in message, message


def test_a_folder_without_either_format_says_what_it_looked_for(tmp_path):
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = _one_line(err)
    for needle in ("cifar-10-batches-py", "data_batch_1..5", "tfds.load('cifar10'",
                   "cifar-10-python.tar.gz", str(tmp_path)):
        assert needle in message, message
    write_cifar_folder(str(tmp_path), "cifar100", per_batch=1, test=1)
    with pytest.raises(DataUnavailableError, match="pass --dataset=cifar100"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_dataset("cifar100", data_dir=str(tmp_path / "nowhere"))


def test_tfds_and_the_pickle_folder_give_the_same_arrays_in_the_same_order(monkeypatch,
                                                                            tmp_path):
    """tfds shuffles CIFAR when it prepares it; the loader puts it back in file order (its
    `id`), so a seed draws the same meta split, and CIFAR-N's labels fit, either way."""
    pytest.importorskip("importlib_resources")  # tfds 4.9.10 preparation needs it (#11212)
    out = write_cifar_folder(str(tmp_path / "py"), per_batch=8, test=6)
    write_cifar10_binary(tmp_path / "src" / "cifar-10-batches-bin", out)
    data_dir = str(tmp_path / "tfds")
    prepare_with_tfds(monkeypatch, "cifar10", tmp_path / "src", data_dir)
    via_tfds = load_dataset("cifar10", data_dir=data_dir)
    via_pickle = load_dataset("cifar10", data_dir=str(tmp_path / "py"))
    for key in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(via_tfds, key), getattr(via_pickle, key))
    # tfds is tried first: a folder holding both reads the prepared copy.
    os.rename(out["folder"], os.path.join(data_dir, "cifar-10-batches-py"))
    _foreign(os.path.join(data_dir, "cifar-10-batches-py", "data_batch_1"))
    np.testing.assert_array_equal(load_dataset("cifar10", data_dir=data_dir).train_y,
                                  via_pickle.train_y)


# ------------------------------------------------------------------ human labels (CIFAR-N)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    out = write_cifar_folder(str(root), per_batch=20, test=20)
    return str(root), out, load_dataset("cifar10", data_dir=str(root))


@pytest.mark.parametrize("label_set,key", [("aggregate", "aggre_label"), ("worst", "worse_label"),
                                           ("random1", "random_label1"),
                                           ("random2", "random_label2"),
                                           ("random3", "random_label3")])
def test_cifar10n_label_sets_from_the_torch_archive(tmp_path, cifar10, label_set, key):
    _, out, ds = cifar10
    arrays = cifar_n_arrays(out["train_y"])
    path = write_cifar_n(str(tmp_path / "CIFAR-10_human.pt"), arrays)
    np.testing.assert_array_equal(load_human_labels(path, label_set, ds), arrays[key])


def test_cifar100n_noisy_fine_with_its_prefix_and_list_coarse_labels(tmp_path):
    out = write_cifar_folder(str(tmp_path), "cifar100", per_batch=20, test=5)
    ds = load_dataset("cifar100", data_dir=str(tmp_path))
    arrays = cifar_n_arrays(out["train_y"], "cifar100")
    path = write_cifar_n(str(tmp_path / "CIFAR-100_human.pt"), arrays, prefix="CIFAR-100_human")
    np.testing.assert_array_equal(load_human_labels(path, "noisy_fine", ds),
                                  arrays["noisy_label"])


def test_npy_and_csv_label_files(tmp_path, cifar10):
    _, out, ds = cifar10
    labels = noisy_copy(out["train_y"], 0.3, 10)
    np.save(tmp_path / "labels.npy", labels)
    np.testing.assert_array_equal(load_human_labels(str(tmp_path / "labels.npy"), None, ds),
                                  labels)
    (tmp_path / "labels.csv").write_text("\n".join(map(str, labels)) + "\n")
    np.testing.assert_array_equal(load_human_labels(str(tmp_path / "labels.csv"), None, ds),
                                  labels)


def _bad_label_files(tmp_path, out):
    clean = out["train_y"]
    c10 = cifar_n_arrays(clean)
    c100 = cifar_n_arrays(np.arange(len(clean)) % 100, "cifar100")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.csv").write_text("3\n4\nseven\n")
    (tmp_path / "fake.pt").write_text("not a zip")
    shuffled = dict(c10, clean_label=np.roll(clean, 1))
    missing = {k: v for k, v in c10.items() if k != "worse_label"}
    np.save(tmp_path / "short.npy", clean[:-1])
    np.save(tmp_path / "range.npy", np.where(np.arange(len(clean)) == 7, 10, clean))
    return [  # (file, label set, exception, words of the message)
        (write_cifar_n(str(tmp_path / "c100.pt"), c100), "worst", ValueError,
         "a cifar100 label file"),
        (write_cifar_n(str(tmp_path / "missing.pt"), missing), "worst", DataUnavailableError,
         "has no worse_label"),
        (write_cifar_n(str(tmp_path / "order.pt"), shuffled), "worst", ValueError,
         "clean_label disagrees"),
        (str(tmp_path / "short.npy"), None, ValueError, "has 99 labels"),
        (str(tmp_path / "range.npy"), None, ValueError, "label 10 is outside 0..9"),
        (str(pickled), None, DataUnavailableError, "not a plain .npy"),
        (str(tmp_path / "text.csv"), None, DataUnavailableError, "'seven' is not an integer"),
        (str(tmp_path / "fake.pt"), "worst", DataUnavailableError, "not a torch.save zip"),
        (str(tmp_path / "nowhere.pt"), "worst", DataUnavailableError, "missing"),
    ]


def test_bad_label_files_are_one_line_errors(tmp_path, cifar10):
    _, out, ds = cifar10
    for path, label_set, exc, needle in _bad_label_files(tmp_path, out):
        with pytest.raises(exc) as err:
            load_human_labels(path, label_set, ds)
        assert path in _one_line(err) and needle in str(err.value), (path, str(err.value))


def test_human_noise_keeps_the_meta_set_clean_and_indexes_by_train_index(cifar10):
    _, out, ds = cifar10
    human = noisy_copy(out["train_y"], 0.4, 10)
    data = make_biased_data(ds, noise="human", rate=0.0, meta_per_class=2, seed=3,
                            human_labels=human)
    same_split = make_biased_data(ds, noise="none", rate=0.0, meta_per_class=2, seed=3)
    np.testing.assert_array_equal(data.meta_index, same_split.meta_index)
    np.testing.assert_array_equal(data.meta_y, ds.train_y[data.meta_index])  # clean
    assert not set(data.meta_index) & set(data.train_index)
    np.testing.assert_array_equal(data.train_y, human[data.train_index])
    np.testing.assert_array_equal(data.train_clean_y, ds.train_y[data.train_index])
    assert data.realized_noise_rate == pytest.approx(np.mean(data.corrupted))
    assert 0.2 < data.realized_noise_rate < 0.6
    np.testing.assert_allclose(data.transition.sum(axis=1), 1.0)
    tail = make_biased_data(ds, noise="human", rate=0.0, imbalance=4, meta_per_class=2, seed=3,
                            human_labels=human)
    assert len(tail.train_y) < len(data.train_y)
    np.testing.assert_array_equal(tail.train_y, human[tail.train_index])
    with pytest.raises(ValueError, match="human_labels"):
        make_biased_data(ds, noise="flip", rate=0.2, meta_per_class=2, seed=3,
                         human_labels=human)


def test_config_checks_and_run_names():
    c = Config(dataset="cifar10", noise="human", rate=0.0, noise_labels="x/CIFAR-10_human.pt",
               noise_label_set="aggregate", model="resnet32")
    assert run_name(c) == "cifar10-human_aggregate-mwnet-s0"
    assert run_name(c.replace(noise_labels="l.npy", noise_label_set=None)) == (
        "cifar10-human_file-mwnet-s0")
    for changes, needle in [
        (dict(noise_label_set="noisy_fine"), "not a cifar10 label set"),
        (dict(dataset="digits"), "cifar10 or cifar100"),
        (dict(noise_labels=None), "needs --noise_labels"),
        (dict(rate=0.4), "--rate does not apply"),
        (dict(noise_labels="l.csv"), "picks a set in a CIFAR-N .pt file"),
        (dict(noise="flip", rate=0.4), "go with --noise=human"),
    ]:
        with pytest.raises(ValueError, match=needle):
            c.replace(**changes)


@pytest.mark.e2e
def test_human_noise_end_to_end_through_the_command_line(tmp_path, cifar10, cli):
    """One epoch on a tiny CIFAR-10 folder with CIFAR-10N-format labels through the command
    line (its bad human-noise inputs are in the catalogue, tests/test_catalogue.py). `ce` keeps
    it short; the meta split is the same for every method (checked above on the data)."""
    root, out, ds = cifar10
    arrays = cifar_n_arrays(out["train_y"])
    label_file = write_cifar_n(str(tmp_path / "CIFAR-10_human.pt"), arrays)
    work = str(tmp_path / "run")
    ok = cli.run(f"--data_dir={root}", "--dataset=cifar10", "--noise=human", "--model=tiny",
                 "--epochs=1", "--lr_decay_epochs=", "--batch_size=20", "--meta_batch_size=10",
                 "--meta_per_class=2", "--progress_seconds=0", "--method=ce",
                 f"--noise_labels={label_file}", "--noise_label_set=worst", f"--workdir={work}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    with open(os.path.join(work, "results.json")) as f:
        res = json.load(f)
    expect = make_biased_data(ds, noise="human", rate=0.0, meta_per_class=2, seed=0,
                              human_labels=arrays["worse_label"])
    assert res["realized_noise_rate"] == pytest.approx(expect.realized_noise_rate)
    assert res["config"]["noise_label_set"] == "worst" and res["config"]["rate"] == 0.0
    assert f"{100 * expect.realized_noise_rate:.1f}% labels corrupted" in ok.stdout
    flags_cfg = open(os.path.join(work, "flags.cfg")).read()
    assert f"--noise_labels={label_file}\n" in flags_cfg
