"""Human label noise: CIFAR-10N / CIFAR-100N (Wei et al. 2022), read without PyTorch.

The published files (github.com/UCSC-REAL/cifar-10-100n, `data/CIFAR-10_human.pt` and
`data/CIFAR-100_human.pt`) are `torch.save` zip archives. What was verified, on the files of
that repository's commit 49df7d8 (opened with `zipfile` and `pickletools`, then with this
module):
- the archive holds `<prefix>/data.pkl` and `<prefix>/version` (b"3\\n"), no tensor storages;
  the prefix is `archive/` in CIFAR-10_human.pt and `CIFAR-100_human/` in CIFAR-100_human.pt
  (`archive/` in its first version, commit b5a80e6), so `data.pkl` is found by its name;
- `data.pkl` is a protocol-2 pickle of a dict of str keys naming only
  `numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype` and `_codecs.encode`;
- CIFAR-10_human.pt: `clean_label`, `aggre_label`, `worse_label`, `random_label1`,
  `random_label2`, `random_label3`, each int64 [50000] in 0..9; their disagreement with
  `clean_label`: aggregate 9.01%, random1 17.23%, random2 18.12%, random3 17.64%,
  worst 40.21%;
- CIFAR-100_human.pt: `clean_label`, `noisy_label` (int64 [50000] in 0..99, 40.20% noisy),
  `clean_coarse_label`, `noisy_coarse_label` (Python lists of 50000 ints in 0..19 since the
  2023 revision, arrays before);
- the order is that of the training images in the Python batches: the repository's own loader
  (`data/cifar.py`) asserts that `clean_label` equals the labels of `data_batch_1..5` (CIFAR-100:
  `train`) read in order. This module checks the same agreement against the loaded data set.

A `.npy` (read with `allow_pickle=False`) or `.csv` (one integer per line, or per comma)
of one label per training image, in the same order, works too.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from mwnet_tf.data import safe_pickle
from mwnet_tf.data.datasets import Dataset
from mwnet_tf.data.npy_check import check_npy
from mwnet_tf.errors import data_error

# --noise_label_set -> key in the published file, per data set.
LABEL_SETS = {
    "cifar10": {"aggregate": "aggre_label", "random1": "random_label1",
                "random2": "random_label2", "random3": "random_label3",
                "worst": "worse_label"},
    "cifar100": {"noisy_fine": "noisy_label"},
}
ALL_LABEL_SETS = tuple(name for sets in LABEL_SETS.values() for name in sets)
DEFAULT_LABEL_SET = {"cifar10": "worst", "cifar100": "noisy_fine"}
PUBLISHED = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
PLAIN_SUFFIXES = (".npy", ".csv")


def is_plain_file(path: str) -> bool:
    """A .npy or .csv of one label set (no label sets to choose from)."""
    return path.lower().endswith(PLAIN_SUFFIXES)


def default_label_set(dataset: str, path: str | None) -> str | None:
    """The label set used when `--noise_label_set` is not given (None for .npy / .csv)."""
    if path is None or is_plain_file(path):
        return None
    return DEFAULT_LABEL_SET.get(dataset)


def check_settings(dataset: str, path: str | None, label_set: str | None) -> list[str]:
    """Messages for settings that cannot work, before any file is read."""
    if dataset not in LABEL_SETS:
        return [f"--noise=human needs --dataset=cifar10 or cifar100 (CIFAR-10N / CIFAR-100N), "
                f"not {dataset}"]
    if path is None:
        return [f"--noise=human needs --noise_labels=PATH: {PUBLISHED[dataset]} from "
                "github.com/UCSC-REAL/cifar-10-100n, or a .npy / .csv of one label per "
                "training image"]
    if is_plain_file(path):
        if label_set is not None:
            return [f"--noise_label_set={label_set} picks a set in a CIFAR-N .pt file; "
                    f"{path} is a {os.path.splitext(path)[1]} file of one set"]
        return []
    sets = LABEL_SETS[dataset]
    if label_set not in sets:
        return [f"--noise_label_set={label_set} is not a {dataset} label set; "
                f"{PUBLISHED[dataset]} has {', '.join(sets)}"]
    return []


def read_torch_labels(path: str) -> dict[str, np.ndarray]:
    """The dict of label arrays in a CIFAR-N `torch.save` archive, without PyTorch."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(names) != 1:
                raise data_error(path, f"a zip archive without one data.pkl (it holds "
                                   f"{', '.join(z.namelist()[:5]) or 'nothing'}): not a "
                                   "torch.save file")
            raw = z.read(names[0])
    except zipfile.BadZipFile as e:
        raise data_error(path, f"not a torch.save zip archive ({e}); a label file is a CIFAR-N "
                           ".pt, or a .npy / .csv of one label per training image") from None
    except OSError as e:
        raise data_error(path, f"cannot read: {e.strerror or e}") from None
    obj = safe_pickle.loads(raw, f"{path}:{names[0]}")
    if not isinstance(obj, dict):
        raise data_error(path, f"holds a {type(obj).__name__}, not a dict of label arrays")
    return obj


