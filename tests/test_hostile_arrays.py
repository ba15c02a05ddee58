"""Hostile array files end in one line before anything is allocated: .npy headers declaring
more than the file holds, labels that would build 10^12 class names, weight functions holding
NaN or inf."""

import zipfile

import numpy as np
import pytest
from hostile_files import csv_with_label, huge_npz, npy_bytes, npz_with_label, weight_fn_with

from mwnet_tf.data import human_noise, npy_check
from mwnet_tf.data.custom import from_files, from_npz
from mwnet_tf.data.custom.biased import MAX_CLASSES
from mwnet_tf.errors import DataUnavailableError, WeightFnError
from mwnet_tf.models import build_weight_net, weight_function
from mwnet_tf.outputs import prediction


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_declaring_10_to_the_12_rows_is_refused_before_allocating(tmp_path, compress):
    path = huge_npz(tmp_path / "data.npz", compress=compress)
    with pytest.raises(DataUnavailableError, match=r"x_train: its header declares shape "
                       r"\[1000000000000, 5\] of float64 \(40000000000000 bytes\), more than "
                       r"the 64 bytes it holds") as e:
        from_npz.load_npz_arrays(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(path)
    with pytest.raises(prediction.PredictError, match="x_train: its header declares"):
        prediction.read_npz(huge_npz(tmp_path / "in.npz", "x_train"), {})


def test_a_zip_entry_claiming_more_than_deflate_can_give_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", npy_bytes((1000, 1000), payload=b"\0" * 8_000_000))
    npy_check.check_npz(str(path))  # honest sizes: 8 MB of zeros is not refused by ratio
    with zipfile.ZipFile(path) as zf:  # the central directory now claims 10^12 bytes
        info = zf.getinfo("x.npy")
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.compress_size * npy_check.MAX_DEFLATE_RATIO < 0xFFFFFFF0
    with pytest.raises(ValueError, match="declares 4294967280 bytes from"):
        npy_check.check_npz(str(path))


def test_a_header_beyond_this_machines_memory_is_refused(monkeypatch):
    monkeypatch.setattr(npy_check, "memory_bytes", lambda: 100)
    with pytest.raises(ValueError, match="more than this machine's memory"):
        npy_check._check("x", (20, 1), np.dtype("<f8"), 10 ** 6)
    npy_check._check("x", (10, 1), np.dtype("<f8"), 10 ** 6)  # 80 bytes fit


def test_object_arrays_and_bad_headers_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="x_train holds Python objects, refused"):
        npy_check.check_npz(str(path))
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(ValueError, match="x: not a readable .npy header"):
        npy_check.check_npz(str(bad))


def test_a_huge_npy_of_human_labels_is_refused(tmp_path):
    path = tmp_path / "labels.npy"
    path.write_bytes(npy_bytes((10 ** 12,), descr="<i8"))
    with pytest.raises(DataUnavailableError, match="more than the 64 bytes it holds"):
        human_noise._read_plain(str(path))


@pytest.mark.parametrize("label,match", [
    (2 ** 40, r"y_train holds label 1099511627776: labels are class indices below 100000"),
    (MAX_CLASSES, r"y_train holds label 100000"),
    (-3, r"y_train holds label -3: labels are class indices 0, 1, ... \(no negative"),
])
def test_npz_labels_out_of_bounds_are_refused(tmp_path, label, match):
    with pytest.raises(DataUnavailableError, match=match):
        from_npz.load_npz_arrays(npz_with_label(tmp_path / "d.npz", label))


@pytest.mark.parametrize("label,match", [
    ("1000000000000", r"line 10: label '1000000000000': integer labels are class indices "
                      r"below 100000"),
    ("0" * 5000 + "1", "line 10: label '0000"),
    ("9" * 5000, "line 10: label '9999"),
    ("-1", r"line 10: label '-1': labels are class indices 0, 1, ... \(no negative"),
])
def test_csv_labels_out_of_bounds_are_refused(tmp_path, label, match):
    if label.startswith("0"):  # leading zeros: a small label, accepted
        names, arrays, _ = from_files.list_csv_table(csv_with_label(tmp_path / "t.csv", label))
        assert names == ("0", "1") and 1 in arrays["train"][1]
        return
    with pytest.raises(DataUnavailableError, match=match) as e:
        from_files.list_csv_table(csv_with_label(tmp_path / "t.csv", label))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value,match", [
    (np.inf, r"holds inf \(1 of 100 values\)"),
    (np.nan, r"holds NaN \(1 of 100 values\)"),
])
def test_a_weight_function_holding_nan_or_inf_is_refused_with_that_reason(tmp_path, value,
                                                                           match):
    path = weight_fn_with(tmp_path / "wfn", value)
    with pytest.raises(WeightFnError, match=r"variable of shape \[1, 100\] " + match):
        weight_function.read_weight_net(path)
    good = build_weight_net(seed=0)
    weight_function.read_weight_net(weight_function.export_weight_fn(good, str(tmp_path / "good")))
