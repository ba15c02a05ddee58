"""Gold Loss Correction and Co-teaching: the estimator, the corrected loss, the forget-rate
schedule, the small-loss exchange, and a run of each through the trainer."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.config import Config
from mwnet_tf.data import make_biased_data
from mwnet_tf.methods import Context, co_teaching, glc, steps
from mwnet_tf.models import build_classifier
from mwnet_tf.protocols import scaled_decay_epochs
from mwnet_tf.training import loop

RUN = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, batch_size=100,
           meta_batch_size=50, progress_seconds=0.0, seed=3, tensorboard_images=False)


def _context(config, data, classifier=None):
    def new_classifier(seed):
        return build_classifier("tiny", data.num_classes, data.train_x.shape[1:], seed=seed)

    classifier = classifier if classifier is not None else new_classifier(config.seed)
    optimizer = loop.make_optimizer(config)
    optimizer.build(classifier.trainable_variables)
    return Context(config=config, data=data, classifier=classifier, optimizer=optimizer,
                   options=steps.StepOptions(config.batch_size, config.meta_batch_size),
                   new_classifier=new_classifier,
                   new_optimizer=lambda kind: loop.make_optimizer(config, kind))


def _random_transition(rng, c):
    t = rng.uniform(0.05, 1.0, (c, c)) + 3.0 * np.eye(c)
    return t / t.sum(1, keepdims=True)


# --- GLC ------------------------------------------------------------------------------------

def test_glc_estimator_recovers_the_transition_matrix_of_a_model_that_predicts_it(
        synthetic_dataset):
    """A model whose softmax is exactly T[true class] on each trusted image: C_hat == T."""
    c = 5
    rng = np.random.default_rng(0)
    t = _random_transition(rng, c)
    data = make_biased_data(synthetic_dataset(per_class=6, num_classes=c, shape=(c, 1, 1)),
                            noise="uniform", rate=0.4, meta_per_class=3, seed=0)
    # Trusted image of class k: one-hot at pixel k (255), so with mean 0 / std 1 the model's
    # input is e_k and a bias-free Dense layer with kernel log T outputs the logits log T[k].
    meta_x = np.zeros_like(data.meta_x)
    meta_x[np.arange(len(data.meta_y)), data.meta_y, 0, 0] = 255
    data = dataclasses.replace(data, meta_x=meta_x, mean=(0.0,), std=(1.0,))
    model = keras.Sequential([keras.Input((c, 1, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(c, use_bias=False)])
    model.layers[-1].kernel.assign(np.log(t).astype(np.float32))
    config = Config(**dict(RUN, epochs=1, batch_size=5, meta_batch_size=5, method="glc"))
    method = glc.METHOD(_context(config, data, classifier=model))
    np.testing.assert_allclose(method.corruption.numpy(), np.eye(c))  # before the estimate
    method.end_stage(method.stages()[1])                               # not the estimate stage
    np.testing.assert_allclose(method.corruption.numpy(), np.eye(c))
    method.end_stage(method.stages()[0])
    np.testing.assert_allclose(method.corruption.numpy(), t, atol=1e-6)
    np.testing.assert_allclose(method.results()["corruption_matrix"], t, atol=1e-6)


def test_glc_estimator_averages_over_the_trusted_samples_of_each_true_class():
    rng = np.random.default_rng(1)
    c, per_class = 4, 6
    t = _random_transition(rng, c)
    labels = np.repeat(np.arange(c), per_class)
    # Per-sample predictions scattered around T[label] with deviations that cancel per class.
    dev = rng.normal(0, 0.02, (c, per_class // 2, c))
    dev -= dev.mean(-1, keepdims=True)
    probs = t[labels] + np.concatenate([dev, -dev], 1).reshape(-1, c)
    order = rng.permutation(len(labels))
    c_hat = glc.estimate_corruption_matrix(probs[order], labels[order], c)
    np.testing.assert_allclose(c_hat, t, atol=1e-12)
    # A class without trusted samples: identity row, not NaN.
    c_hat = glc.estimate_corruption_matrix(probs[labels != 2], labels[labels != 2], c)
    np.testing.assert_array_equal(c_hat[2], np.eye(c)[2])


def test_glc_corrected_loss_matches_numpy_and_is_guarded():
    rng = np.random.default_rng(2)
    n, c = 12, 5
    logits = rng.normal(0, 2, (n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    t = _random_transition(rng, c)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.log((p @ t)[np.arange(n), labels])
    got = glc.corrected_loss(tf.constant(logits), tf.constant(labels), tf.constant(t)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # C = I: plain cross-entropy.
    ce = steps.per_sample_ce(tf.constant(logits), tf.constant(labels)).numpy()
    np.testing.assert_allclose(glc.corrected_loss(logits, labels, np.eye(c)).numpy(), ce,
                               rtol=1e-5)
    # A zero column: the loss of that label is capped at -log(1e-12), its gradient finite.
    t[:, 1] = 0.0
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = glc.corrected_loss(x, tf.ones(n, tf.int32), tf.constant(t, tf.float32))
    grad = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(loss.numpy(), -np.log(glc.LOG_FLOOR), rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_glc_stages_and_decay_scaling():
    config = Config(**dict(RUN, epochs=10, lr_decay_epochs=(6, 8), method="glc"))
    assert scaled_decay_epochs((6, 8), 10, 10) == (6, 8)
    assert scaled_decay_epochs((6, 8), 10, 5) == (3, 4)
    assert scaled_decay_epochs((6, 8), 10, 1) == ()
    method = glc.METHOD.__new__(glc.METHOD)  # stages() only reads the config and hp
    method.config = config
    method.hp = {"glc_estimate_epochs": None}
    first, second = method.stages()
    assert (first.epochs, first.lr_decay_epochs, first.reported, first.fresh) == (
        10, (6, 8), False, False)
    assert (second.epochs, second.lr_decay_epochs, second.reported, second.fresh) == (
        10, (6, 8), True, True)
    assert not method.meta_batches(first) and method.meta_batches(second)
    method.hp = {"glc_estimate_epochs": 5}
    assert method.stages()[0].lr_decay_epochs == (3, 4)


def test_glc_corrected_step_weights_trusted_and_untrusted_parts(synthetic_dataset):
    """One corrected step with plain SGD equals a gradient step on
    S/(S+G) * mean corrected loss + G/(S+G) * mean trusted CE."""
    data = make_biased_data(synthetic_dataset(per_class=6, num_classes=5, shape=(4, 4, 1)),
                            noise="uniform", rate=0.4, meta_per_class=2, seed=0)
    config = Config(**dict(RUN, epochs=1, batch_size=8, meta_batch_size=4, method="glc",
                           momentum=0.0, weight_decay=0.0, lr=0.5))
    ctx = _context(config, data)
    method = glc.METHOD(ctx)
    rng = np.random.default_rng(3)
    t = _random_transition(rng, 5)
    method.corruption.assign(t.astype(np.float32))
    batch = {"x": tf.constant(rng.normal(size=(8, 4, 4, 1)), tf.float32),
             "y": tf.constant(rng.integers(0, 5, 8), tf.int32)}
    meta_batch = {"x": tf.constant(rng.normal(size=(4, 4, 4, 1)), tf.float32),
                  "y": tf.constant(rng.integers(0, 5, 4), tf.int32)}
    clf = ctx.classifier
    share = len(data.train_y) / (len(data.train_y) + len(data.meta_y))
    before = [v.numpy() for v in clf.trainable_variables]
    with tf.GradientTape() as tape:
        a = glc.corrected_loss(clf(batch["x"], training=True), batch["y"], t)
        b = steps.per_sample_ce(clf(meta_batch["x"], training=True), meta_batch["y"])
        loss = share * tf.reduce_mean(a) + (1 - share) * tf.reduce_mean(b)
    grads = tape.gradient(loss, clf.trainable_variables)
    step = tf.function(method.replica_step(method.stages()[1]))
    out = step(batch, meta_batch)
    for w0, g, v in zip(before, grads, clf.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w0 - 0.5 * g.numpy(), atol=1e-5)
    assert share == pytest.approx(20 / 30)  # 20 untrusted, 10 trusted: not an even split
    assert {"loss_sum", "correct"} <= set(out)


@pytest.mark.e2e
def test_glc_runs_through_the_trainer_and_saves_the_matrix(tmp_path):
    config = Config(**dict(RUN, epochs=1, lr_decay_epochs=(), method="glc",
                           method_params={"glc_estimate_epochs": 1}))
    logs = []
    results = loop.train_and_evaluate(config, str(tmp_path), log=logs.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["epochs"] == 2 and [s["name"] for s in saved["stages"]] == [
        "estimate", "corrected"]
    c_hat = np.array(saved["corruption_matrix"])
    assert c_hat.shape == (10, 10)
    np.testing.assert_allclose(c_hat.sum(1), 1.0, atol=1e-4)   # rows are distributions
    assert np.abs(c_hat - np.eye(10)).max() > 0.05             # estimated, not the identity
    np.testing.assert_allclose(c_hat, results["corruption_matrix"])
    assert 0 < saved["test_accuracy"] <= 100
    assert any("(corrected)" in line for line in logs)
    ckpt = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    stored = [k for k in ckpt.get_variable_to_shape_map() if k.startswith("corruption_matrix")]
    assert stored
    np.testing.assert_allclose(ckpt.get_tensor(stored[0]), c_hat, atol=1e-6)


# --- Co-teaching ----------------------------------------------------------------------------

def _official_schedule(forget_rate, num_gradual, exponent, n_epoch):
    rate_schedule = np.ones(n_epoch) * forget_rate
    rate_schedule[:num_gradual] = np.linspace(0, forget_rate ** exponent, num_gradual)
    return rate_schedule


def _co_teaching(synthetic_dataset, epochs, settings=(), **params):
    data = make_biased_data(synthetic_dataset(per_class=8, num_classes=5, shape=(4, 4, 1)),
                            noise="uniform", rate=0.4, meta_per_class=2, seed=0)
    config = Config(**dict(RUN, epochs=epochs, method="co_teaching", method_params=params,
                           **dict(settings)))
    return co_teaching.METHOD(_context(config, data))


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_co_teaching_schedule_is_the_official_one(synthetic_dataset, exponent):
    method = _co_teaching(synthetic_dataset, 15, ct_forget_rate=0.45, ct_num_gradual=10,
                          ct_exponent=exponent)
    # The official loop trains epochs 1..n_epoch-1 with rate_schedule[epoch].
    np.testing.assert_allclose(method.schedule(),
                               _official_schedule(0.45, 10, exponent, 16)[1:], rtol=1e-12)
    assert method.schedule()[-1] == 0.45
    # num_gradual longer than the run (the official array assignment would fail).
    method = _co_teaching(synthetic_dataset, 3, ct_forget_rate=0.3, ct_num_gradual=10)
    np.testing.assert_allclose(method.schedule(), [0.3 / 9, 0.6 / 9, 0.9 / 9])


def test_co_teaching_forget_rate_defaults_to_the_noise_rate(synthetic_dataset):
    method = _co_teaching(synthetic_dataset, 12)
    assert method.schedule()[-1] == pytest.approx(0.4)           # config.rate
    np.testing.assert_allclose(method.schedule()[:9], 0.4 * np.arange(1, 10) / 9)


def test_co_teaching_keeps_the_scheduled_small_loss_samples_of_the_peer(synthetic_dataset):
    n = 31
    method = _co_teaching(synthetic_dataset, 6, ct_forget_rate=0.5, ct_num_gradual=4)
    stage = method.stages()[0]
    rng = np.random.default_rng(4)
    labels = tf.constant(rng.integers(0, 5, n), tf.int32)
    batch = {"x": tf.constant(rng.normal(size=(n, 4, 4, 1)), tf.float32), "y": labels,
             "corrupted": tf.constant(rng.random(n) < 0.4)}
    step = tf.function(method.replica_step(stage))
    schedule = method.schedule()
    kept_counts = []
    for epoch in range(6):
        method.ctx.optimizer.learning_rate = 0.1 * 0.5 ** epoch
        method.begin_epoch(stage, epoch)
        assert float(method.peer_optimizer.learning_rate) == pytest.approx(0.1 * 0.5 ** epoch)
        keep = round((1 - schedule[epoch]) * n)
        kept_counts.append(keep)
        # The objectives on given logits: each net's mask is the peer's `keep` smallest losses.
        logits1 = tf.constant(rng.normal(0, 2, (n, 5)), tf.float32)
        logits2 = tf.constant(rng.normal(0, 2, (n, 5)), tf.float32)
        obj1, obj2, mask1, mask2 = method.objectives(logits1, logits2, labels)
        l1 = steps.per_sample_ce(logits1, labels).numpy()
        l2 = steps.per_sample_ce(logits2, labels).numpy()
        expect1 = np.zeros(n)
        expect1[np.argsort(l2, kind="stable")[:keep]] = 1
        expect2 = np.zeros(n)
        expect2[np.argsort(l1, kind="stable")[:keep]] = 1
        np.testing.assert_array_equal(mask1.numpy(), expect1)
        np.testing.assert_array_equal(mask2.numpy(), expect2)
        assert float(obj1) == pytest.approx(np.sum(l1 * expect1) / keep, rel=1e-5)
        assert float(obj2) == pytest.approx(np.sum(l2 * expect2) / keep, rel=1e-5)
        # The compiled step reads the epoch's rate without retracing.
        out = step(batch)
        assert float(out["weight_sum"]) == keep
        assert float(out["count_corrupted"]) == float(np.sum(batch["corrupted"]))
    assert step.experimental_get_tracing_count() == 1
    # round((1 - [1/6, 1/3, 1/2, 1/2, ...]) * 31) = 26, 21, 16 (15.5 rounds to even), ...
    assert kept_counts == [26, 21, 16, 16, 16, 16]


def test_co_teaching_step_updates_each_net_on_the_peers_selection(synthetic_dataset):
    """With plain SGD, each net moves by -lr * grad of its CE summed over the samples the
    OTHER net ranked smallest, divided by the kept count."""
    n, lr = 20, 0.3
    method = _co_teaching(synthetic_dataset, 3, settings=dict(momentum=0.0, weight_decay=0.0),
                          ct_forget_rate=0.5, ct_num_gradual=1)
    stage = method.stages()[0]
    method.ctx.optimizer.learning_rate = lr
    method.begin_epoch(stage, 0)          # num_gradual 1: the full rate 0.5 at once
    keep = 10
    rng = np.random.default_rng(5)
    batch = {"x": tf.constant(rng.normal(size=(n, 4, 4, 1)), tf.float32),
             "y": tf.constant(rng.integers(0, 5, n), tf.int32)}
    nets = (method.ctx.classifier, method.peer)
    losses = [steps.per_sample_ce(net(batch["x"], training=True), batch["y"]) for net in nets]
    kept = [np.argsort(loss.numpy(), kind="stable")[:keep] for loss in losses]
    expected = []
    for net, peer_kept in zip(nets, kept[::-1]):
        with tf.GradientTape() as tape:
            loss = steps.per_sample_ce(net(batch["x"], training=True), batch["y"])
            objective = tf.reduce_sum(tf.gather(loss, peer_kept)) / keep
        grads = tape.gradient(objective, net.trainable_variables)
        expected.append([v.numpy() - lr * g.numpy()
                         for v, g in zip(net.trainable_variables, grads)])
    assert not np.array_equal(np.sort(kept[0]), np.sort(kept[1]))  # the exchange matters
    tf.function(method.replica_step(stage))(batch)
    for net, want in zip(nets, expected):
        for v, w in zip(net.trainable_variables, want):
            np.testing.assert_allclose(v.numpy(), w, atol=1e-5)


@pytest.mark.e2e
def test_co_teaching_runs_through_the_trainer(tmp_path):
    config = Config(**dict(RUN, epochs=2, lr_decay_epochs=(1,), method="co_teaching"))
    results = loop.train_and_evaluate(config, str(tmp_path), log=lambda s: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert 0 < saved["test_accuracy"] <= 100
    ckpt = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    names = ckpt.get_variable_to_shape_map()
    assert any(k.startswith("peer/") for k in names)
    assert any(k.startswith("peer_optimizer/") for k in names)
