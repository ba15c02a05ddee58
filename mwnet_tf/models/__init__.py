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
from typing import Iterator

import keras

from mwnet_tf.config import ANY_SHAPE_MODELS, MODELS
from mwnet_tf.models.resnet import resnet50, resnet_cifar
from mwnet_tf.models.small import cnn, mlp, tiny, weight_net
from mwnet_tf.models.wide_resnet import wide_resnet

# A builder for each name of `mwnet_tf.config.MODELS`.
_BUILDERS = {"resnet32": resnet_cifar, "wrn28_10": wide_resnet, "resnet50": resnet50,
             "mlp": mlp, "cnn": cnn, "tiny": tiny}


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
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    if name not in ANY_SHAPE_MODELS and len(input_shape) != 3:
        raise ValueError(f"--model={name} takes images [height, width, channels]; this data's "
                         f"samples have shape {tuple(input_shape)}: use --model=mlp")
    with _floatx_policy():
        return _BUILDERS[name](num_classes, tuple(input_shape), synchronized_bn=synchronized_bn,
                               seed=seed)


def build_weight_net(hidden: int = 100, seed: int | None = None) -> keras.Model:
    """The weight net V: losses float [N, 1] -> weights in (0, 1) [N, 1], in floatx even under
    mixed precision (it is tiny, and its meta-gradients are small)."""
    with _floatx_policy(keep_mixed=False):
        return weight_net(hidden, seed)
