"""`mwnet_tf.predict`'s work: the run folder's classifier (its description checked, the model
loaded in Keras' safe mode), the inputs (an .npz file, a CSV table, a training layout of class
folders, or a folder of images), the check that `--out` replaces none of them, and the CSV of
predictions. Every problem is a `PredictError` with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.data.custom.from_files import list_csv_table, list_image_folder
from mwnet_tf.data.image_files import IMAGE_EXTENSIONS, read_header, walk_images
from mwnet_tf.data.npy_check import check_npz
from mwnet_tf.data.pipeline import decode_image
from mwnet_tf.errors import DataUnavailableError, OutputError, PredictError
from mwnet_tf.models import keras_file
from mwnet_tf.outputs import serving

NPZ_KEYS = ("x", "x_test")


# --- the output ------------------------------------------------------------------------------

def _files_under(folder: str):
    for root, _, names in os.walk(folder):
        for name in names:
            yield os.path.join(root, name)


def _identity(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_out(out: str, run: str, source: str, listed=()) -> None:
    """Raises `OutputError` when writing `out` would replace an input or a file of the run
    folder: `out` is (by real path, through symlinks, or as a hard link: the same device and
    inode) the input file, the input or run folder, a file under either, or one of the
    `listed` files (those a table names). A new file in either folder is allowed."""
    target = os.path.realpath(out)
    if os.path.isdir(target):
        raise OutputError(f"--out={out} is a folder: give the CSV file to write")
    me = _identity(target)
    if me is None:
        return
    for what, path in (("the input", source), ("a file of the run folder", run)):
        files = _files_under(path) if os.path.isdir(path) else [path]
        if any(_identity(f) == me for f in files):
            raise OutputError(f"--out={out} is {what} {path}: give another file to write")
    if any(_identity(str(f)) == me for f in listed):
        raise OutputError(f"--out={out} is an input listed in {source}: give another file "
                          "to write")


# --- the run folder --------------------------------------------------------------------------

def read_spec(run: str) -> dict:
    """The run's classifier.json, checked."""
    if not os.path.isdir(run):
        raise PredictError(f"{run}: no such run folder")
    for name in (files.CLASSIFIER, files.CLASSIFIER_SPEC):
        if not os.path.isfile(os.path.join(run, name)):
            raise PredictError(f"{run} has no {name}: export the classifier first "
                               "(serving.export_classifier, at the end of a run)")
    path = os.path.join(run, files.CLASSIFIER_SPEC)
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise PredictError(f"{path}: not a readable classifier description ({_first(e)})") \
            from None
    try:
        return serving.check_spec(spec)
    except ValueError as e:
        raise PredictError(f"{path}: not a valid classifier description ({_first(e)})") \
            from None


def load_classifier(run: str, spec: dict):
    """classifier.keras, its config checked as data and then loaded in Keras' safe mode (no
    Python code from the file, `keras_file.load_keras_file`)."""
    path = os.path.join(run, files.CLASSIFIER)
    try:
        model = keras_file.load_keras_file(path, path)
        keras_file.check_single_io(model, path)
    except ValueError as e:
        raise PredictError(f"cannot load the classifier {e}") from None
    if [int(d) for d in model.input_shape[1:]] != list(spec["input_shape"]):
        raise PredictError(f"{path} takes inputs of shape {list(model.input_shape[1:])}, "
                           f"but classifier.json says {spec['input_shape']}")
    outputs = model.output_shape
    if not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[-1] != len(
            spec["class_names"]):
        raise PredictError(f"{path} gives outputs of shape {outputs}, but classifier.json "
                           f"names {len(spec['class_names'])} classes")
    return model


# --- the inputs ------------------------------------------------------------------------------

