"""MW-Net through Keras' `fit` (`mwnet_tf.methods.keras_model`): the same steps as the
project's own, and Keras' callbacks."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.methods import optim, steps
from mwnet_tf.methods.keras_model import MetaWeightNetModel
from mwnet_tf.models import build_classifier, build_weight_net, weight_function

N, C, SHAPE = 16, 4, (6,)


def _data(seed, batches):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N * batches, *SHAPE)).astype("float32")
    y = rng.integers(0, C, N * batches).astype("int32")
    return x, y


def _pair():
    """Two identical (classifier, weight net, optimizers) sets."""
    out = []
    for _ in range(2):
        clf = build_classifier("mlp", C, SHAPE, seed=0)
        wnet = build_weight_net(seed=1)
        out.append((clf, wnet, optim.TorchSGD(0.1, momentum=0.9, weight_decay=5e-4),
                    optim.TorchAdam(1e-3, weight_decay=1e-4)))
    return out


@pytest.mark.e2e
def test_fit_takes_the_same_steps_as_the_projects_step():
    n_steps = 5
    x, y = _data(0, n_steps)
    mx, my = _data(1, 2)  # 2 meta batches, repeated
    (c1, w1, o1, m1), (c2, w2, o2, m2) = _pair()

    model = MetaWeightNetModel(c1, w1)
    model.compile(optimizer=o1, meta_optimizer=m1)
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(N),
                        meta_data=tf.data.Dataset.from_tensor_slices((mx, my)).batch(N),
                        epochs=1, shuffle=False, verbose=0)

    o2.build(c2.trainable_variables)
    m2.build(w2.trainable_variables)
    step = tf.function(lambda b, mb: steps.mwnet_step(c2, w2, o2, m2, b, mb,
                                                     steps.StepOptions(N, N)))
    losses = []
    for i in range(n_steps):
        j = i % 2
        out = step({"x": x[i * N:(i + 1) * N], "y": y[i * N:(i + 1) * N]},
                   {"x": mx[j * N:(j + 1) * N], "y": my[j * N:(j + 1) * N]})
        losses.append(float(out["loss_sum"]) / N)
    for a, b in zip(c1.variables + w1.variables, c2.variables + w2.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert history.history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-5)
    assert set(history.history) >= {"loss", "accuracy", "meta_loss", "weight"}


@pytest.mark.e2e
def test_keras_callbacks_run(tmp_path):
    x, y = _data(0, 4)
    mx, my = _data(1, 1)
    (clf, wnet, opt, meta_opt), _ = _pair()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(N)
    model = MetaWeightNetModel(clf, wnet)
    model.compile(optimizer=opt, meta_optimizer=meta_opt)
    callbacks = [
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="loss", patience=1),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
    ]
    history = model.fit(train, meta_data=tf.data.Dataset.from_tensor_slices((mx, my)).batch(N),
                        epochs=3, validation_data=train, callbacks=callbacks, verbose=0)
    assert len(history.history["loss"]) >= 2 and "val_accuracy" in history.history
    assert os.listdir(tmp_path / "tb" / "train") and (tmp_path / "ckpt.weights.h5").exists()
    scores = model.evaluate(train, verbose=0, return_dict=True)
    logits = clf(x, training=False).numpy()
    expected = tf.reduce_mean(steps.per_sample_ce(logits, y)).numpy()
    assert scores["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert scores["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)))
    assert history.history["val_loss"][-1] > 0
    path = model.export_weight_fn(str(tmp_path / "weight_fn"))
    read = weight_function.read_weight_net(path)
    losses = np.array([[0.1], [3.0]], "float32")
    np.testing.assert_allclose(read(losses).numpy(), wnet(losses).numpy(), rtol=1e-6)


def test_fit_needs_a_meta_set_and_a_meta_optimizer():
    (clf, wnet, opt, meta_opt), _ = _pair()
    model = MetaWeightNetModel(clf, wnet)
    x, y = _data(0, 1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(N)
    with pytest.raises(ValueError, match="meta_optimizer"):
        model.fit(ds, meta_data=ds)
    model.compile(optimizer=opt, meta_optimizer=meta_opt)
    with pytest.raises(ValueError, match="two tf.data.Datasets"):
        model.fit(ds)
