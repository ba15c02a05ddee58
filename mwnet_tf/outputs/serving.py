"""The trained classifier to take home: a Keras file, a serving SavedModel and what prediction
needs to know about the inputs.

`export_classifier(model, data, workdir)` writes into the run folder:

- `classifier.keras`: the classifier (`model.save`), logits out, normalized inputs in; read
  back with `keras.saving.load_model(path, safe_mode=True)` (`python -m mwnet_tf.predict`);
- `classifier.json`: the input's description (`input_spec`): class names, mean and std,
  the model's input shape, the raw input's shape and dtype, and for data read from files the
  resize and crop sizes;
- `classifier_serving/`: a SavedModel (`keras.export.ExportArchive`) whose signature
  `serving_default` takes RAW inputs, `inputs`: uint8 images [N, H, W, C] of the data set's
  shape (data read from files: uint8 [N, any, any, C], resized (and center-cropped:
  Clothing1M) as the test set's), or float32 features [N, ...] for data that are not images
  (own .npz arrays, normalized as in training), and returns
  `probabilities` float32 [N, C]: the preprocessing (`preprocess`) is inside the graph.

Every file is written beside its destination and moved into place, so an interrupted export
never leaves a half-written one.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.data.class_names import default_class_names
from mwnet_tf.data.clothing1m import resize_for
from mwnet_tf.data.pipeline import normalize

SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
INPUT = "inputs"
OUTPUT = "probabilities"
SPEC_FORMAT = 1

def input_spec(model, data, class_names=None, dataset: str | None = None) -> dict:
    """What prediction needs to turn raw inputs into the classifier's (JSON-ready)."""
    names = (list(class_names) if class_names is not None
             else default_class_names(dataset, data.num_classes))
    if len(names) != data.num_classes:
        raise ValueError(f"{len(names)} class names for {data.num_classes} classes")
    input_shape = [int(d) for d in model.input_shape[1:]]
    images = data.from_files or np.asarray(data.train_x).dtype == np.uint8
    spec = {"format": SPEC_FORMAT, "dataset": dataset, "class_names": names,
            "num_classes": int(data.num_classes), "kind": "images" if images else "features",
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
            "input_shape": input_shape, "raw_dtype": "uint8" if images else "float32",
            "raw_shape": input_shape, "resize": None, "image_size": None}
    if data.from_files:  # any size in
        channels = int(data.channels)
        spec.update(raw_shape=[None, None, channels], image_size=int(data.image_size),
                    channels=channels)
        if data.resize_crop:  # Clothing1M: resized, then center-cropped
            spec.update(resize=resize_for(data.image_size))
        # else own image files: resized straight to image_size (`pipeline.decode_image`)
    return spec


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int_or_none(spec: dict, key: str) -> int | None:
    value = spec.get(key)
    if value is not None and not (_is_int(value) and value > 0):
        raise ValueError(f"{key} must be a positive integer or null, got {value!r}")
    return value


