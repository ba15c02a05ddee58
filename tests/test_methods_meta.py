"""The methods that read the clean meta set besides MW-Net: L2RW and fine-tuning."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf
from gradients import per_sample_gradients  # (tests/gradients.py)

from mwnet_tf.config import Config
from mwnet_tf.data.pipeline import normalize
from mwnet_tf.methods import Context, optim, steps
from mwnet_tf.methods.fine_tune import FineTune
from mwnet_tf.methods.l2rw import l2rw_batch_weights, l2rw_step, l2rw_weights
from mwnet_tf.models import build_classifier
from mwnet_tf.protocols import paper_defaults
from mwnet_tf.training import epoch, loop

N, NM, D, C, LR = 8, 6, 5, 3, 0.3
SMALL = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
             batch_size=100, meta_batch_size=50, lr_decay_epochs=(1,), progress_seconds=0.0,
             seed=3, tensorboard_images=False)


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    batch = {"x": rng.normal(size=(N, D)), "y": rng.integers(0, C, N),
             "corrupted": rng.random(N) < 0.5}
    meta_batch = {"x": rng.normal(size=(NM, D)), "y": rng.integers(0, C, NM)}
    return batch, meta_batch


def _classifier_and_optimizer(seed=0):
    clf = build_classifier("tiny", C, (D,), seed=seed)
    opt = optim.TorchSGD(LR, momentum=0.9, weight_decay=5e-4)
    opt.build(clf.trainable_variables)
    return clf, opt


# --- L2RW ------------------------------------------------------------------------------------

def test_l2rw_weights_clip_negative_gradients_and_normalize_with_the_zero_guard():
    np.testing.assert_allclose(l2rw_weights(tf.constant([-1.0, 3.0, -3.0, 0.0])).numpy(),
                               [0.25, 0.0, 0.75, 0.0])
    # Every meta-gradient >= 0: all weights 0, not NaN (the official `sum += (sum == 0)`).
    np.testing.assert_array_equal(l2rw_weights(tf.constant([1.0, 0.0, 2.0])).numpy(), [0, 0, 0])


def _reference_weights(clf, batch, meta_batch):
    """L2RW weights from per-sample gradients computed one by one (no eps, no nested tapes).

    The training objective is sum_j eps_j l_j, so at eps = 0 (where w_hat = w)
    d meta_loss / d eps_j = -lr * g_meta . grad_w l_j with g_meta = grad_w meta_loss(w).
    """
    tv, ntv, losses, grads_l = per_sample_gradients(clf, batch)
    with tf.GradientTape() as t2:
        t2.watch(tv)
        meta_logits, _ = clf.stateless_call(tv, ntv, meta_batch["x"], training=True)
        meta_loss = tf.reduce_mean(steps.per_sample_ce(meta_logits, meta_batch["y"]))
    g_meta = t2.gradient(meta_loss, tv)
    d_eps = np.array([-LR * sum(float(tf.reduce_sum(a * b)) for a, b in zip(g_meta, grads_l[j]))
                      for j in range(N)])
    clipped = np.maximum(-d_eps, 0.0)
    return clipped / clipped.sum(), float(meta_loss)


def test_l2rw_weights_equal_clipped_normalized_per_sample_meta_gradients(float64):
    batch, meta_batch = _batches()
    clf, opt = _classifier_and_optimizer(seed=1)
    expected, meta_loss = _reference_weights(clf, batch, meta_batch)
    out = l2rw_step(clf, opt, batch, meta_batch, steps.StepOptions(N, NM), return_weights=True)
    weights = out["weights"].numpy()
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=1e-8, atol=1e-12)
    # The clipping is exercised: some samples get weight 0, the others share 1.
    assert 0 < np.sum(weights == 0) < N
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert float(out["meta_loss"]) == pytest.approx(meta_loss, rel=1e-10)
    # Logged as n * w_i: the sum of weights per batch is n.
    assert float(out["weight_sum"]) == pytest.approx(N, rel=1e-10)
    bad = batch["corrupted"]
    assert float(out["weight_sum_corrupted"]) == pytest.approx(N * weights[bad].sum(), rel=1e-10)


def test_l2rw_batch_weights_are_the_steps_weights_and_change_nothing(float64):
    # The figures' L2RW weights of a batch (Fig. 6) are n times the weights the real step
    # would give it, computed without touching the classifier's variables.
    batch, meta_batch = _batches(seed=5)
    clf, opt = _classifier_and_optimizer(seed=2)
    before = [v.numpy().copy() for v in clf.variables]
    tracked = l2rw_batch_weights(clf, opt.learning_rate, tf.constant(batch["x"]),
                                 tf.constant(batch["y"]), tf.constant(meta_batch["x"]),
                                 tf.constant(meta_batch["y"])).numpy()
    for v, b in zip(clf.variables, before):
        np.testing.assert_array_equal(v.numpy(), b, err_msg=v.path)
    out = l2rw_step(clf, opt, batch, meta_batch, steps.StepOptions(N, NM), return_weights=True)
    np.testing.assert_allclose(tracked, N * out["weights"].numpy(), rtol=1e-8, atol=1e-12)
    assert 0 < np.sum(tracked == 0) < N and tracked.sum() == pytest.approx(N)


def test_l2rw_real_step_equals_a_weighted_cross_entropy_step(float64):
    clf_a, opt_a = _classifier_and_optimizer(seed=4)
    clf_b, opt_b = _classifier_and_optimizer(seed=4)
    init = [v.numpy().copy() for v in clf_a.variables]
    options = steps.StepOptions(N, NM)
    for step in range(2):
        batch, meta_batch = _batches(seed=10 + step)
        out = l2rw_step(clf_a, opt_a, batch, meta_batch, options, return_weights=True)
        w = out["weights"]

        def weighted_ce(logits, b, w=w):
            return N * w * steps.per_sample_ce(logits, b["y"]), w
        ref = steps.loss_step(clf_b, opt_b, batch, options, weighted_ce)
        assert float(out["loss_sum"]) == pytest.approx(float(ref["loss_sum"]), rel=1e-12)
    changed = False
    for a, b, v0 in zip(clf_a.variables, clf_b.variables, init):  # weights and BN statistics
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12, err_msg=a.path)
        changed |= not np.allclose(a.numpy(), v0)
    assert changed


@pytest.mark.e2e
def test_l2rw_trains_on_digits_and_writes_results(tmp_path):
    logs = []
    results = loop.train_and_evaluate(Config(**dict(SMALL, method="l2rw")), str(tmp_path),
                                         log=logs.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert 0 < saved["test_accuracy"] <= saved["best_test_accuracy"] <= 100
    assert saved["config"]["method"] == "l2rw" and saved["epochs"] == 2
    train = saved["train"]
    assert np.isfinite(train["meta_loss"]) and train["meta_loss"] > 0
    # n * w_i sums to n in every batch unless all weights were clipped to 0.
    assert 0 < train["weight_mean"] <= 1 + 1e-6
    assert {"weight_clean", "weight_corrupted"} <= set(train)
    assert sum("epoch 2/2" in line and "meta_loss" in line for line in logs) == 1
    # The tracked samples' L2RW weights (n * w_i, mean 1 per batch) and their change between
    # epochs (Fig. 6); no weight function of the loss.
    history = saved["history"]
    assert "weight_variation_mean" not in history[0]
    assert history[1]["weight_variation_mean"] > 0 and history[1]["weight_variation_std"] > 0
    clean, bad = history[1]["weight_clean"], history[1]["weight_corrupted"]
    assert 0 < bad < clean
    hist = saved["weight_histogram"]
    assert sum(hist["clean"]) + sum(hist["corrupted"]) > 0 and hist["bins"][0] == 0
    assert "weight_function" not in saved


# --- fine-tuning -----------------------------------------------------------------------------

def _fine_tune(config, n_train, n_meta):
    data = types.SimpleNamespace(train_y=np.zeros(n_train), meta_y=np.zeros(n_meta))
    ctx = Context(config=config, data=data, classifier=None, optimizer=None, options=None,
                  new_classifier=None, new_optimizer=None)
    return FineTune(ctx)


@pytest.mark.parametrize("dataset,n_train,n_meta,ft_epochs", [
    # digits: 30 epochs of 11 steps = 330, 1/16 -> 21 steps of the 100 meta images (1 a pass).
    ("digits", 1197, 100, 21),
    # Fashion-MNIST: 12 epochs of 590 steps = 7080, 1/16 -> 443 steps, 10 a pass -> 45 epochs.
    ("fashion_mnist", 59000, 1000, 45),
])
def test_fine_tune_default_stages_of_the_digits_and_fashion_settings(dataset, n_train, n_meta,
                                                                   ft_epochs):
    defaults = paper_defaults(dataset, "uniform", 1.0)
    config = Config(dataset=dataset, method="fine_tune", **defaults)
    assert n_meta == 10 * config.meta_per_class  # the setting's meta set: >= one batch
    train, tune = _fine_tune(config, n_train, n_meta).stages()
    assert (train.name, train.epochs, train.lr_decay_epochs, train.source, train.lr) == (
        "train", config.epochs, config.lr_decay_epochs, "train", None)
    assert not train.reported and tune.reported
    assert (tune.name, tune.epochs, tune.source, tune.fresh, tune.lr_decay_epochs) == (
        "fine-tune", ft_epochs, "meta", False, ())
    assert tune.lr == pytest.approx(0.1 * 0.1 ** 2)  # the final decayed learning rate


def test_fine_tune_flags_override_the_defaults_and_a_small_meta_set_fails_early():
    config = Config(**dict(SMALL, method="fine_tune",
                           method_params={"ft_epochs": 3, "ft_lr": 0.05}))
    tune = _fine_tune(config, 1197, 100).stages()[1]
    assert (tune.epochs, tune.lr) == (3, 0.05)
    with pytest.raises(ValueError, match="smaller than one batch"):
        _fine_tune(config, 1197, 50)
    with pytest.raises(ValueError, match="ft_epochs must be >= 1"):
        Config(**dict(SMALL, method="fine_tune", method_params={"ft_epochs": 0}))


@pytest.mark.e2e
def test_fine_tune_second_phase_sees_only_meta_data(tmp_path, monkeypatch):
    seen = []  # (epoch, data, with_meta, batches) of every training epoch
    real = epoch.make_train_dataset

    def spy(data, **kwargs):
        ds = real(data, **kwargs)
        seen.append((kwargs["epoch"], data, kwargs["with_meta"], list(ds)))
        return ds  # deterministic: the trainer reads the same batches again

    monkeypatch.setattr(epoch, "make_train_dataset", spy)
    logs = []
    config = Config(**dict(SMALL, method="fine_tune", method_params={"ft_epochs": 1}))
    results = loop.train_and_evaluate(config, str(tmp_path), log=logs.append)

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["epochs"] == 3 and [s["name"] for s in saved["stages"]] == ["train",
                                                                             "fine-tune"]
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert 0 < saved["test_accuracy"] <= saved["best_test_accuracy"] <= 100
    assert [e for e, *_ in seen] == [0, 1, 2]
    assert not any(with_meta for _, _, with_meta, _ in seen)
    data = seen[0][1]
    assert len(data.train_y) > len(data.meta_y) == 100  # digits: 10 per class, batch 100
    assert len(seen[0][3]) == len(data.train_y) // 100

    _, tuned, _, batches = seen[2]
    np.testing.assert_array_equal(tuned.train_x, data.meta_x)
    np.testing.assert_array_equal(tuned.train_y, data.meta_y)
    assert len(batches) == 1  # 100 meta images, one batch of 100
    meta_x = normalize(data.meta_x, data.mean, data.std).numpy().reshape(len(data.meta_y), -1)
    train_x = normalize(data.train_x, data.mean, data.std).numpy().reshape(len(data.train_y), -1)
    for (batch,) in batches:
        x = batch["x"].numpy().reshape(len(batch["y"]), -1)
        dist = np.abs(x[:, None, :] - meta_x[None]).max(-1)             # [B, meta]
        rows = dist.argmin(1)
        assert np.all(dist[np.arange(len(x)), rows] < 1e-6)             # every image is meta
        np.testing.assert_array_equal(batch["y"].numpy(), data.meta_y[rows])
        assert not np.any(batch["corrupted"].numpy())
        assert np.array_equal(np.sort(rows), np.arange(100))           # each meta image once
    # ...and the first stage's batches were training images, not meta ones.
    first = seen[0][3][0][0]["x"].numpy().reshape(100, -1)
    assert np.mean(np.abs(first[:, None, :] - train_x[None]).max(-1).min(1) < 1e-6) == 1.0
    tuned_line = [line for line in logs if "epoch 3/3 (fine-tune)" in line]
    assert len(tuned_line) == 1 and " lr 0.01 " in tuned_line[0]
