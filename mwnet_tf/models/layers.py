"""Layer factories shared by the models: PyTorch-matching batch norm, convolutions, inits."""

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


def kaiming_normal(seed: int | None, mode: str = "fan_in") -> keras.initializers.Initializer:
    """torch.nn.init.kaiming_normal_ (ReLU gain, untruncated normal)."""
    return keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal", seed=seed)


def torch_uniform(fan_in: int, seed: int | None) -> keras.initializers.Initializer:
    """torch.nn.Linear's default initialization: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def conv(filters: int, kernel: int, stride: int, seed: int | None, mode: str = "fan_in"):
    """Bias-free convolution, kaiming-normal kernel, PyTorch's symmetric zero padding
    `kernel // 2`.

    Keras' "same" padding equals it at stride 1 (and for 1x1 kernels); at stride 2 Keras would
    pad only bottom/right, so the input is zero-padded explicitly on both sides instead.
    """
    same = stride == 1 or kernel == 1
    layer = keras.layers.Conv2D(filters, kernel, stride, padding="same" if same else "valid",
                                use_bias=False, kernel_initializer=kaiming_normal(seed, mode))
    if same:
        return layer
    pad = keras.layers.ZeroPadding2D(kernel // 2)
    return lambda x: layer(pad(x))


def dense(units: int, fan_in: int, seed: int | None, activation: str | None = None,
          kernel_initializer: keras.initializers.Initializer | str | None = None,
          bias_initializer: keras.initializers.Initializer | str | None = None,
          logits: bool = False) -> keras.layers.Dense:
    """A linear layer initialized as torch.nn.Linear unless initializers are given.

    `logits=True` marks a classifier's output layer: under a mixed-precision policy it computes
    in float32 (Keras' advice for the last layer), so that logits, per-sample losses and what
    the weight net reads stay float32."""
    if kernel_initializer is None:
        kernel_initializer = torch_uniform(fan_in, seed)
    if bias_initializer is None:
        bias_initializer = torch_uniform(fan_in, None if seed is None else seed + 5_003)
    policy = keras.config.dtype_policy()
    mixed = policy.compute_dtype != policy.variable_dtype
    return keras.layers.Dense(units, activation=activation,
                              kernel_initializer=kernel_initializer,
                              bias_initializer=bias_initializer,
                              dtype=policy.variable_dtype if logits and mixed else None)