def _first(e: BaseException) -> str:
    """The first line of an exception's message, without TensorFlow's `{{function_node}}`."""
    text = str(getattr(e, "message", None) or e).strip()
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def read_npz(path: str, spec: dict):
    """(ids, array of raw inputs) from an .npz file, checked against the spec."""
    try:
        check_npz(path)  # the sizes its arrays declare, before NumPy allocates them
        with np.load(path, allow_pickle=False) as f:
            key = next((k for k in NPZ_KEYS if k in f.files), None)
            if key is None:
                raise PredictError(f"{path} has no array {' or '.join(NPZ_KEYS)} (it has: "
                                   f"{', '.join(f.files) or 'none'})")
            x = f[key]
    except PredictError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PredictError(f"{path}: not a readable .npz file ({_first(e)})") from None
    raw_shape = spec["raw_shape"]
    if spec["kind"] == "images":
        if x.ndim == 3 and raw_shape[-1] == 1:
            x = x[..., None]
        if x.dtype.kind not in "ui" or (x.size and (x.min() < 0 or x.max() > 255)):
            raise PredictError(f"{path}: images must be integers in 0-255 (uint8), got "
                               f"{x.dtype}")
        x = x.astype(np.uint8)
    elif x.dtype.kind not in "uif":
        raise PredictError(f"{path}: features must be numbers, got {x.dtype}")
    else:
        x = x.astype(np.float32)
    ok = x.ndim == len(raw_shape) + 1 and all(
        d is None or d == s for d, s in zip(raw_shape, x.shape[1:]))
    if not ok:
        want = "[N, " + ", ".join("any" if d is None else str(d) for d in raw_shape) + "]"
        raise PredictError(f"{path}: {key} has shape {list(x.shape)}; the classifier takes "
                           f"{want}")
    return [str(i) for i in range(len(x))], x


def image_files(folder: str) -> list[str]:
    """The image files under `folder` (recursively, `image_files.walk_images`: the rule of
    `train`'s image folders), sorted, relative."""
    try:
        found = walk_images(folder)
    except DataUnavailableError as e:
        raise PredictError(str(e)) from None
    return sorted(os.path.relpath(p, folder) for p in found)


def read_image(path: str, spec: dict):
    """One image file -> uint8 [H, W, C] as the classifier's raw input: decoded as RGB (the
    first frame of a GIF, 16-bit PNGs scaled to 8 bits, alpha dropped), resized (bilinear,
    antialiased) to the data set's images, to a square of `resize` for Clothing1M, and for a
    one-channel classifier turned gray with ITU-R 601 weights: `pipeline.decode_image`, the
    decoder of training's own image files."""
    try:  # a regular image file of at most MAX_PIXELS pixels, before anything is decoded
        read_header(path)
    except DataUnavailableError as e:
        raise PredictError(str(e)) from None
    channels = int(spec["raw_shape"][-1])
    if spec.get("resize"):
        size = (int(spec["resize"]),) * 2
    elif spec.get("image_size"):
        size = (int(spec["image_size"]),) * 2
    else:
        size = tuple(int(d) for d in spec["raw_shape"][:2])
    try:
        if not os.access(path, os.R_OK):
            raise PermissionError(13, "permission denied")
        image = decode_image(tf.constant(path), size, channels)
    except OSError as e:
        raise PredictError(f"{path}: cannot read ({e.strerror or _first(e)})") from None
    except (tf.errors.OpError, ValueError) as e:
        raise PredictError(f"{path}: cannot decode the image ({_first(e)})") from None
    return image.numpy()


