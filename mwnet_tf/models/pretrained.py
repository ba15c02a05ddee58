"""ImageNet weights for ResNet-50's backbone from a local HDF5 file (`--pretrained=PATH`).

Weights are data: only HDF5 arrays are read (h5py, or Keras 3's weights-only loader), never a
saved model, a pickle or anything else that could run code. Two layouts are accepted:

- Keras' published file `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` (or the one with
  the top), written by Keras 2's `save_weights`: the root attribute `layer_names`, one group per
  layer with the attribute `weight_names` and one dataset per weight (`conv1_conv/kernel:0`,
  `conv1_conv/bias:0`; batch norm `gamma`, `beta`, `moving_mean`, `moving_variance`, the order
  of Keras 3's `layer.weights`). It is read by layer name: `models.resnet50` rebuilds Keras'
  ResNet50 from its config, so its layer names are the file's. Every backbone layer with
  weights must be in the file with the same shapes; layers the backbone does not have (the
  1000-class `predictions` layer of the file with the top) are ignored. Keras' own
  `load_weights(by_name=True)` would skip layers it does not find, so a file of another
  network would load nothing without a word; this reader refuses it.
- A Keras 3 `*.weights.h5` of the backbone (`keras.Model(model.input,
  model.get_layer("avg_pool").output).save_weights(...)`), loaded by Keras 3's weights-only
  loader, which refuses a file of another architecture.

The new classification head keeps its random initialization. Every problem is a one-line
`ValueError` naming the file (exit 2: the flag points at the wrong file).
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np

HEAD_INPUT = "avg_pool"  # the backbone's last layer (global average pooling) in `resnet50`


def _error(path: str, what: str) -> ValueError:
    return ValueError(" ".join(f"--pretrained={path}: {what}".split()))


def check_file(path: str) -> None:
    """Cheap checks before any data is read: the file exists and is HDF5."""
    import h5py

    if not os.path.isfile(path):
        raise _error(path, "no such file")
    if not h5py.is_hdf5(path):
        raise _error(path, "not an HDF5 weights file (expected Keras' "
                           "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 or a Keras 3 "
                           ".weights.h5 of the ResNet-50 backbone)")


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with weights up to the head's input (everything but the new head)."""
    names = {layer.name for layer in model.layers}
    if HEAD_INPUT not in names:
        raise ValueError(f"--pretrained needs --model=resnet50 (no layer {HEAD_INPUT!r})")
    out = []
    for layer in model.layers:
        if layer.weights:
            out.append(layer)
        if layer.name == HEAD_INPUT:
            break
    return out


def _attribute_list(group, name: str) -> list[str]:
    """An HDF5 attribute list, also when Keras split it into `name0`, `name1`, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values += list(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_legacy(f, path: str) -> dict[str, list[np.ndarray]]:
    """Layer name -> its arrays, from a Keras 2 `save_weights` file."""
    out = {}
    for name in _attribute_list(f, "layer_names"):
        if name not in f:
            raise _error(path, f"lists layer {name} but holds no group for it")
        group = f[name]
        arrays = []
        for weight in _attribute_list(group, "weight_names"):
            if weight not in group:
                raise _error(path, f"layer {name} lists weight {weight} but does not hold it")
            arrays.append(np.asarray(group[weight]))
        if arrays:
            out[name] = arrays
    return out


def load_pretrained(model: keras.Model, path: str) -> int:
    """Loads the backbone of `model` (a `models.resnet50`) from `path`; returns the number of
    layers loaded. The head is left as it is."""
    import h5py

    check_file(path)
    layers = backbone_layers(model)
    try:
        with h5py.File(path, "r") as f:
            legacy = "layer_names" in f.attrs or "layer_names0" in f.attrs
            keras3 = "layers" in f and not legacy
            arrays = _read_legacy(f, path) if legacy else None
    except OSError as e:
        raise _error(path, f"unreadable HDF5 ({e})") from None
    if keras3:
        if not path.endswith(".weights.h5"):
            raise _error(path, "a Keras 3 weights file must be named *.weights.h5")
        backbone = keras.Model(model.inputs, model.get_layer(HEAD_INPUT).output)
        try:
            with warnings.catch_warnings():  # Keras warns per layer before it refuses a file
                warnings.simplefilter("ignore")
                backbone.load_weights(path)
        except (ValueError, KeyError, OSError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise _error(path, f"not weights of this ResNet-50 backbone ({first})") from None
        return len(layers)
    if arrays is None:
        raise _error(path, "an HDF5 file but not Keras weights (no layer_names attribute, no "
                           "layers group)")
    for layer in layers:
        values = arrays.get(layer.name)
        if values is None:
            raise _error(path, f"has no weights for layer {layer.name}: not Keras' ResNet-50 "
                               "(another architecture?)")
        shapes = [tuple(v.shape) for v in values]
        wanted = [tuple(w.shape) for w in layer.weights]
        if shapes != wanted:
            raise _error(path, f"layer {layer.name} has weights of shapes {shapes}, the "
                               f"backbone's are {wanted}")
    for layer in layers:
        for variable, value in zip(layer.weights, arrays[layer.name]):
            variable.assign(value.astype(variable.dtype))
    return len(layers)
