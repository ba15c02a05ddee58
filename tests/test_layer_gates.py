"""`--meta_scope=last|sampled` (`mwnet_tf.methods.layer_gates`): their limiting cases are the
exact step, their meta-gradient is Eq. 6 summed over the variables they keep, and FaMUS's
sampler and auxiliary losses behave as its code has them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_steps import LR, NM, N, _batches, _eq6_meta_gradient, _models

from mwnet_tf.methods import layer_gates, steps
from mwnet_tf.models import build_class_weight_net


def _step(gates_of, weight_norm="batch", seed=0, class_aware=False):
    """One MW-Net step with the gates `gates_of(clf)` (None: exact); returns the weight net's
    update (as a gradient: SGD 1.0), the classifier's variables after, and the step's sums.
    `class_aware`: CMW-Net's weight net (a head per class group) in place of MW-Net's."""
    clf, wnet = _models(seed)
    if class_aware:
        wnet = build_class_weight_net(np.array([0, 1, 1], np.int32), seed=seed + 1)
    batch, meta_batch = _batches()
    gates = gates_of(clf)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    out = steps.mwnet_step(clf, wnet, keras.optimizers.SGD(LR), keras.optimizers.SGD(1.0),
                           batch, meta_batch, steps.StepOptions(N, NM, weight_norm=weight_norm),
                           gates=gates)
    update = np.concatenate([(b - v.numpy()).ravel()
                             for b, v in zip(before, wnet.trainable_variables)])
    return update, [v.numpy() for v in clf.variables], out, gates


def _forced(clf, open_gates: bool, n=100, match=0.0):
    """Sampled gates whose samplers always draw `open_gates` (a logit gap no Gumbel noise
    can overturn), with the gradient match weighted by `match`."""
    gates = layer_gates.SampledGates(clf.trainable_variables, n, match_factor=match, seed=1)
    for s in gates.samplers:
        last = s.layers[-1]
        last.kernel.assign(np.zeros(last.kernel.shape))
        last.bias.assign([-1e4, 1e4] if open_gates else [1e4, -1e4])
    return gates


@pytest.mark.parametrize("make", [lambda clf: layer_gates.LastGates(100),
                                  lambda clf: _forced(clf, True)], ids=["last", "sampled"])
def test_all_variables_kept_is_the_exact_step(float64, make):
    """Every variable a candidate and kept (`last` with N at least the variable count;
    `sampled` with every gate open and no gradient match): the exact step, to float64
    rounding."""
    exact, clf_exact, _, _ = _step(lambda clf: None)
    got, clf_got, out, _ = _step(make)
    assert np.linalg.norm(exact) > 1e-8
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-15)
    for a, b in zip(clf_got, clf_exact):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert float(out["meta_layers"]) == len(_models()[0].trainable_variables)


def test_gates_combine_with_cmwnets_class_aware_net(float64):
    """CMW-Net's step (its class-aware net, `batch_detached`) takes the gates too: every gate
    open is its exact step; `last` with N = 2 is another step."""
    exact, _, _, _ = _step(lambda clf: None, "batch_detached", class_aware=True)
    opened, _, _, _ = _step(lambda clf: _forced(clf, True), "batch_detached", class_aware=True)
    last2, _, _, _ = _step(lambda clf: layer_gates.LastGates(2), "batch_detached",
                           class_aware=True)
    np.testing.assert_allclose(opened, exact, rtol=1e-12, atol=1e-15)
    assert not np.allclose(last2, exact, rtol=1e-3)


@pytest.mark.parametrize("n", [2, 3])
def test_last_scope_meta_gradient_is_eq6_over_the_kept_variables(float64, n):
    clf, wnet = _models()
    batch, meta_batch = _batches()
    total = len(clf.trainable_variables)
    expected = np.concatenate([e.ravel() for e in _eq6_meta_gradient(
        clf, wnet, batch, meta_batch, "batch", kept=set(range(total - n, total)))])
    exact = np.concatenate([e.ravel() for e in _eq6_meta_gradient(
        clf, wnet, batch, meta_batch, "batch")])
    got, _, out, _ = _step(lambda clf: layer_gates.LastGates(n))
    assert not np.allclose(expected, exact, rtol=1e-3)  # an approximation, not the same
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12 * np.abs(expected).max())
    assert float(out["meta_layers"]) == n


def test_closed_gates_keep_the_output_layer_alone(float64):
    """Every sampler closed: only the output layer's kernel and bias carry the meta-gradient,
    as `last` with N = 2; the virtual step still moved every variable (the classifier ends
    where the exact step leaves it: the real step does not depend on the gates)."""
    closed, clf_closed, out, _ = _step(lambda clf: _forced(clf, False))
    last2, _, _, _ = _step(lambda clf: layer_gates.LastGates(2))
    np.testing.assert_allclose(closed, last2, rtol=1e-12, atol=1e-15)
    assert float(out["meta_layers"]) == 2


def test_samplers_learn_from_the_meta_loss_and_the_count_regularizer(float64):
    """The straight-through draws pass the meta loss's and the count regularizer's gradient to
    the samplers; the count regularizer is (open gates - K)^2."""
    _, _, _, gates = _step(lambda clf: layer_gates.SampledGates(clf.trainable_variables, 100,
                                                                seed=3))
    clf, _ = _models()
    fresh = layer_gates.SampledGates(clf.trainable_variables, 100, seed=3)
    moved = [not np.allclose(a.numpy(), b.numpy())
             for a, b in zip(gates.variables, fresh.variables)]
    assert any(moved)
    grads = [tf.ones_like(v) for v in clf.trainable_variables]
    _, opened, count = fresh.apply(grads, tf.constant(0, tf.int64))
    sampled = float(opened) - 2
    assert 0 <= sampled <= len(fresh.samplers)
    assert float(count) == pytest.approx((sampled - 4.0) ** 2)


def test_draws_are_seeded_by_the_step():
    """The same step draws the same gates (every replica, a resumed run); the draws change
    from step to step."""
    clf, _ = _models()
    gates = layer_gates.SampledGates(clf.trainable_variables, 100, seed=5)
    logits = tf.zeros((1, 2))
    draws = [float(gates._draw(logits, tf.constant(s, tf.int64), 0)) for s in range(40)]
    again = [float(gates._draw(logits, tf.constant(s, tf.int64), 0)) for s in range(40)]
    assert draws == again and set(draws) == {0.0, 1.0}


def test_gradient_match_is_famus_per_output_unit_moments():
    """Per output unit (a Dense kernel's column, PyTorch's weight row) the squared differences
    of mean and unbiased std, averaged over units; a vector is one unit."""
    rng = np.random.default_rng(0)
    kt, km = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    bt, bm = rng.normal(size=3), rng.normal(size=3)
    got = float(layer_gates.gradient_match([tf.constant(kt), tf.constant(bt)],
                                           [tf.constant(km), tf.constant(bm)]))
    rows = np.mean((kt.mean(0) - km.mean(0)) ** 2 + (kt.std(0, ddof=1) - km.std(0, ddof=1)) ** 2)
    vec = (bt.mean() - bm.mean()) ** 2 + (bt.std(ddof=1) - bm.std(ddof=1)) ** 2
    assert got == pytest.approx(rows + vec, rel=1e-6)


def test_samplers_read_the_gradient_summed_over_all_but_the_output_axis():
    clf, _ = _models()
    gates = layer_gates.SampledGates(clf.trainable_variables, 100)
    widths = [s.inputs[0].shape[-1] for s in gates.samplers]
    assert widths == [int(v.shape[-1]) for v in clf.trainable_variables[:-2]]
    x = layer_gates._reduced(tf.constant(np.arange(12.0).reshape(3, 4)))
    np.testing.assert_allclose(x.numpy().std(ddof=1), 1.0, rtol=1e-6)
    assert x.shape == (1, 4)


@pytest.mark.e2e
def test_sampled_every_other_step_resumed_inside_an_epoch_ends_bitwise_equal(tmp_path):
    """`--meta_scope=sampled --meta_interval=2`, stopped inside epoch 2 and resumed: the
    samplers, their optimizer and the step counter come back from the checkpoint, so the run
    ends where the uninterrupted one ends, the samplers' variables included."""
    from test_cmwnet import SMALL, _stop_at

    from mwnet_tf.config import Config
    from mwnet_tf.errors import Interrupted
    from mwnet_tf.training import loop

    config = Config(**dict(SMALL, method="mwnet", steps_per_call=2, deterministic=True,
                           method_params={"meta_scope": "sampled", "meta_interval": 2}))
    full = loop.train_and_evaluate(config, str(tmp_path / "full"), log=lambda s: None)
    with pytest.raises(Interrupted):  # 11 steps an epoch, calls of 2: poll 8 is in epoch 2
        loop.train_and_evaluate(config, str(tmp_path / "cut"), log=lambda s: None,
                                stop_requested=_stop_at(8))
    resumed = loop.train_and_evaluate(config, str(tmp_path / "cut"), log=lambda s: None)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["train"] == full["train"] and resumed["weight_curve"] == full["weight_curve"]
    a = tf.train.load_checkpoint(str(tmp_path / "full" / "checkpoints"))
    b = tf.train.load_checkpoint(str(tmp_path / "cut" / "checkpoints"))
    names = [n for n in a.get_variable_to_shape_map()
             if "save_counter" not in n and n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert any("sampler" in n or "gates" in n for n in names), names
    for n in names:
        np.testing.assert_array_equal(a.get_tensor(n), b.get_tensor(n), err_msg=n)