def check_spec(spec) -> dict:
    """`spec` if it is an `input_spec` that prediction can use, else a ValueError naming the
    first key that is missing, of the wrong type or inconsistent with the others: class names
    (strings, distinct, `num_classes` of them), the input kind, shapes of positive integers
    (the raw shape the input shape, or for data read from files any height and width and the
    same channels), the raw dtype of the kind, finite means and positive finite stds (one, or
    one per channel or feature), and the resize and crop sizes of data read from files."""
    needed = ("class_names", "mean", "std", "input_shape", "raw_shape", "raw_dtype", "kind")
    if not isinstance(spec, dict):
        raise ValueError(f"a JSON object is needed, got {type(spec).__name__}")
    missing = [k for k in needed if k not in spec]
    if missing:
        raise ValueError(f"no {', '.join(missing)}; it needs {', '.join(needed)}")
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"format {spec.get('format')!r}, this version reads {SPEC_FORMAT}")
    kind = spec["kind"]
    if kind not in ("images", "features"):
        raise ValueError(f"unknown input kind {kind!r}")
    names = spec["class_names"]
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names)):
        raise ValueError("class_names must be a list of non-empty strings")
    if len(set(names)) != len(names):
        raise ValueError("class_names has a name twice")
    count = spec.get("num_classes", len(names))
    if not _is_int(count) or count != len(names):
        raise ValueError(f"num_classes is {count!r} but there are {len(names)} class_names")
    if spec.get("dataset") is not None and not isinstance(spec["dataset"], str):
        raise ValueError(f"dataset must be a string or null, got {spec['dataset']!r}")
    shape = spec["input_shape"]
    if (not isinstance(shape, list) or not shape
            or not all(_is_int(d) and d > 0 for d in shape)):
        raise ValueError(f"input_shape must be a list of positive integers, got {shape!r}")
    want_dtype = "uint8" if kind == "images" else "float32"
    if spec["raw_dtype"] != want_dtype:
        raise ValueError(f"raw_dtype {spec['raw_dtype']!r}: {kind} are {want_dtype}")
    image_size = _positive_int_or_none(spec, "image_size")
    resize = _positive_int_or_none(spec, "resize")
    raw = spec["raw_shape"]
    if image_size is None:
        if raw != shape:
            raise ValueError(f"raw_shape {raw!r} is not input_shape {shape!r}")
        if resize is not None:
            raise ValueError("resize is set without image_size")
    else:
        if kind != "images" or len(shape) != 3 or shape[:2] != [image_size, image_size]:
            raise ValueError(f"image_size {image_size} does not match input_shape {shape!r}")
        if raw != [None, None, shape[-1]]:
            raise ValueError(f"raw_shape {raw!r}: images read from files are "
                             f"[null, null, {shape[-1]}]")
        if resize is not None and resize < image_size:
            raise ValueError(f"resize {resize} is smaller than image_size {image_size}")
        if spec.get("channels", shape[-1]) != shape[-1]:
            raise ValueError(f"channels {spec['channels']!r} but input_shape {shape!r}")
    count = "1 finite number" if shape[-1] == 1 else f"1 or {shape[-1]} finite numbers"
    for key in ("mean", "std"):
        values = spec[key]
        if (not isinstance(values, list) or not all(_is_number(v) for v in values)
                or len(values) not in (1, shape[-1])):
            raise ValueError(f"{key} must be a list of {count}, got {_short(values)}")
    if not all(v > 0 for v in spec["std"]):
        raise ValueError(f"std must be positive, got {_short(spec['std'])}")
    return spec


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resize_image(images, size: tuple[int, int]):
    """uint8 images [..., h, w, C] resized to `size` as the pipeline resizes JPEGs
    (bilinear, antialiased, rounded back to uint8)."""
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def preprocess(raw, spec: dict):
    """A batch of raw inputs -> the classifier's float32 input: for data read from files
    resized to `resize` x `resize` and center-cropped to `image_size` (Clothing1M), or resized
    straight to `image_size` (own image files), unless already that size; then
    `pipeline.normalize` with the data's mean and std, as in training."""
    x = raw
    if spec.get("resize"):
        r, s = int(spec["resize"]), int(spec["image_size"])
        if tuple(x.shape[1:3]) != (r, r):
            x = resize_image(x, (r, r))
        offset = (r - s) // 2
        x = x[:, offset:offset + s, offset:offset + s, :]
    elif spec.get("image_size"):
        s = int(spec["image_size"])
        if tuple(x.shape[1:3]) != (s, s):
            x = resize_image(x, (s, s))
    return normalize(tf.cast(x, tf.float32) if spec["kind"] == "features" else x,
                     spec["mean"], spec["std"])


def probabilities(model, raw, spec: dict):
    """float32 class probabilities [N, C] of `model` (eval mode) on a batch of raw inputs."""
    logits = model(preprocess(raw, spec), training=False)
    return tf.nn.softmax(tf.cast(logits, tf.float32))


def export_serving(model, spec: dict, path: str) -> str:
    """Writes the serving SavedModel of `model` (see the module docstring) to `path`."""
    with files.atomic_folder(path) as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)

        def serve(inputs):
            return {OUTPUT: probabilities(model, inputs, spec)}

        shape = [None] + [d for d in spec["raw_shape"]]
        archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=[
            tf.TensorSpec(shape, tf.as_dtype(spec["raw_dtype"]), name=INPUT)])
        archive.write_out(tmp, verbose=False)
    return path


def export_classifier(model, data, workdir: str, *, class_names=None,
                      dataset: str | None = None, serving: bool = True) -> dict[str, str]:
    """Writes `classifier.keras`, `classifier.json` and (with `serving`)
    `classifier_serving/` into `workdir`; returns their paths by kind.

    Args:
        model: the trained classifier (`method.eval_model()`), normalized inputs -> logits.
        data: the run's `BiasedData` (mean, std, shapes, number of classes).
        workdir: the run folder.
        class_names: one name per class; default `default_class_names(dataset, ...)`.
        dataset: the data set's name (`config.dataset`), for its class names.
    """
    os.makedirs(workdir, exist_ok=True)
    spec = input_spec(model, data, class_names, dataset)
    out = {"keras": os.path.join(workdir, files.CLASSIFIER),
           "spec": os.path.join(workdir, files.CLASSIFIER_SPEC)}
    with files.atomic_path(out["keras"]) as tmp:
        model.save(tmp)
    files.write_text(out["spec"], json.dumps(spec, indent=2) + "\n")
    if serving:
        out["serving"] = export_serving(model, spec,
                                        os.path.join(workdir, files.CLASSIFIER_SERVING))
    return out
