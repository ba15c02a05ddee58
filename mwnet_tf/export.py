"""The learned weight function as a SavedModel: export, load, evaluate on a grid of losses."""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"
DEFAULT_LOSSES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


class _WeightFn(tf.Module):
    def __init__(self, weight_net: keras.Model):
        super().__init__()
        self.weight_net = weight_net  # tracked: the SavedModel holds its variables

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="losses")])
    def __call__(self, losses):
        weights = self.weight_net(tf.cast(losses, self.weight_net.dtype), training=False)
        return {"weights": tf.cast(weights, tf.float32)}


def export_weight_fn(weight_net: keras.Model, path: str) -> str:
    """Writes the weight net as a SavedModel whose serving signature maps
    `losses: float32[N, 1]` to `{"weights": float32[N, 1]}`.

    The model is written to a temporary folder beside `path` and moved into place, so an
    interrupted export never leaves a half-written `path` (an older export is replaced).
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".weight_fn-", dir=parent)
    try:
        module = _WeightFn(weight_net)
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.__call__})
        old = None
        if os.path.exists(path):
            old = tmp + ".old"
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_weight_fn(path: str):
    """Loads an exported weight function: `fn(losses) -> weights`, both NumPy [N]."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no exported weight function at {path}")
    serve = tf.saved_model.load(path).signatures[SIGNATURE]

    def fn(losses) -> np.ndarray:
        x = tf.constant(np.asarray(losses, np.float32).reshape(-1, 1))
        return serve(losses=x)["weights"].numpy()[:, 0]

    return fn


def weight_curve(weight_fn, losses=DEFAULT_LOSSES) -> dict[str, float]:
    """Weights at a few losses, keyed by the loss as text (for results.json)."""
    losses = np.asarray(losses, np.float32)
    if isinstance(weight_fn, keras.Model):
        weights = weight_fn(losses[:, None], training=False).numpy()[:, 0]
    else:
        weights = weight_fn(losses)
    return {f"{loss:g}": round(float(w), 6) for loss, w in zip(losses, weights)}
