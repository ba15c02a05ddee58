"""CMW-Net-SL: the selected meta set, mixup, the pseudo-label objective and its exact
meta-gradient, the EMA copy, and a run's results."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.config import Config
from mwnet_tf.methods import steps
from mwnet_tf.methods.cmwnet_sl import OBJECTIVE, mix_lambda, mixup
from mwnet_tf.methods.meta_select import lowest_loss_per_class
from mwnet_tf.models import build_class_weight_net, build_classifier
from mwnet_tf.training import loop

N, NM, D, C, LR = 8, 6, 5, 3, 0.3


def test_mix_lambda_is_max_of_a_beta_draw_and_seeded():
    draws = np.array([float(mix_lambda(1.0, tf.constant([3, i], tf.int64)))
                      for i in range(2000)])
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    assert draws.mean() == pytest.approx(0.75, abs=0.02)  # max(U, 1 - U): uniform on [0.5, 1]
    assert float(mix_lambda(1.0, tf.constant([3, 7], tf.int64))) == draws[7]
    small = np.array([float(mix_lambda(0.1, tf.constant([4, i], tf.int64))) for i in range(500)])
    assert small.mean() > 0.9  # Beta(0.1, 0.1) puts its mass near 0 and 1


def _sl_batch(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    batch = {"x": rng.normal(size=(N, D)).astype(dtype), "y": rng.integers(0, C, N)}
    mixed = mixup(batch, tf.constant(0.7, tf.float32), tf.constant([1, 2], tf.int64))
    pseudo = rng.dirichlet(np.ones(C), N).astype(dtype)
    meta = mixup({"x": rng.normal(size=(NM, D)).astype(dtype), "y": rng.integers(0, C, NM)},
                 tf.constant(0.6, tf.float32), tf.constant([3, 4], tf.int64))
    return {**mixed, "pseudo": tf.constant(pseudo)}, meta, batch


def test_mixup_and_objective_are_cmwn_py_s_loss(float64):
    mixed, _, batch = _sl_batch()
    perm = mixed["perm"].numpy()
    assert sorted(perm) == list(range(N))
    lam = float(np.float32(0.7))  # drawn in float32
    np.testing.assert_allclose(mixed["x"].numpy(), lam * batch["x"] + (1 - lam) * batch["x"][perm],
                               rtol=1e-12)
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(N, C))
    v = rng.random(N)
    y, p = batch["y"], mixed["pseudo"].numpy()
    options = steps.StepOptions(N, NM)
    losses = steps.per_sample_ce(tf.constant(logits), y)
    got = float(tf.reduce_sum(OBJECTIVE.coefficients(tf.constant(v), mixed, options)
                              * OBJECTIVE.terms(tf.constant(logits), mixed, losses)))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -logp[np.arange(N), y]
    ce_b = -logp[np.arange(N), y[perm]]
    want = np.mean(lam * (ce * v - (1 - v) * (logp * p).sum(1))
                   + (1 - lam) * (ce_b * v[perm] - (1 - v[perm]) * (logp * p[perm]).sum(1)))
    assert got == pytest.approx(want, rel=1e-6)


def _eq6_terms(clf, wnet, batch, meta_batch, options):
    """Eq. 6 for an objective sum_jk C_jk(v) T_jk: d meta / d theta =
    -lr sum_jk (g_meta . grad_w T_jk) dC_jk / dtheta, from per-sample, per-term gradients."""
    tv = [v.value for v in clf.trainable_variables]
    ntv = [v.value for v in clf.non_trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tv)
        logits, _ = clf.stateless_call(tv, ntv, batch["x"], training=True)
        losses = steps.per_sample_ce(logits, batch["y"])
        terms = OBJECTIVE.terms(logits, batch, losses)
        parts = [[terms[j, k] for k in range(4)] for j in range(N)]
    grads = [[tape.gradient(parts[j][k], tv) for k in range(4)] for j in range(N)]
    theta = wnet.trainable_variables
    with tf.GradientTape(persistent=True) as t2:
        v = steps.weigh(wnet, losses, batch["y"])
        coef = OBJECTIVE.coefficients(v, batch, options)
        cparts = [[coef[j, k] for k in range(4)] for j in range(N)]
    dcoef = [[[np.zeros(t.shape) if g is None else g.numpy()
               for g, t in zip(t2.gradient(cparts[j][k], theta), theta)] for k in range(4)]
             for j in range(N)]
    c = coef.numpy()
    w_hat = [w - LR * sum(c[j, k] * grads[j][k][i] for j in range(N) for k in range(4))
             for i, w in enumerate(tv)]
    with tf.GradientTape() as t3:
        t3.watch(w_hat)
        meta_logits, _ = clf.stateless_call(w_hat, ntv, meta_batch["x"], training=True)
        meta_loss = tf.reduce_mean(OBJECTIVE.meta_losses(meta_logits, meta_batch))
    g_meta = t3.gradient(meta_loss, w_hat)
    dots = [[sum(float(tf.reduce_sum(a * b)) for a, b in zip(g_meta, grads[j][k]))
             for k in range(4)] for j in range(N)]
    return [-LR * sum(dots[j][k] * dcoef[j][k][i] for j in range(N) for k in range(4))
            for i in range(len(theta))]


def test_sl_weight_net_gradient_matches_eq6_of_its_objective(float64):
    mixed, meta, _ = _sl_batch()
    clf = build_classifier("tiny", C, (D,), seed=0)
    wnet = build_class_weight_net(np.array([0, 1, 1], np.int32), seed=1)
    options = steps.StepOptions(N, NM)
    expected = _eq6_terms(clf, wnet, mixed, meta, options)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    steps.mwnet_step(clf, wnet, keras.optimizers.SGD(LR), keras.optimizers.SGD(1.0), mixed,
                     meta, options, objective=OBJECTIVE)
    got = np.concatenate([(b - v.numpy()).ravel()
                          for b, v in zip(before, wnet.trainable_variables)])
    flat_e = np.concatenate([e.ravel() for e in expected])
    assert np.linalg.norm(flat_e) > 1e-8
    np.testing.assert_allclose(got, flat_e, rtol=1e-6, atol=1e-12 * np.abs(flat_e).max())


SMALL = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=3,
             batch_size=100, meta_batch_size=50, lr_decay_epochs=(2,), progress_seconds=0.0,
             seed=3, tensorboard_images=False, method="cmwnet_sl", meta_source="selected")


@pytest.mark.e2e
def test_a_run_selects_its_meta_set_by_the_ema_model_and_reports_both_accuracies(
        tmp_path, monkeypatch):
    from mwnet_tf.methods import cmwnet_sl
    from mwnet_tf.training import epoch, meta_set
    seen, selections = [], []
    real = epoch.make_train_dataset
    real_select = meta_set.SelectedMeta.select

    def spy(stage_data, **kwargs):
        seen.append((stage_data, kwargs["with_meta"]))
        return real(stage_data, **kwargs)

    def select(self, model):  # the ranking the selection must follow: the EMA copy's losses
        assert model.name == methods[0].ema.name
        want = lowest_loss_per_class(self.losses(methods[0].ema), self.base.train_y, 10, 10)
        rows = real_select(self, model)
        np.testing.assert_array_equal(rows, want)
        selections.append(rows)
        return rows

    methods = []
    real_init = cmwnet_sl.ClassAwareMetaWeightNetSL.__init__

    def init(self, ctx):
        real_init(self, ctx)
        methods.append(self)

    monkeypatch.setattr(epoch, "make_train_dataset", spy)
    monkeypatch.setattr(meta_set.SelectedMeta, "select", select)
    monkeypatch.setattr(cmwnet_sl.ClassAwareMetaWeightNetSL, "__init__", init)
    config = Config(**dict(SMALL, method_params={"sl_warmup_epochs": 1}))
    results = loop.train_and_evaluate(config, str(tmp_path), log=lambda s: None)
    assert [s["name"] for s in results["stages"]] == ["warm-up", "meta"]
    assert [w for _, w in seen] == [False, True, True]
    assert len(selections) == 2  # at the start of each meta epoch, none in the warm-up
    for (data, _), rows in zip(seen[1:], selections):
        np.testing.assert_array_equal(data.meta_index, data.train_index[rows])
        assert np.all(np.bincount(data.meta_y, minlength=10) == 10)
    assert not np.array_equal(selections[0], selections[1])  # rebuilt each epoch
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta_selection"]["ranked_by"] == "EMA copy of the classifier"
    assert saved["test_accuracy_model"] == "live"
    assert 0 < saved["ema_test_accuracy"] <= 100 and 0 < saved["test_accuracy"] <= 100
    assert saved["ema_test_accuracy"] != saved["test_accuracy"]
    assert np.isfinite(saved["train"]["meta_loss"]) and saved["train"]["meta_loss"] > 0


def test_ema_follows_the_classifier_at_its_decay(tmp_path):
    """After a run, the EMA's trainable variables differ from the live classifier's, and one
    more EMA update moves them by (1 - decay) of the difference."""
    from mwnet_tf.data import load_dataset, make_biased_data
    from mwnet_tf.methods import cmwnet_sl
    from mwnet_tf.methods.base import Context
    data = make_biased_data(load_dataset("digits"), noise="uniform", rate=0.4,
                            meta_per_class=10, seed=0)
    config = Config(**dict(SMALL, method_params={"sl_ema": 0.9}))
    clf = build_classifier("tiny", 10, data.input_shape, seed=0)
    ctx = Context(config=config, data=data, classifier=clf,
                  optimizer=keras.optimizers.SGD(0.1), options=steps.StepOptions(100, 50),
                  new_classifier=lambda s: build_classifier("tiny", 10, data.input_shape,
                                                            seed=s),
                  new_optimizer=lambda kind: keras.optimizers.Adam(1e-3))
    method = cmwnet_sl.ClassAwareMetaWeightNetSL(ctx)
    for e, w in zip(method.ema.weights, clf.weights):  # starts as a copy
        np.testing.assert_array_equal(e.numpy(), w.numpy())
    for w in clf.trainable_variables:
        w.assign(w + 1.0)
    before = [e.numpy() for e in method.ema.trainable_variables]
    method._update_ema()
    for b, e, w in zip(before, method.ema.trainable_variables, clf.trainable_variables):
        np.testing.assert_allclose(e.numpy(), 0.9 * b + 0.1 * w.numpy(), rtol=1e-6)
