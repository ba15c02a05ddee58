"""Wide ResNet (Zagoruyko & Komodakis 2016): WRN-28-10 for the paper's uniform-noise table."""

from __future__ import annotations

import keras

from mwnet_tf.models.layers import batch_norm, conv, dense, seeds


def wide_resnet(num_classes: int, input_shape: tuple[int, ...], *, depth: int = 28,
                width: int = 10, dropout: float = 0.0, synchronized_bn: bool = False,
                seed: int | None = None) -> keras.Model:
    """Pre-activation WRN-depth-width: 3x3 conv 16, three stages of (depth-4)/6 blocks
    (16k, 32k, 64k channels), BN-ReLU, global average pooling, linear classifier.
    WRN-28-10 has 36,479,194 trainable parameters for 10 classes, as the PyTorch code it
    follows."""
    if (depth - 4) % 6:
        raise ValueError("WRN depth must be 6n + 4")
    n = (depth - 4) // 6
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = conv(16, 3, 1, seed_of())(inputs)
    for stage, channels in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            pre = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
            shortcut = x if x.shape[-1] == channels else conv(channels, 1, stride, seed_of())(pre)
            y = conv(channels, 3, stride, seed_of())(pre)
            y = keras.layers.ReLU()(batch_norm(synchronized_bn)(y))
            if dropout:
                y = keras.layers.Dropout(dropout)(y)
            y = conv(channels, 3, 1, seed_of())(y)
            x = keras.layers.Add()([y, shortcut])
    x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, dense(num_classes, x.shape[-1], seed_of())(x),
                       name=f"wrn{depth}_{width}")
