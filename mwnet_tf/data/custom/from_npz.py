"""Own data as NumPy arrays: one `.npz` file.

Keys: `x_train`, `y_train`, `x_meta`, `y_meta` (the trusted set), optionally `x_test` and
`y_test` (without them a stratified part of the trusted set is held out), `y_train_true` (the
true training labels, when known) and `class_names` (strings; default "0", "1", ...). A run
whose meta set is selected from the training set (`need_trusted=False`) takes a file without
`x_meta` and `y_meta`; without `x_test` either, a stratified part of the training rows is held
out with their given labels (`OwnData.test_labels_given`).

`x` may have any shape [N, ...] and any numeric dtype: uint8 images [N, H, W, C] are
normalized per channel and augmented (crop + flip) by default, and uint8 [N, H, W] with H, W
>= 8 are grayscale images (as `keras.datasets.mnist` gives them) that get their channel axis;
other arrays, e.g. tabular
[N, D] features, per feature ([N, D]) or as a whole, and never augmented. The "mlp" model
flattens any shape. Read with `allow_pickle=False`: a file holding Python objects is refused.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from mwnet_tf.data.custom.biased import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    MAX_CLASSES,
    NO_TRUSTED_WAY,
    OwnData,
    hold_out,
    hold_out_training,
)
from mwnet_tf.data.npy_check import check_npz
from mwnet_tf.errors import DataUnavailableError, data_error

REQUIRED = ("x_train", "y_train", "x_meta", "y_meta")
TRUSTED = ("x_meta", "y_meta")  # required unless the meta set is selected (`need_trusted`)
OPTIONAL = ("x_test", "y_test", "y_train_true", "class_names")


def _with_channel_axis(xs: dict) -> dict:
    """Grayscale uint8 images [N, H, W] (every split's) as [N, H, W, 1]; other arrays as
    they are."""
    if all(x is None or (x.ndim == 3 and is_image_array(x[..., None])) for x in xs.values()):
        return {s: None if x is None else x[..., None] for s, x in xs.items()}
    return xs


def is_image_array(x: np.ndarray) -> bool:
    """uint8 [N, H, W, C] with C in 1..4 and H, W >= 8: images the pipeline can augment."""
    return x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] <= 4 and min(x.shape[1:3]) >= 8


def array_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of `x` in x / 255 units (`pipeline.normalize`): per channel for
    [N, H, W, C] images (C <= 4), per feature for [N, D], one value otherwise. A constant
    feature gets std 1 (no division by zero)."""
    axes = (tuple(range(x.ndim - 1)) if (x.ndim == 2 or (x.ndim == 4 and x.shape[-1] <= 4))
            else None)
    mean = np.atleast_1d(np.mean(x, axis=axes, dtype=np.float64)) / 255.0
    std = np.atleast_1d(np.std(x, axis=axes, dtype=np.float64)) / 255.0
    std = np.where(std > 1e-12, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _read_arrays(path: str, need_trusted: bool = True) -> dict[str, np.ndarray]:
    """The named arrays of the .npz at `path` (allow_pickle=False), required ones checked."""
    if not os.path.isfile(path):
        raise DataUnavailableError(f"{path}: no such file (the .npz file of the data)")
    try:
        check_npz(path)  # the sizes its members declare, before NumPy allocates them
    except ValueError as e:
        raise data_error(path, str(e)) from None
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise data_error(path, f"not a NumPy .npz file ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise data_error(path, "a single array (.npy), not an .npz archive of named arrays")
    with archive:
        keys = set(archive.files)
        missing = [k for k in REQUIRED if k not in keys
                   and (need_trusted or k not in TRUSTED)]
        if missing:
            way = f"; {NO_TRUSTED_WAY}" if set(missing) <= set(TRUSTED) else ""
            raise data_error(path, f"no {', '.join(missing)} in it (holds: "
                        f"{', '.join(sorted(keys)) or 'nothing'}); expected "
                        f"{', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}{way}")
        for a, b in (("x_test", "y_test"), TRUSTED):
            if (a in keys) != (b in keys):
                raise data_error(path, f"{a} and {b} go together: it holds only one of them")
        arrays = {}
        for k in REQUIRED + OPTIONAL:
            if k not in keys:
                continue
            try:
                arrays[k] = archive[k]
            except ValueError as e:  # object arrays: "Object arrays cannot be loaded ..."
                raise data_error(path, f"{k} holds Python objects, refused (allow_pickle=False; "
                            f"{e}): store numbers and strings only") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise data_error(path, f"{k} cannot be read ({e})") from None
    return arrays


def _split_arrays(path: str, arrays: dict) -> tuple[dict, dict]:
    """(x by split, y by split) of the arrays, their kinds, shapes and lengths checked."""
    xs = {s: arrays.get(f"x_{s}") for s in ("train", "meta", "test")}
    ys = {s: arrays.get(f"y_{s}") for s in ("train", "meta", "test")}
    if "y_train_true" in arrays:
        ys["train_true"] = arrays["y_train_true"]
    for s, x in xs.items():
        if x is not None and (x.dtype.kind not in "biuf" or x.ndim < 2 or len(x) == 0):
            raise data_error(path, f"x_{s} must be a non-empty numeric array [N, ...], got "
                        f"dtype {x.dtype} shape {x.shape}")
    for s, y in ys.items():
        if y is None:
            continue
        name = f"y_{s}"
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise data_error(path, f"{name} must be integer labels [N], got dtype {y.dtype} "
                        f"shape {y.shape}")
        x = xs["train" if s == "train_true" else s]
        if len(y) != len(x):
            raise data_error(path, f"{name} has {len(y)} labels for {len(x)} rows of "
                        f"x_{'train' if s == 'train_true' else s}")
    feature = xs["train"].shape[1:]
    for s in ("meta", "test"):
        if xs[s] is not None and xs[s].shape[1:] != feature:
            raise data_error(path, f"x_{s} rows have shape {xs[s].shape[1:]}, x_train rows "
                        f"{feature}")
    return xs, ys


def _class_names(path: str, arrays: dict, ys: dict) -> tuple[str, ...]:
    """The class names (`class_names`, or "0".."C-1"), every label checked against them and
    every class present in the training and trusted rows."""
    for s, y in ys.items():
        if y is not None and len(y) and int(y.min()) < 0:
            raise data_error(path, f"y_{s} holds label {int(y.min())}: labels are class indices "
                        "0, 1, ... (no negative labels)")
        if y is not None and len(y) and int(y.max()) >= MAX_CLASSES:
            raise data_error(path, f"y_{s} holds label {int(y.max())}: labels are class indices "
                        f"below {MAX_CLASSES} (at most {MAX_CLASSES} classes)")
    top = max(int(y.max()) for y in ys.values() if y is not None)
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim == 1 and len(names) > MAX_CLASSES:
            raise data_error(path, f"class_names holds {len(names)} names, more than the "
                        f"{MAX_CLASSES} classes own data may have")
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise data_error(path, f"class_names must be strings [C], got dtype {names.dtype} "
                        f"shape {names.shape}")
        names = tuple(str(n.decode() if isinstance(n, bytes) else n) for n in names)
        if len(set(names)) != len(names):
            raise data_error(path, "class_names holds a name twice")
    else:
        names = tuple(str(k) for k in range(top + 1))
    for s, y in ys.items():
        bad = y[(y < 0) | (y >= len(names))] if y is not None else []
        if len(bad):
            raise data_error(path, f"y_{s} holds label {int(bad[0])}, outside the {len(names)} "
                        f"classes 0..{len(names) - 1}")
    for s, what in (("train", "training"), ("meta", "trusted (meta)")):
        if ys[s] is None:  # no trusted set: the meta set is selected
            continue
        counts = np.bincount(ys[s], minlength=len(names))
        if (counts == 0).any():
            raise data_error(path, f"class {names[int(np.argmin(counts))]!r} has no {what} rows")
    return names


def load_npz_arrays(path: str, *, augment: bool | None = None,
                    test_fraction: float | None = None,
                    split_seed: int = DEFAULT_SPLIT_SEED, need_trusted: bool = True) -> OwnData:
    """Arrays of an .npz file (module docstring).

    Args:
        path: The .npz file.
        augment: Crop + flip the training and trusted images (None: for uint8 images
            [N, H, W, C] only; True on other arrays is an error).
        test_fraction: Without x_test: the part of each class of the trusted set held out
            (None: `DEFAULT_TEST_FRACTION`); without x_meta either, the part of the training
            rows held out with their given labels (None: `DEFAULT_HELDOUT_FRACTION`).
        split_seed: Seed of that hold-out.
        need_trusted: Refuse a file without x_meta and y_meta (False: a run whose meta set is
            selected from the training set, `--meta_source=selected`).
    """
    arrays = _read_arrays(path, need_trusted)
    xs, ys = _split_arrays(path, arrays)
    xs = _with_channel_axis(xs)
    names = _class_names(path, arrays, ys)
    images = is_image_array(xs["train"])
    if augment and not images:
        raise ValueError(f"augmentation (crop + flip) needs uint8 images [N, H, W, C], H and "
                         f"W >= 8; {path} holds x of dtype {xs['train'].dtype} shape "
                         f"{xs['train'].shape}")
    meta_x = xs["meta"]
    meta_y = None if meta_x is None else ys["meta"].astype(np.int64)
    train_x, train_y = xs["train"], ys["train"].astype(np.int64)
    true_y = ys.get("train_true")
    true_y = None if true_y is None else true_y.astype(np.int64)
    held, given = None, False
    if xs["test"] is not None:
        test_x, test_y = xs["test"], ys["test"].astype(np.int64)
    elif meta_x is None:  # neither: a part of the training rows, their labels as given
        train_x, train_y, true_y, test_x, test_y, held = hold_out_training(
            train_x, train_y, true_y, test_fraction, split_seed, names, path)
        given = True
    else:
        held = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
        keep, test = hold_out(meta_y, held, split_seed, names, f"{path} trusted set")
        test_x, test_y, meta_x, meta_y = meta_x[test], meta_y[test], meta_x[keep], meta_y[keep]
    mean, std = array_stats(train_x)
    return OwnData(name="npz", source=path, class_names=names, train_x=train_x,
                   train_y=train_y, meta_x=meta_x, meta_y=meta_y,
                   test_x=test_x, test_y=test_y, mean=mean, std=std,
                   augment=images if augment is None else bool(augment),
                   train_true_y=true_y, test_held_out=held, test_labels_given=given)
