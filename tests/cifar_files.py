"""Small files in the real layouts of CIFAR's Python folders and CIFAR-N's label files.

CIFAR's batches were pickled by Python 2: `py2_pickle` writes protocol-2 opcodes the way
Python 2's cPickle does (str as SHORT_BINSTRING/BINSTRING, a NumPy array as
`numpy.core.multiarray._reconstruct` + BUILD with the raw bytes), so the loader meets the
same opcodes and globals as in the real files. CIFAR-N's file is what `torch.save` writes
(verified on the published files, see `mwnet_tf/data/human_noise.py`): a zip archive with
`<prefix>/data.pkl`, a protocol-2 Python 3 pickle of a dict of int64 arrays, and
`<prefix>/version`. The binary layouts (`cifar-10-batches-bin`, `cifar-100-binary`) are what
tensorflow-datasets prepares CIFAR from; `prepare_with_tfds` runs its real builder on them
offline.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile

import numpy as np


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _str(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _obj(o) -> bytes:
    if isinstance(o, dict):
        body = b"".join(_obj(k) + _obj(v) for k, v in o.items())
        return b"}" + (b"(" + body + b"u" if o else b"")
    if isinstance(o, list):
        return b"]" + (b"(" + b"".join(_obj(v) for v in o) + b"e" if o else b"")
    if isinstance(o, bytes):
        return _str(o)
    if isinstance(o, (int, np.integer)):
        return _int(int(o))
    if isinstance(o, np.ndarray):
        assert o.dtype == np.uint8
        dtype = (_global("numpy", "dtype") + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
                 + b"(" + _int(3) + _str(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0)
                 + b"tb")
        shape = b"(" + b"".join(_int(s) for s in o.shape) + b"t"
        return (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
                + _int(0) + b"\x85" + _str(b"b") + b"\x87R"
                + b"(" + _int(1) + shape + dtype + b"\x89" + _str(o.tobytes()) + b"tb")
    raise TypeError(type(o))


def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle writes it (dict, list, str, int, uint8 array)."""
    return b"\x80\x02" + _obj(obj) + b"."


def _balanced_labels(n: int, classes: int, rng) -> np.ndarray:
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    return labels


def write_cifar_folder(root: str, name: str = "cifar10", *, per_batch: int = 20,
                       test: int = 20, seed: int = 0) -> dict:
    """Writes `root/cifar-10-batches-py` (5 batches of `per_batch` images, test_batch,
    batches.meta) or `root/cifar-100-python` (train of 5 * per_batch, test, meta) with the
    real keys. Returns the images (NHWC) and labels it wrote, in file order."""
    rng = np.random.default_rng(seed)
    cifar10 = name == "cifar10"
    folder = os.path.join(root, "cifar-10-batches-py" if cifar10 else "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    out = {}

    def batch(n, label):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-major rows
        fine = _balanced_labels(n, 10 if cifar10 else 100, rng)
        d = {b"batch_label": label.encode(), b"data": rows,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        if cifar10:
            d[b"labels"] = [int(v) for v in fine]
        else:
            d[b"fine_labels"] = [int(v) for v in fine]
            d[b"coarse_labels"] = [int(v) // 5 for v in fine]
        return d, images, fine

    def write(fname, obj):
        with open(os.path.join(folder, fname), "wb") as f:
            f.write(py2_pickle(obj))

    if cifar10:
        parts = []
        for i in range(1, 6):
            d, images, fine = batch(per_batch, f"training batch {i} of 5")
            write(f"data_batch_{i}", d)
            parts.append((images, fine))
        out["train_x"] = np.concatenate([p[0] for p in parts])
        out["train_y"] = np.concatenate([p[1] for p in parts])
        d, out["test_x"], out["test_y"] = batch(test, "testing batch 1 of 1")
        write("test_batch", d)
        write("batches.meta", {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                               b"label_names": [f"class{i}".encode() for i in range(10)]})
    else:
        d, out["train_x"], out["train_y"] = batch(5 * per_batch, "training batch 1 of 1")
        write("train", d)
        d, out["test_x"], out["test_y"] = batch(test, "testing batch 1 of 1")
        write("test", d)
        write("meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    out["folder"] = folder
    return out


def noisy_copy(labels: np.ndarray, rate: float, classes: int, seed: int = 1) -> np.ndarray:
    """`labels` with about `rate` of them moved to the next class."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(labels)) < rate
    return np.where(flip, (labels + 1) % classes, labels).astype(np.int64)


def cifar_n_arrays(clean: np.ndarray, name: str = "cifar10") -> dict:
    """The published file's dict for these clean labels (CIFAR-10N: five sets)."""
    clean = np.asarray(clean, np.int64)
    if name == "cifar10":
        return {"clean_label": clean, "aggre_label": noisy_copy(clean, 0.1, 10, 1),
                "worse_label": noisy_copy(clean, 0.4, 10, 2),
                "random_label1": noisy_copy(clean, 0.17, 10, 3),
                "random_label2": noisy_copy(clean, 0.18, 10, 4),
                "random_label3": noisy_copy(clean, 0.18, 10, 5)}
    return {"clean_label": clean, "noisy_label": noisy_copy(clean, 0.4, 100, 6),
            "clean_coarse_label": [int(c) // 5 for c in clean],
            "noisy_coarse_label": [int(c) // 5 for c in clean]}


def write_cifar_n(path: str, arrays: dict, prefix: str = "archive") -> str:
    """A torch.save-style archive: `<prefix>/data.pkl` (protocol 2) and `<prefix>/version`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pickle.dumps(arrays, protocol=2))
        z.writestr(f"{prefix}/version", b"3\n")
    return path


def write_cifar10_binary(folder, out: dict) -> None:
    """`out`'s images and labels (from `write_cifar_folder`) in CIFAR-10's binary layout."""
    os.makedirs(folder)
    n = len(out["train_y"]) // 5
    for i in range(5):
        x, y = out["train_x"][i * n:(i + 1) * n], out["train_y"][i * n:(i + 1) * n]
        rec = np.concatenate([y[:, None].astype(np.uint8),
                              x.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
        with open(os.path.join(folder, f"data_batch_{i + 1}.bin"), "wb") as f:
            f.write(rec.tobytes())
    rec = np.concatenate([out["test_y"][:, None].astype(np.uint8),
                          out["test_x"].transpose(0, 3, 1, 2).reshape(len(out["test_y"]), -1)],
                         axis=1)
    with open(os.path.join(folder, "test_batch.bin"), "wb") as f:
        f.write(rec.tobytes())
    with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
        f.write("\n".join(f"class{i}" for i in range(10)))


def write_cifar100_binary(path, n: int, rng):
    """`n` random records in CIFAR-100's binary layout; returns images, fine, coarse labels."""
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(0, 100, n).astype(np.uint8)
    coarse = fine // 5
    records = np.concatenate([coarse[:, None], fine[:, None],
                              images.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())
    return images, fine, coarse


def prepare_with_tfds(monkeypatch, name: str, source: str, data_dir: str) -> None:
    """Runs tfds' real `name` builder offline: its download is the binary folder under `source`."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        lambda self, url: str(source))
    tfds.builder(name, data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP))