def _as_labels(path: str, what: str, values) -> np.ndarray:
    try:
        labels = np.asarray(values)
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise data_error(path, f"{what} is not one integer label per image ({labels.dtype} of "
                           f"shape {labels.shape})")
    return labels.astype(np.int64)


def _read_plain(path: str) -> np.ndarray:
    if path.lower().endswith(".npy"):
        try:
            check_npy(path)  # the size its header declares, before NumPy allocates it
            values = np.load(path, allow_pickle=False)
        except OSError as e:
            raise data_error(path, f"cannot read: {e.strerror or e}") from None
        except ValueError as e:  # a pickled .npy, or not a .npy at all
            raise data_error(path, f"not a plain .npy array ({' '.join(str(e).split())[:160]})"
                         ) from None
        return _as_labels(path, "the array", values)
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeError) as e:
        raise data_error(path, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    fields = text.replace(",", "\n").split()
    try:
        return np.array([int(v) for v in fields], dtype=np.int64)
    except ValueError:
        bad = next(v for v in fields if not v.lstrip("-").isdigit())
        raise data_error(path, f"{bad[:40]!r} is not an integer label; a .csv holds one integer "
                           "label per training image") from None


def load_human_labels(path: str, label_set: str | None, ds: Dataset) -> np.ndarray:
    """The noisy label of every training image of `ds` (int64 [N], in `ds`'s order).

    Raises:
        DataUnavailableError: the file is missing, unreadable, damaged, or lacks the set.
        ValueError: the file does not fit the data set (the other CIFAR's file, another
            number of images, labels out of range, clean labels that disagree).
    """
    if not os.path.isfile(path):
        raise data_error(path, "missing (--noise_labels)")
    n, classes = len(ds.train_y), ds.num_classes
    clean = None
    if is_plain_file(path):
        noisy = _read_plain(path)
        what = "the file"
    else:
        d = read_torch_labels(path)
        other = "cifar100" if ds.name == "cifar10" else "cifar10"
        key = LABEL_SETS.get(ds.name, {}).get(label_set)
        if key not in d:
            if any(k in d for k in LABEL_SETS[other].values()):
                raise ValueError(f"--noise_labels={path} is a {other} label file "
                                 f"({PUBLISHED[other]}: {', '.join(map(str, d))}), not "
                                 f"{ds.name}'s: use it with --dataset={other}")
            raise data_error(path, f"has no {key} (--noise_label_set={label_set}); it holds "
                               f"{', '.join(map(str, d)) or 'nothing'}")
        noisy = _as_labels(path, key, d[key])
        what = key
        if "clean_label" in d:
            clean = _as_labels(path, "clean_label", d["clean_label"])
    if len(noisy) != n:
        raise ValueError(f"--noise_labels={path}: {what} has {len(noisy)} labels, {ds.name}'s "
                         f"training set {n} images (one label per training image, in the "
                         "original order)")
    bad = noisy[(noisy < 0) | (noisy >= classes)]
    if bad.size:
        raise ValueError(f"--noise_labels={path}: label {int(bad[0])} is outside 0..{classes - 1}"
                         f" ({ds.name} has {classes} classes)")
    if clean is not None and len(clean) == n:
        differ = int(np.sum(clean != ds.train_y))
        if differ:
            raise ValueError(f"--noise_labels={path}: its clean_label disagrees with "
                             f"{ds.name}'s training labels on {differ} of {n} images: the file "
                             "is for other images or another order")
    return noisy
