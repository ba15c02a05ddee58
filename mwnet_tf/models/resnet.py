"""ResNet-32 for CIFAR (He et al. 2016, option-A shortcuts) and ResNet-50 for Clothing1M."""

from __future__ import annotations

import keras

from mwnet_tf.models.layers import batch_norm, conv, dense, kaiming_normal, seeds


@keras.saving.register_keras_serializable(package="mwnet_tf")
class SubsamplePad(keras.layers.Layer):
    """Subsamples by `stride` and zero-pads the channels (`pad_before`, `pad_after`): the
    option-A shortcut where the shape changes. A layer of its own rather than a `Lambda`, so
    that a saved classifier loads with `keras.saving.load_model(..., safe_mode=True)`; it has
    no variables, so checkpoints are the same either way."""

    def __init__(self, stride: int, pad_before: int, pad_after: int, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.pad_before, self.pad_after = stride, pad_before, pad_after

    def call(self, t):
        s = self.stride
        return keras.ops.pad(t[:, ::s, ::s, :],
                             [[0, 0], [0, 0], [0, 0], [self.pad_before, self.pad_after]])

    def compute_output_shape(self, input_shape):
        def sub(d):
            return None if d is None else -(-d // self.stride)
        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]),
                input_shape[3] + self.pad_before + self.pad_after)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "pad_before": self.pad_before,
                "pad_after": self.pad_after}


def _shortcut_a(x, channels: int, stride: int):
    """Option A: identity; when the shape changes, subsample and zero-pad channels (no
    parameters), as in the CIFAR ResNet paper and the MW-Net authors' code."""
    if stride == 1 and x.shape[-1] == channels:
        return x
    pad = channels - x.shape[-1]
    return SubsamplePad(stride, pad // 2, pad - pad // 2)(x)


def resnet_cifar(num_classes: int, input_shape: tuple[int, ...], *, blocks_per_stage: int = 5,
                 synchronized_bn: bool = False, seed: int | None = None) -> keras.Model:
    """ResNet-(6n+2) for 32x32 images; n = 5 gives ResNet-32 (464,154 trainable parameters for
    10 classes, 470,004 for 100).

    3x3 conv 16 - BN - ReLU, three stages of `n` basic blocks (16, 32, 64 channels, stride 2
    at the start of stages 2 and 3, option-A shortcuts), global average pooling, linear
    classifier. As in the authors' code, every conv and the linear kernel are kaiming-normal
    (fan in), the linear bias is torch.nn.Linear's default.
    """
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = conv(16, 3, 1, seed_of())(inputs)
    x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    for stage, channels in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv(channels, 3, stride, seed_of())(x)
            y = keras.layers.ReLU()(batch_norm(synchronized_bn)(y))
            y = batch_norm(synchronized_bn)(conv(channels, 3, 1, seed_of())(y))
            x = keras.layers.ReLU()(keras.layers.Add()([y, _shortcut_a(x, channels, stride)]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    seed_fc = seed_of()
    logits = dense(num_classes, 64, seed_fc, kernel_initializer=kaiming_normal(seed_fc),
                   logits=True)(x)
    return keras.Model(inputs, logits, name=f"resnet{6 * blocks_per_stage + 2}")


def resnet50(num_classes: int, input_shape: tuple[int, ...], *, synchronized_bn: bool = False,
             seed: int | None = None) -> keras.Model:
    """Keras' ResNet-50 (random init: ImageNet weights cannot be fetched offline) with a new
    linear head: 23,534,592 backbone parameters plus 2048 * C + C.

    The backbone is rebuilt from its config with PyTorch's batch-norm momentum/epsilon, the
    `synchronized` flag and, when `seed` is given, a seed for every random initializer (no
    global random state is touched). Unlike torchvision's, Keras' convolutions have biases
    (26,560 parameters more) and stride in the 1x1 conv of each block (ResNet v1).
    """
    base = keras.applications.ResNet50(weights=None, include_top=False,
                                       input_shape=input_shape, pooling="avg")
    config = base.get_config()
    seed_of = seeds(seed)
    for layer in config["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "BatchNormalization":
            layer_config.update(momentum=0.9, epsilon=1e-5, synchronized=synchronized_bn)
        for key, init in layer_config.items():
            if key.endswith("_initializer") and isinstance(init, dict) and (
                    "seed" in init.get("config", {})):
                init["config"]["seed"] = seed_of()
    base = keras.Model.from_config(config)
    logits = dense(num_classes, base.output.shape[-1], seed_of(), logits=True)(base.output)
    return keras.Model(base.input, logits, name="resnet50")
