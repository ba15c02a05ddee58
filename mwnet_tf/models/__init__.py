"""Functional Keras models (so that `stateless_call(training=True)` reaches batch norm).

Classifiers output logits. Batch norm uses PyTorch's momentum/epsilon and is synchronized
across replicas when `synchronized_bn` is set (exact data-parallel MW-Net).

Models are built in `keras.config.floatx()`. Keras fixes its global dtype policy when it builds
its first layer, after which `keras.config.set_floatx` alone no longer reaches new layers (and a
policy fixed while floatx was float64 outlives `set_floatx("float32")`); the builders therefore
use a plain policy of the current floatx. A mixed-precision global policy is kept as it is for
classifiers (their output layer computes in float32), never for the weight net.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

import keras

from mwnet_tf.config import MODEL_TRAITS, MODELS
from mwnet_tf.models.small import class_weight_net, layer_sampler, weight_net


def builder(name: str):
    """The function that builds classifier `name` (`config.MODEL_TRAITS[name].builder`)."""
    module, _, function = MODEL_TRAITS[name].builder.rpartition(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


@contextlib.contextmanager
def _floatx_policy(keep_mixed: bool = True) -> Iterator[None]:
    """Build layers under a plain dtype policy of `keras.config.floatx()` (a mixed-precision
    policy is kept when `keep_mixed`)."""
    old = keras.config.dtype_policy()
    if keep_mixed and old.compute_dtype != old.variable_dtype:
        yield
        return
    keras.config.set_dtype_policy(keras.config.floatx())
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def build_classifier(name: str, num_classes: int, input_shape: tuple[int, ...], *,
                     synchronized_bn: bool = False, seed: int | None = None) -> keras.Model:
    """A classifier by name (one of MODELS) mapping images to logits [N, num_classes]."""
    if name not in MODEL_TRAITS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    if not MODEL_TRAITS[name].any_shape and len(input_shape) != 3:
        raise ValueError(f"--model={name} takes images [height, width, channels]; this data's "
                         f"samples have shape {tuple(input_shape)}: use --model=mlp")
    with _floatx_policy():
        return builder(name)(num_classes, tuple(input_shape), synchronized_bn=synchronized_bn,
                             seed=seed)


def build_weight_net(hidden: int = 100, seed: int | None = None) -> keras.Model:
    """The weight net V: losses float [N, 1] -> weights in (0, 1) [N, 1], in floatx even under
    mixed precision (it is tiny, and its meta-gradients are small)."""
    with _floatx_policy(keep_mixed=False):
        return weight_net(hidden, seed)


def build_layer_sampler(inputs: int, hidden: int = 128, seed: int | None = None
                        ) -> keras.Model:
    """FaMUS's gradient sampler of one layer (`small.layer_sampler`), in floatx."""
    with _floatx_policy(keep_mixed=False):
        return layer_sampler(inputs, hidden, seed)


def build_class_weight_net(class_groups, hidden: int = 100, seed: int | None = None
                           ) -> keras.Model:
    """CMW-Net's class-aware weight net V(loss, class) (`small.class_weight_net`): a head per
    class group, `class_groups[c]` the group of class c; in floatx like `build_weight_net`."""
    with _floatx_policy(keep_mixed=False):
        return class_weight_net(class_groups, hidden, seed)
