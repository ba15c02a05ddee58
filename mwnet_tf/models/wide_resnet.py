"""Wide ResNet (Zagoruyko & Komodakis 2016): WRN-28-10 for the paper's uniform-noise table."""

from __future__ import annotations

import keras

from mwnet_tf.models.layers import batch_norm, conv, dense, seeds


def wide_resnet(num_classes: int, input_shape: tuple[int, ...], *, depth: int = 28,
                width: int = 10, dropout: float = 0.0, synchronized_bn: bool = False,
                seed: int | None = None) -> keras.Model:
    """Pre-activation WRN-depth-width as in the MW-Net authors' `wideresnet.py`.

    3x3 conv 16, three stages of (depth - 4) / 6 blocks (16k, 32k, 64k channels, stride 2 at the
    start of stages 2 and 3), final BN-ReLU, global average pooling, linear classifier. A block
    is BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus a shortcut: identity, or a 1x1 conv of the
    pre-activated input when the width changes. Convs are kaiming-normal with fan *out*, the
    linear bias is zero (the authors' init). WRN-28-10: 36,479,194 trainable parameters for 10
    classes, the same as the PyTorch model.
    """
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
    n = (depth - 4) // 6
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = conv(16, 3, 1, seed_of(), "fan_out")(inputs)
    for stage, channels in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            pre = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
            if x.shape[-1] == channels:
                shortcut = x
            else:
                shortcut = conv(channels, 1, stride, seed_of(), "fan_out")(pre)
            y = conv(channels, 3, stride, seed_of(), "fan_out")(pre)
            y = keras.layers.ReLU()(batch_norm(synchronized_bn)(y))
            if dropout:
                y = keras.layers.Dropout(dropout, seed=seed_of())(y)
            y = conv(channels, 3, 1, seed_of(), "fan_out")(y)
            x = keras.layers.Add()([y, shortcut])
    x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = dense(num_classes, x.shape[-1], seed_of(), bias_initializer="zeros",
                   logits=True)(x)
    return keras.Model(inputs, logits, name=f"wrn{depth}_{width}")
