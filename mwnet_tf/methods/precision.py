"""Mixed precision: the classifier computes in bfloat16 or float16, everything MW-Net reads
stays float32.

- `policy(mode)` sets Keras' global dtype policy while models are built ("mixed_bfloat16" or
  "mixed_float16"): the classifier's variables stay float32, its layers compute in the low
  precision, its output layer in float32 (`models.layers.dense(logits=True)`), so logits,
  per-sample losses and the weights are float32; the weight net is always built in float32
  (`models.build_weight_net`).
- float16 (for GPUs) needs loss scaling: `wrap` puts an optimizer inside Keras'
  `LossScaleOptimizer` (dynamic scale, a step with non-finite gradients skipped and the scale
  halved). The steps of `mwnet_tf.methods.steps` multiply what they differentiate by
  `scale(optimizer)` and divide the virtual step's gradients by it; `optimizer.apply`
  divides the real ones.
- bfloat16 has float32's exponent range: no loss scaling (the CPU choice; Keras' advice too).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

from mwnet_tf.config import MIXED_PRECISION

_POLICIES = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def check(mode: str) -> None:
    if mode not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got "
                         f"{mode!r}")


@contextlib.contextmanager
def policy(mode: str) -> Iterator[None]:
    """Keras' global dtype policy for `mode` while the block runs (models built in it keep it)."""
    check(mode)
    name = _POLICIES[mode]
    if name is None:
        yield
        return
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def wrap(optimizer: keras.optimizers.Optimizer, mode: str) -> keras.optimizers.Optimizer:
    """The optimizer, inside a dynamic `LossScaleOptimizer` for float16."""
    check(mode)
    if mode != "float16":
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def scale(optimizer) -> tf.Tensor | None:
    """The loss scale of a `LossScaleOptimizer` (float32 tensor), else None."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    return tf.convert_to_tensor(optimizer.dynamic_scale if optimizer.built
                                else optimizer.initial_scale, tf.float32)


def scaled(loss: tf.Tensor, optimizer) -> tf.Tensor:
    """`loss` times the optimizer's loss scale (unchanged without loss scaling)."""
    s = scale(optimizer)
    return loss if s is None else loss * tf.cast(s, loss.dtype)


def unscaled(grads: list, optimizer) -> list:
    """Gradients of `scaled(loss, optimizer)` divided back (unchanged without loss scaling)."""
    s = scale(optimizer)
    if s is None:
        return list(grads)
    return [None if g is None else g / tf.cast(s, g.dtype) for g in grads]
