"""MW-Net through Keras' own `fit`: a `keras.Model` whose `train_step` is `steps.mwnet_step`.

    model = MetaWeightNetModel(classifier)                 # any Functional Keras classifier
    model.compile(optimizer=optim.TorchSGD(0.1, momentum=0.9, weight_decay=5e-4),
                  meta_optimizer=optim.TorchAdam(1e-3, weight_decay=1e-4))
    model.fit(train_ds, meta_data=meta_ds, epochs=10, validation_data=test_ds,
              callbacks=[keras.callbacks.TensorBoard("logs"), ...])

`train_ds` and `meta_ds` are `tf.data.Dataset`s of `(images, labels)` batches; the meta set is
repeated and zipped beside the training batches (one meta batch per step), so the steps are
exactly the project's: N steps of `fit` equal N calls of `steps.mwnet_step` on the same batches
from the same weights (tested). Keras' callbacks work as with any model (TensorBoard,
ModelCheckpoint with `save_weights_only=True`, EarlyStopping, BackupAndRestore); `evaluate` and
`predict` run the classifier. The weight net is `model.weight_net`; `model.export_weight_fn(path)`
writes it as the SavedModel `--weight_fn` reads. Under `tf.distribute`, build and compile inside
`strategy.scope()`: batch sizes are then global and the step all-reduces as in the trainer.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mwnet_tf.methods import steps
from mwnet_tf.models import build_weight_net, weight_function


class MetaWeightNetModel(keras.Model):
    """A classifier trained by MW-Net under `fit` (see the module docstring).

    Args:
        classifier: a Functional Keras model mapping images to logits.
        weight_net: the 1-100-1 weight net (default: a new one, `models.build_weight_net`).
        weight_norm: "batch" (`v / sum(v)`, the default, as the trainer's) or "none".
        seed: seed of a new weight net.
    """

    def __init__(self, classifier: keras.Model, weight_net: keras.Model | None = None, *,
                 weight_norm: str = "batch", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        steps.StepOptions(1, 1, weight_norm)  # validates weight_norm
        self.classifier = classifier
        self.weight_net = weight_net if weight_net is not None else build_weight_net(seed=seed)
        self.weight_norm = weight_norm
        self.meta_optimizer = None
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "accuracy", "meta_loss", "weight")}
        self.built = classifier.built  # its parts are built (BackupAndRestore asks)

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def compile(self, optimizer, meta_optimizer, **kwargs):
        """`optimizer` trains the classifier (its learning rate is also the virtual step's),
        `meta_optimizer` the weight net; other arguments go to `keras.Model.compile` (`fit`
        logs loss, accuracy, meta_loss and the mean weight; `evaluate` loss and accuracy)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.meta_optimizer = meta_optimizer
        self.meta_optimizer.build(self.weight_net.trainable_variables)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def fit(self, x=None, y=None, *, meta_data: tf.data.Dataset | None = None, **kwargs):
        """`keras.Model.fit` on the zip of `x` (a dataset of training batches) with
        `meta_data` repeated."""
        if self.meta_optimizer is None:
            raise ValueError("compile the model with a meta_optimizer first")
        if not isinstance(x, tf.data.Dataset) or not isinstance(meta_data, tf.data.Dataset):
            raise ValueError("fit(x, meta_data=...) takes two tf.data.Datasets of (images, "
                             "labels) batches")
        if y is not None:
            raise ValueError("the labels are the second element of each batch of x")
        kwargs.setdefault("shuffle", False)  # a dataset is shuffled by its pipeline
        return super().fit(tf.data.Dataset.zip((x, meta_data.repeat())), **kwargs)

    def train_step(self, data):
        (x, y), (meta_x, meta_y) = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        options = steps.StepOptions(tf.shape(x)[0] * replicas, tf.shape(meta_x)[0] * replicas,
                                   self.weight_norm)
        out = steps.mwnet_step(self.classifier, self.weight_net, self.optimizer,
                              self.meta_optimizer, {"x": x, "y": y},
                              {"x": meta_x, "y": meta_y}, options)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        self._trackers["loss"].update_state(out["loss_sum"] / n, sample_weight=n)
        self._trackers["accuracy"].update_state(out["correct"] / n, sample_weight=n)
        self._trackers["meta_loss"].update_state(out["meta_loss"] * replicas)
        self._trackers["weight"].update_state(out["weight_sum"] / n, sample_weight=n)
        return {name: t.result() for name, t in self._trackers.items()}

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self.classifier(x, training=False)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        self._trackers["loss"].update_state(
            tf.reduce_mean(steps.per_sample_ce(logits, y)), sample_weight=n)
        self._trackers["accuracy"].update_state(steps.num_correct(logits, y) / n,
                                                sample_weight=n)
        return {name: self._trackers[name].result() for name in ("loss", "accuracy")}

    def export_weight_fn(self, path: str) -> str:
        """The weight net as the SavedModel that `--weight_fn` and `weight_function.read_weight_net`
        read."""
        return weight_function.export_weight_fn(self.weight_net, path)
