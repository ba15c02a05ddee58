"""Functional Keras models (so that `stateless_call(training=True)` reaches batch norm).

Classifiers output logits. Batch norm uses PyTorch's momentum/epsilon and is synchronized
across replicas when `synchronized_bn` is set (exact data-parallel MW-Net).
"""

from __future__ import annotations

import keras

from mwnet_tf.models.resnet import resnet50, resnet_cifar
from mwnet_tf.models.small import cnn, mlp, tiny, weight_net
from mwnet_tf.models.wide_resnet import wide_resnet

_BUILDERS = {"resnet32": resnet_cifar, "wrn28_10": wide_resnet, "resnet50": resnet50,
             "mlp": mlp, "cnn": cnn, "tiny": tiny}
MODELS = tuple(_BUILDERS)


def build_classifier(name: str, num_classes: int, input_shape: tuple[int, ...], *,
                     synchronized_bn: bool = False, seed: int | None = None) -> keras.Model:
    """A classifier by name (one of MODELS) mapping images to logits."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return _BUILDERS[name](num_classes, tuple(input_shape), synchronized_bn=synchronized_bn,
                           seed=seed)


def build_weight_net(hidden: int = 100, seed: int | None = None) -> keras.Model:
    """The weight net V: losses float [N, 1] -> weights in (0, 1) [N, 1]."""
    return weight_net(hidden, seed)