def read_folder(folder: str, spec: dict):
    """(relative paths, uint8 images [N, H, W, C]) of the images under `folder`."""
    if spec["kind"] != "images":
        raise PredictError(f"{folder}: the classifier takes feature arrays, not images: give "
                           "an .npz file")
    names = image_files(folder)
    if not names:
        raise PredictError(f"{folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    images = [read_image(os.path.join(folder, n), spec) for n in names]
    return names, np.stack(images)


def _labeled(source: str, spec: dict, check=None):
    """A training layout (train/ and meta/ class folders, optional test/) or a CSV table
    (path,label[,split] rows, paths relative to it), listed by the own-data code
    (`from_files.list_image_folder`, `list_csv_table`): (paths relative to the folder or
    table, uint8 images, {"split": [...], "label": [...]})."""
    if spec["kind"] != "images":
        raise PredictError(f"{source}: the classifier takes feature arrays, not images: give "
                           "an .npz file")
    names = list(spec["class_names"])
    try:
        if os.path.isdir(source):
            found, splits = list_image_folder(source, need_trusted=False)
            root = source
            unknown = [n for n in found if n not in names]
            if unknown:
                raise PredictError(f"{os.path.join(source, 'train', unknown[0])}: class "
                                   f"{unknown[0]!r} is not one of the classifier's "
                                   f"({', '.join(names)})")
            index = {k: names.index(n) for k, n in enumerate(found)}
            splits = {s: (p, np.array([index[int(y)] for y in labels], np.int64))
                      for s, (p, labels) in splits.items()}
        else:
            _, splits, _ = list_csv_table(source, classes=names, training=False)
            root = os.path.dirname(os.path.abspath(source))
    except DataUnavailableError as e:
        raise PredictError(str(e)) from None
    if check is not None:
        check([p for paths, _ in splits.values() for p in paths])
    ids, images, extra = [], [], {"split": [], "given_class": []}
    for split in ("train", "meta", "test"):
        paths, labels = splits.get(split, ((), ()))
        for path, label in zip(paths, labels):
            ids.append(os.path.relpath(path, root))
            images.append(read_image(str(path), spec))
            extra["split"].append(split)
            extra["given_class"].append(names[int(label)])
    if not ids:
        raise PredictError(f"{source}: no rows")
    return ids, np.stack(images), extra


def _is_layout(source: str) -> bool:
    return all(os.path.isdir(os.path.join(source, s)) for s in ("train", "meta"))


def read_inputs(source: str, spec: dict, check=None):
    """(ids, raw inputs, id column name, extra columns) from an .npz file, a CSV table, a
    training layout of class folders, or a folder of images. `check` is called with the
    image files a table or layout lists, before any is read."""
    if os.path.isdir(source) and _is_layout(source):
        ids, x, extra = _labeled(source, spec, check)
        return ids, x, "path", extra
    if os.path.isdir(source):
        return (*read_folder(source, spec), "path", {})
    if not os.path.exists(source):
        raise PredictError(f"{source}: no such file or folder")
    if not os.path.isfile(source):  # a FIFO, socket or device is never opened
        raise PredictError(f"{source}: not a regular file or a folder")
    if source.lower().endswith(".csv"):
        ids, x, extra = _labeled(source, spec, check)
        return ids, x, "path", extra
    return (*read_npz(source, spec), "index", {})


# --- prediction -------------------------------------------------------------------------------

def predict(run: str, source: str, out: str, batch_size: int = 256) -> int:
    """Writes the predictions of RUN's classifier on `source` to `out` (CSV); returns the
    number of rows. Bad input raises `PredictError`."""
    if batch_size < 1:
        raise PredictError("--batch_size must be >= 1")
    check_out(out, run, source)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise PredictError(f"{out}: no such folder {folder}")
    spec = read_spec(run)
    ids, x, id_column, extra = read_inputs(
        source, spec, check=lambda listed: check_out(out, run, source, listed))
    model = load_classifier(run, spec)
    probs = [serving.probabilities(model, x[i:i + batch_size], spec).numpy()
             for i in range(0, len(x), batch_size)]
    probs = np.concatenate(probs) if probs else np.zeros((0, len(spec["class_names"])))
    predicted = np.argmax(probs, axis=1)
    names = spec["class_names"]
    rows = [[i, int(k), names[k], format(float(p[k]), ".6g"), *(v[n] for v in extra.values())]
            for n, (i, k, p) in enumerate(zip(ids, predicted, probs))]
    try:
        files.write_csv(out, [id_column, "predicted_label", "predicted_class", "probability",
                        *extra], rows)
    except OSError as e:
        raise PredictError(f"cannot write {out} ({e.strerror or _first(e)})") from None
    return len(rows)
