"""The loss-based one-stage methods: focal, class_balanced, reed_hard, self_paced."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf import methods
from mwnet_tf.config import Config
from mwnet_tf.methods import optim, steps
from mwnet_tf.methods.base import Context
from mwnet_tf.methods.class_balanced import class_balanced_weights
from mwnet_tf.methods.focal import focal_loss
from mwnet_tf.methods.reed_hard import hard_bootstrap_loss
from mwnet_tf.methods.self_paced import self_paced_weights
from mwnet_tf.models import build_classifier
from mwnet_tf.training import loop

N, D, C = 12, 5, 4
SMALL = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
             batch_size=100, meta_batch_size=50, lr_decay_epochs=(1,), progress_seconds=0.0,
             seed=3, tensorboard_images=False)


def _batch(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(N, D)).astype(dtype), "y": rng.integers(0, C, N),
            "corrupted": rng.random(N) < 0.5}


def _method(name, params=None, train_y=None, seed=0, epochs=2):
    """A method on a fresh tiny classifier (same seed: same initial weights) and its optimizer."""
    config = Config(**dict(SMALL, method=name, epochs=epochs, lr_decay_epochs=(),
                           method_params=params or {}))
    clf = build_classifier("tiny", C, (D,), seed=seed)
    opt = optim.TorchSGD(0.3, momentum=0.9, weight_decay=5e-4)
    opt.build(clf.trainable_variables)
    if train_y is None:
        train_y = np.arange(40) % C
    data = types.SimpleNamespace(train_y=np.asarray(train_y), num_classes=C)
    ctx = Context(config=config, data=data, classifier=clf, optimizer=opt,
                  options=steps.StepOptions(N, N), new_classifier=None, new_optimizer=None)
    return methods.get(name)(ctx)


def _train(method, batch, n_steps=2):
    """`steps` compiled steps on the same batch; returns the last step's sums."""
    step = steps.compile_step(method.replica_step(method.stages()[0]))
    for _ in range(n_steps):
        out = step(batch)
    return {k: float(v) for k, v in out.items()}


def _max_difference(a, b):
    return max(float(np.max(np.abs(x.numpy() - y.numpy())))
               for x, y in zip(a.ctx.classifier.variables, b.ctx.classifier.variables))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- focal --------------------------------------------------------------------------------------

def test_focal_with_gamma_zero_trains_exactly_like_cross_entropy(float64):
    batch = _batch()
    ce, focal = _method("ce"), _method("focal", {"focal_gamma": 0.0})
    out_ce, out_focal = _train(ce, batch), _train(focal, batch)
    assert _max_difference(ce, focal) < 1e-12
    assert out_focal["loss_sum"] == pytest.approx(out_ce["loss_sum"], abs=1e-12)
    assert out_focal["weight_sum"] == pytest.approx(N)  # factor (1 - p)^0 = 1
    logits = ce.ctx.classifier(batch["x"])
    objective, _ = focal_loss(logits, batch["y"], 0.0)
    np.testing.assert_allclose(objective, steps.per_sample_ce(logits, batch["y"]), atol=1e-12)
    # The default gamma (2) trains differently from the same start.
    default = _method("focal")
    _train(default, batch)
    assert _max_difference(ce, default) > 1e-4


def test_focal_per_sample_loss_matches_numpy_for_gamma_two():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(N, C))
    y = rng.integers(0, C, N)
    p = _softmax(z)[np.arange(N), y]
    loss, factor = focal_loss(tf.constant(z), tf.constant(y), 2.0)
    np.testing.assert_allclose(loss, -(1 - p) ** 2 * np.log(p), rtol=1e-12)
    np.testing.assert_allclose(factor, (1 - p) ** 2, rtol=1e-12)


def test_focal_gradient_is_finite_when_the_label_probability_rounds_to_one():
    # float32, p_y == 1 exactly: (1 - p)^0.5 formed from probabilities has an infinite slope.
    z = tf.constant([[60.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0]], tf.float32)
    y = tf.constant([0, 3])
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss, _ = focal_loss(z, y, 0.5)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, z).numpy()
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad))
    assert float(loss[0]) == 0.0 and np.abs(grad[1]).max() > 1e-3


# --- class-balanced -----------------------------------------------------------------------------

def test_class_balanced_weights_match_the_formula_and_sum_to_the_class_count():
    counts = np.array([500, 120, 9, 1, 0])
    beta = 0.999
    w = np.array([(1 - beta) / (1 - beta ** n) if n else 0.0 for n in counts])
    expected = w * len(counts) / w.sum()
    np.testing.assert_allclose(class_balanced_weights(counts, beta), expected, rtol=1e-10)
    assert class_balanced_weights(counts, beta).sum() == pytest.approx(5)
    assert class_balanced_weights(counts, 0.9999)[0] < class_balanced_weights(counts, 0.9999)[3]
    # beta = 1: the limit, inverse class frequency; beta = 0: 1 for each class present.
    inv = np.array([1 / 500, 1 / 120, 1 / 9, 1.0, 0.0])
    np.testing.assert_allclose(class_balanced_weights(counts, 1.0), inv * 5 / inv.sum())
    np.testing.assert_allclose(class_balanced_weights(counts, 0.0), [1.25] * 4 + [0.0])


