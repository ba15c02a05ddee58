"""Layer factories shared by the models: PyTorch-matching batch norm and initializers."""

from __future__ import annotations

import itertools
import math
from typing import Callable

import keras


def seeds(seed: int | None) -> Callable[[], int | None]:
    """Successive initializer seeds derived from `seed` (None: unseeded)."""
    counter = itertools.count()
    return lambda: None if seed is None else seed * 10_007 + next(counter)


def batch_norm(synchronized: bool = False) -> keras.layers.BatchNormalization:
    """PyTorch's BatchNorm2d defaults (momentum 0.1, eps 1e-5) in Keras terms."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=synchronized)


def kaiming_normal(seed: int | None) -> keras.initializers.Initializer:
    """torch.nn.init.kaiming_normal_ (fan_in, ReLU gain), as in the authors' ResNet-32."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=seed)


def torch_uniform(fan_in: int, seed: int | None) -> keras.initializers.Initializer:
    """torch.nn.Linear's default initialization: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def conv(filters: int, kernel: int, stride: int, seed: int | None):
    """Bias-free convolution with PyTorch's symmetric zero padding `kernel // 2`."""
    layer = keras.layers.Conv2D(filters, kernel, stride, padding="valid", use_bias=False,
                                kernel_initializer=kaiming_normal(seed))
    if kernel == 1:
        return layer
    pad = keras.layers.ZeroPadding2D(kernel // 2)
    return lambda x: layer(pad(x))


def dense(units: int, fan_in: int, seed: int | None, activation=None) -> keras.layers.Dense:
    """A linear layer initialized as torch.nn.Linear (kernel and bias)."""
    return keras.layers.Dense(
        units, activation=activation, kernel_initializer=torch_uniform(fan_in, seed),
        bias_initializer=torch_uniform(fan_in, None if seed is None else seed + 5_003))
