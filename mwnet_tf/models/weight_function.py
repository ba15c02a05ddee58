"""The learned weight function as a SavedModel: export, read back as data, evaluate on a grid.

Export uses Keras' `keras.export.ExportArchive`, whose SavedModel every standard consumer
loads: `tf.saved_model.load`, `saved_model_cli run`, TensorFlow Serving (session-based loaders
found no variables in the `tf.Module` export this project used before).

Reading one back never runs its graph: a SavedModel is a program (TensorFlow's security
guidance says to treat one from elsewhere as untrusted code), so `read_weight_net` takes only
the variable values from its checkpoint (`variables/variables.*`, a tensor bundle read as
data) and puts them into this project's own 1-100-1 weight net.
"""

from __future__ import annotations

import functools
import os

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.errors import WeightFnError
from mwnet_tf.models import build_weight_net

SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
DEFAULT_LOSSES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def export_weight_fn(weight_net: keras.Model, path: str) -> str:
    """Writes the weight net as a SavedModel whose serving signature maps
    `losses: float32[N, 1]` to `{"weights": float32[N, 1]}`.

    The model is written with `files.atomic_folder`, so an interrupted export never
    leaves a half-written `path` (an older export is replaced).
    """
    archive = keras.export.ExportArchive()
    archive.track(weight_net)
    archive.add_endpoint(
        name=SIGNATURE, fn=functools.partial(_serve, weight_net),
        input_signature=[tf.TensorSpec([None, 1], tf.float32, name="losses")])
    with files.atomic_folder(path, fault="export") as tmp:
        archive.write_out(tmp, verbose=False)
    return path


def _serve(weight_net: keras.Model, losses):
    """The serving function: float32 losses in, float32 weights out, whatever the net's
    dtype."""
    weights = weight_net(tf.cast(losses, weight_net.dtype), training=False)
    return {"weights": tf.cast(weights, tf.float32)}


def read_weight_net(path: str, hidden: int = 100) -> keras.Model:
    """A new weight net (1-`hidden`-1, `models.build_weight_net`) holding the variable values
    of the SavedModel at `path`, read as data: its graph is not loaded or run.

    The SavedModel must hold exactly one value of each shape of the weight net's variables
    ([1, h], [h], [h, 1], [1], float), every value finite; anything else is a
    `WeightFnError`.
    """
    index = os.path.join(path, "variables", "variables.index")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")) or not os.path.isfile(index):
        raise WeightFnError(f"{path} is not a SavedModel with variables (no saved_model.pb or "
                            "variables/variables.index)")
    try:
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        dtypes = reader.get_variable_to_dtype_map()
        values: dict[tuple, list[np.ndarray]] = {}
        for name, shape in reader.get_variable_to_shape_map().items():
            if dtypes[name].is_floating:
                values.setdefault(tuple(shape), []).append(reader.get_tensor(name))
    except (tf.errors.OpError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightFnError(f"cannot read the variables of {path} ({first})") from None
    net = build_weight_net(hidden=hidden, seed=0)
    assigned = []
    for var in net.trainable_variables:
        shape = tuple(var.shape)
        found = values.get(shape, [])
        distinct = [v for i, v in enumerate(found)
                    if not any(np.array_equal(v, w, equal_nan=True) for w in found[:i])]
        if len(distinct) != 1:
            have = ", ".join(f"{list(s)} x{len(v)}" for s, v in sorted(values.items())) or "none"
            raise WeightFnError(
                f"{path} does not hold a 1-{hidden}-1 weight function: it needs one float "
                f"variable of shape {list(shape)}, it has {len(distinct)} (variables: {have})")
        value = np.asarray(distinct[0])
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            kinds = " and ".join(k for k, n in (("NaN", np.isnan(value).sum()),
                                                ("inf", np.isinf(value).sum())) if n)
            raise WeightFnError(
                f"{path}: its weight function's variable of shape {list(shape)} holds {kinds} "
                f"({bad} of {np.size(value)} values): a weight function needs finite values")
        assigned.append((var, value))
    for var, value in assigned:
        var.assign(value.astype(var.dtype))
    return net


def load_weight_fn(path: str):
    """An exported weight function as `fn(losses) -> weights`, both NumPy [N] (its variables
    read as data, `read_weight_net`)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no exported weight function at {path}")
    net = read_weight_net(path)

    def fn(losses) -> np.ndarray:
        x = np.asarray(losses, np.float32).reshape(-1, 1)
        return net(x, training=False).numpy()[:, 0]

    return fn


def weight_curve(weight_fn, losses=DEFAULT_LOSSES) -> dict[str, float]:
    """Weights at a few losses, keyed by the loss as text (for results.json)."""
    losses = np.asarray(losses, np.float32)
    if isinstance(weight_fn, keras.Model):
        weights = weight_fn(losses[:, None], training=False).numpy()[:, 0]
    else:
        weights = weight_fn(losses)
    return {f"{loss:g}": round(float(w), 6) for loss, w in zip(losses, weights)}
