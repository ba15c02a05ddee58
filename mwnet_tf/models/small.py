"""Small models: the weight nets (MW-Net's, CMW-Net's class-aware one), an MLP for digits, a
CNN for Fashion-MNIST, a test model."""

from __future__ import annotations

import keras
import numpy as np

from mwnet_tf.models.layers import batch_norm, conv, dense, seeds


def weight_net(hidden: int = 100, seed: int | None = None) -> keras.Model:
    """The MW-Net weighting function V: loss [N, 1] -> weight [N, 1], 1-hidden-1 MLP with
    ReLU and sigmoid, initialized as torch.nn.Linear (301 parameters for hidden = 100)."""
    seed_of = seeds(seed)
    losses = keras.Input((1,), name="losses")
    h = dense(hidden, 1, seed_of(), activation="relu")(losses)
    weights = dense(1, hidden, seed_of(), activation="sigmoid")(h)
    return keras.Model(losses, weights, name="weight_net")


def layer_sampler(inputs: int, hidden: int = 128, seed: int | None = None) -> keras.Model:
    """FaMUS's gradient sampler for one layer (`GradGumbelSoftmax`, Xu et al. 2021): a layer's
    reduced gradient [1, inputs] -> two logits [1, 2] (skip, use); Linear - PReLU - Linear -
    PReLU - Linear, initialized as torch.nn.Linear, each PReLU one slope starting at 0.25 as
    torch.nn.PReLU()."""
    seed_of = seeds(seed)
    x = keras.Input((inputs,), name="reduced_gradient")
    h = dense(hidden, inputs, seed_of())(x)
    h = keras.layers.PReLU(keras.initializers.Constant(0.25), shared_axes=[1])(h)
    h = dense(hidden, hidden, seed_of())(h)
    h = keras.layers.PReLU(keras.initializers.Constant(0.25), shared_axes=[1])(h)
    return keras.Model(x, dense(2, hidden, seed_of())(h), name="layer_sampler")


class GroupSelect(keras.layers.Layer):
    """Picks each sample's head: `heads` [N, G] and `classes` [N, 1] (int) -> [N, 1], the
    column `class_groups[class]`. The class -> group table is a non-trainable int32 variable,
    so that checkpoints and the exported SavedModel carry it."""

    def __init__(self, class_groups, **kwargs):
        super().__init__(**kwargs)
        groups = np.asarray(class_groups, np.int32).reshape(-1)
        self.class_groups = self.add_weight(
            shape=groups.shape, dtype="int32", trainable=False, name="class_groups",
            initializer=keras.initializers.Constant(groups))

    def call(self, inputs):
        heads, classes = inputs
        group = keras.ops.take(self.class_groups,
                               keras.ops.reshape(keras.ops.cast(classes, "int32"), (-1,)))
        return keras.ops.take_along_axis(heads, group[:, None], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)


def class_weight_net(class_groups, hidden: int = 100, seed: int | None = None) -> keras.Model:
    """CMW-Net's class-aware weighting function V(loss, class): (losses [N, 1], classes
    [N, 1] int32) -> weights [N, 1]. A shared trunk Linear(1 -> hidden) + ReLU, then one
    Linear(hidden -> 1) + sigmoid head per class group (held as one Dense(hidden -> G): torch's
    Linear initialization depends on the fan-in alone, so its G columns are G such heads),
    initialized as torch.nn.Linear; a sample's weight is the head of its class's group
    (`class_groups[class]`, ints 0..G-1)."""
    groups = np.asarray(class_groups, np.int32).reshape(-1)
    seed_of = seeds(seed)
    losses = keras.Input((1,), name="losses")
    classes = keras.Input((1,), dtype="int32", name="classes")
    h = dense(hidden, 1, seed_of(), activation="relu")(losses)
    heads = dense(int(groups.max()) + 1, hidden, seed_of(), activation="sigmoid")(h)
    weights = GroupSelect(groups, name="group_select")([heads, classes])
    return keras.Model([losses, classes], weights, name="class_weight_net")


def mlp(num_classes: int, input_shape: tuple[int, ...], *, hidden: int = 256,
        synchronized_bn: bool = False, seed: int | None = None) -> keras.Model:
    """Flatten - Dense(256) - BN - ReLU - Dense(C): 19,722 trainable parameters on 8x8 digits
    with 10 classes."""
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    x = dense(hidden, x.shape[-1], seed_of())(x)
    x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    return keras.Model(inputs, dense(num_classes, hidden, seed_of(), logits=True)(x), name="mlp")


def cnn(num_classes: int, input_shape: tuple[int, ...], *, synchronized_bn: bool = False,
        seed: int | None = None) -> keras.Model:
    """A small, CPU-friendly CNN for 28x28 grayscale images (Fashion-MNIST):
    conv3x3 32 stride 2 - BN - ReLU, conv3x3 64 stride 2 - BN - ReLU, conv3x3 64 - BN - ReLU,
    global average pooling, Dense(C): 56,554 trainable parameters for 10 classes.
    """
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = inputs
    for channels, stride in ((32, 2), (64, 2), (64, 1)):
        x = conv(channels, 3, stride, seed_of())(x)
        x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = dense(num_classes, x.shape[-1], seed_of(), logits=True)(x)
    return keras.Model(inputs, logits, name="cnn")


def tiny(num_classes: int, input_shape: tuple[int, ...], *, synchronized_bn: bool = False,
         seed: int | None = None) -> keras.Model:
    """Flatten - Dense(8) - BN - ReLU - Dense(C): a model for tests (float64 included)."""
    seed_of = seeds(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    x = dense(8, x.shape[-1], seed_of())(x)
    x = keras.layers.ReLU()(batch_norm(synchronized_bn)(x))
    return keras.Model(inputs, dense(num_classes, 8, seed_of(), logits=True)(x), name="tiny")