def test_class_balanced_method_weights_each_sample_by_its_label_class(float64):
    counts = [30, 6, 3, 1]
    train_y = np.repeat(np.arange(C), counts)
    method = _method("class_balanced", {"cb_beta": 0.9}, train_y=train_y)
    w = np.array([(1 - 0.9) / (1 - 0.9 ** n) for n in counts])
    w = w * C / w.sum()
    np.testing.assert_allclose(method.class_weights, w, rtol=1e-12)
    batch = _batch()
    out = _train(method, batch, n_steps=1)
    assert out["weight_sum"] == pytest.approx(w[batch["y"]].sum(), rel=1e-6)  # logged in float32
    assert method.results()["class_balanced_weights"] == pytest.approx(list(w))


def test_class_balanced_with_beta_zero_trains_exactly_like_cross_entropy(float64):
    train_y = np.repeat(np.arange(C), [30, 6, 3, 1])
    batch = _batch()
    ce = _method("ce")
    cb = _method("class_balanced", {"cb_beta": 0.0}, train_y=train_y)
    np.testing.assert_array_equal(cb.class_weights, np.ones(C))
    _train(ce, batch), _train(cb, batch)
    assert _max_difference(ce, cb) < 1e-12


def test_class_balanced_beta_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="cb_beta must be <= 1"):
        Config(method="class_balanced", method_params={"cb_beta": 1.5})


# --- hard bootstrapping -------------------------------------------------------------------------

def test_reed_hard_objective_and_gradient_match_numpy():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(N, C))
    y = rng.integers(0, C, N)
    beta = 0.8
    p = _softmax(z)
    target = beta * np.eye(C)[y] + (1 - beta) * np.eye(C)[p.argmax(-1)]
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        loss = hard_bootstrap_loss(zt, tf.constant(y), beta)
        total = tf.reduce_sum(loss)
    np.testing.assert_allclose(loss, -(target * np.log(p)).sum(-1), rtol=1e-12)
    # The target is a constant: d loss / d z = p - target.
    np.testing.assert_allclose(tape.gradient(total, zt), p - target, atol=1e-12)
    assert np.any(p.argmax(-1) != y)  # the bootstrap term matters on this batch


def test_reed_hard_with_beta_one_trains_exactly_like_cross_entropy(float64):
    batch = _batch()
    ce, reed = _method("ce"), _method("reed_hard", {"reed_beta": 1.0})
    out_ce, out_reed = _train(ce, batch), _train(reed, batch)
    assert _max_difference(ce, reed) < 1e-12
    assert out_reed["loss_sum"] == pytest.approx(out_ce["loss_sum"], abs=1e-12)
    default = _method("reed_hard")
    _train(default, batch)
    assert _max_difference(ce, default) > 1e-6


# --- self-paced ---------------------------------------------------------------------------------

def test_self_paced_admits_exactly_the_losses_below_the_threshold():
    rng = np.random.default_rng(3)
    losses = rng.exponential(size=10)
    for fraction, k in [(0.3, 3), (0.55, 6), (0.5, 5), (1.0, 10), (0.01, 1)]:
        v = self_paced_weights(tf.constant(losses), tf.constant(fraction, tf.float64)).numpy()
        threshold = np.sort(losses)[k] if k < len(losses) else np.inf
        np.testing.assert_array_equal(v, (losses < threshold).astype(float), err_msg=fraction)
        assert v.sum() == k
    # Ties at the threshold: still exactly k admitted.
    v = self_paced_weights(tf.ones(8), tf.constant(0.5, tf.float64)).numpy()
    assert v.sum() == 4


def test_self_paced_fraction_grows_per_epoch_without_retracing(float64):
    derived = _method("self_paced", epochs=5)
    stage = derived.stages()[0]
    seen = []
    for epoch in range(5):
        derived.begin_epoch(stage, epoch)
        seen.append(float(derived.fraction.numpy()))
    np.testing.assert_allclose(seen, [0.5, 0.625, 0.75, 0.875, 1.0])
    fixed = _method("self_paced", {"spl_start": 0.25, "spl_growth": 0.3}, epochs=5)
    seen = []
    for epoch in range(5):
        fixed.begin_epoch(stage, epoch)
        seen.append(float(fixed.fraction.numpy()))
    np.testing.assert_allclose(seen, [0.25, 0.55, 0.85, 1.0, 1.0])
    assert fixed.trackables()["spl_fraction"] is fixed.fraction

    # In the compiled step the admitted count follows the variable, with one trace.
    batch = _batch()
    step = tf.function(derived.replica_step(stage))
    admitted = []
    for epoch in (0, 2, 4):
        derived.begin_epoch(stage, epoch)
        admitted.append(float(step(batch)["weight_sum"]))
    assert admitted == [6, 9, 12]
    assert step.experimental_get_tracing_count() == 1


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("name", ["focal", "class_balanced", "reed_hard", "self_paced"])
def test_method_trains_two_epochs_on_digits_and_writes_results(tmp_path, name):
    results = loop.train_and_evaluate(Config(**dict(SMALL, method=name)), str(tmp_path),
                                         log=lambda _: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["method"] == name and saved["epochs"] == 2
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert 20 < saved["test_accuracy"] <= 100  # 10 classes: chance is 10%
    if name == "class_balanced":
        assert len(saved["class_balanced_weights"]) == 10
        assert sum(saved["class_balanced_weights"]) == pytest.approx(10)
    if name == "self_paced":
        assert saved["self_paced_final_fraction"] == 1.0  # 0.5, then 1 in the last epoch
