"""Exactness of the MW-Net step, checked independently of its nested tapes."""


import keras
import numpy as np
import pytest
import tensorflow as tf
from gradients import per_sample_gradients  # (tests/gradients.py)

from mwnet_tf.methods import optim, steps
from mwnet_tf.models import build_classifier, build_weight_net

N, NM, D, C, LR = 8, 6, 5, 3, 0.3


def _batches(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    batch = {"x": rng.normal(size=(N, D)).astype(dtype), "y": rng.integers(0, C, N),
             "corrupted": rng.random(N) < 0.5}
    meta_batch = {"x": rng.normal(size=(NM, D)).astype(dtype), "y": rng.integers(0, C, NM)}
    return batch, meta_batch


def _models(seed=0):
    clf = build_classifier("tiny", C, (D,), seed=seed)
    wnet = build_weight_net(seed=seed + 1)
    return clf, wnet


def _eq6_meta_gradient(clf, wnet, batch, meta_batch, weight_norm, head_only=False,
                       kept=None):
    """Paper Eq. 6 from per-sample gradients computed one by one.

    d meta_loss / d theta = -lr * sum_j (g_meta . grad_w l_j(w)) * d c_j / d theta, where
    c_j = v_j / n (no normalization) or v_j / sum_k v_k (batch normalization). With
    `head_only`, w is the last layer's kernel and bias alone (the rest stays put in the
    virtual step): `--meta_scope=head`. With `kept` (variable indices), every variable moves
    but only those carry the meta-gradient (Eq. 8 of FaMUS): `--meta_scope=last|sampled`.
    """
    tv, ntv, losses, grads_l = per_sample_gradients(clf, batch)   # N x [w]
    theta = wnet.trainable_variables
    v, dv = [], []
    for j in range(N):
        with tf.GradientTape() as t2:
            vj = wnet(tf.reshape(tf.stop_gradient(losses[j]), (1, 1)))[0, 0]
        v.append(float(vj))
        dv.append([g.numpy() for g in t2.gradient(vj, theta)])
    v = np.array(v)
    if weight_norm == "none":
        coef = v / N
        dcoef = [[g / N for g in dv[j]] for j in range(N)]
    else:
        s = v.sum()
        dsum = [sum(dv[k][i] for k in range(N)) for i in range(len(theta))]
        dcoef = [[dv[j][i] / s - v[j] / s ** 2 * dsum[i] for i in range(len(theta))]
                 for j in range(N)]
        coef = v / s
    moved = set(range(len(tv) - 2, len(tv))) if head_only else set(range(len(tv)))
    w_hat = [w - LR * sum(coef[j] * grads_l[j][i] for j in range(N)) if i in moved else w
             for i, w in enumerate(tv)]
    with tf.GradientTape() as t3:
        t3.watch(w_hat)
        meta_logits, _ = clf.stateless_call(w_hat, ntv, meta_batch["x"], training=True)
        meta_loss = tf.reduce_mean(steps.per_sample_ce(meta_logits, meta_batch["y"]))
    g_meta = t3.gradient(meta_loss, w_hat)
    dots = [sum(float(tf.reduce_sum(g_meta[i] * grads_l[j][i]))
                for i in (moved if kept is None else kept))
            for j in range(N)]
    return [-LR * sum(dots[j] * dcoef[j][i] for j in range(N)) for i in range(len(theta))]


@pytest.mark.parametrize("weight_norm", ["none", "batch"])
def test_weight_net_gradient_matches_eq6(float64, weight_norm):
    clf, wnet = _models()
    batch, meta_batch = _batches()
    expected = _eq6_meta_gradient(clf, wnet, batch, meta_batch, weight_norm)
    # A meta optimizer with lr 1 and no momentum turns the applied update into the gradient.
    opt = keras.optimizers.SGD(LR)
    meta_opt = keras.optimizers.SGD(1.0)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    options = steps.StepOptions(N, NM, weight_norm=weight_norm)
    steps.mwnet_step(clf, wnet, opt, meta_opt, batch, meta_batch, options)
    got = [b - v.numpy() for b, v in zip(before, wnet.trainable_variables)]
    flat_e = np.concatenate([e.ravel() for e in expected])
    flat_g = np.concatenate([g.ravel() for g in got])
    assert np.linalg.norm(flat_e) > 1e-8  # the check is not vacuous
    np.testing.assert_allclose(flat_g, flat_e, rtol=1e-6, atol=1e-12 * np.abs(flat_e).max())


@pytest.mark.parametrize("weight_norm", ["none", "batch"])
def test_head_scope_weight_net_gradient_matches_eq6_on_the_last_layer(float64, weight_norm):
    clf, wnet = _models()
    batch, meta_batch = _batches()
    expected = _eq6_meta_gradient(clf, wnet, batch, meta_batch, weight_norm, head_only=True)
    exact = _eq6_meta_gradient(clf, wnet, batch, meta_batch, weight_norm)
    opt, meta_opt = keras.optimizers.SGD(LR), keras.optimizers.SGD(1.0)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    options = steps.StepOptions(N, NM, weight_norm=weight_norm)
    steps.mwnet_step(clf, wnet, opt, meta_opt, batch, meta_batch, options,
                    head=steps.split_head(clf))
    got = np.concatenate([(b - v.numpy()).ravel()
                          for b, v in zip(before, wnet.trainable_variables)])
    flat_e = np.concatenate([e.ravel() for e in expected])
    flat_exact = np.concatenate([e.ravel() for e in exact])
    assert np.linalg.norm(flat_e) > 1e-8
    assert not np.allclose(flat_e, flat_exact, rtol=1e-3)  # an approximation, not the same
    np.testing.assert_allclose(got, flat_e, rtol=1e-6, atol=1e-12 * np.abs(flat_e).max())


def test_head_scope_needs_a_linear_dense_last_layer():
    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(C, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="last layer is a linear Dense"):
        steps.split_head(model)
    split = steps.split_head(_models()[0])
    assert len(split.variables) == len(_models()[0].trainable_variables)


def _constant_weight_net(value_logit=0.0):
    wnet = build_weight_net(seed=3)
    last = wnet.layers[-1]
    last.kernel.assign(np.zeros(last.kernel.shape))
    last.bias.assign(np.full(last.bias.shape, value_logit))
    return wnet


@pytest.mark.parametrize("scope", ["full", "head", "interval"])
def test_constant_weight_net_gives_plain_cross_entropy_step(scope):
    # full and head: the MW-Net step; interval: the steps between meta updates.
    batch, meta_batch = _batches("float32")
    clf_a, _ = _models(seed=7)
    clf_b, _ = _models(seed=7)
    wnet = _constant_weight_net()
    options = steps.StepOptions(N, NM, weight_norm="batch")
    opt_a = optim.TorchSGD(LR, momentum=0.9, weight_decay=5e-4)
    opt_b = optim.TorchSGD(LR, momentum=0.9, weight_decay=5e-4)
    meta_opt = keras.optimizers.SGD(0.0)  # the weight net stays constant
    theta = [v.numpy().copy() for v in wnet.trainable_variables]
    head = steps.split_head(clf_a) if scope == "head" else None
    for _ in range(2):
        if scope == "interval":
            steps.weighted_step(clf_a, wnet, opt_a, batch, options)
        else:
            steps.mwnet_step(clf_a, wnet, opt_a, meta_opt, batch, meta_batch, options, head=head)
        steps.ce_step(clf_b, opt_b, batch, options)
    for t, v in zip(theta, wnet.trainable_variables):
        np.testing.assert_array_equal(t, v.numpy())
    changed = False
    for a, b, init in zip(clf_a.variables, clf_b.variables, _models(seed=7)[0].variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        changed |= not np.allclose(a.numpy(), init.numpy())
    assert changed


def test_batch_norm_statistics_change_once_per_step():
    batch, meta_batch = _batches("float32")
    clf, wnet = _models(seed=2)
    bn = next(la for la in clf.layers if isinstance(la, keras.layers.BatchNormalization))
    mean_var = bn.moving_mean
    m0 = mean_var.numpy().copy()
    # Expected: one update m = 0.9 m0 + 0.1 * mean of the first forward's pre-BN activations.
    pre_bn = keras.Model(clf.input, bn.input)
    expected = 0.9 * m0 + 0.1 * pre_bn(batch["x"]).numpy().mean(0)
    opt, meta_opt = keras.optimizers.SGD(LR, momentum=0.9), keras.optimizers.Adam(1e-3)
    steps.mwnet_step(clf, wnet, opt, meta_opt, batch, meta_batch,
                    steps.StepOptions(N, NM))
    np.testing.assert_allclose(mean_var.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean_var.numpy(), m0)


def test_step_is_a_tf_function_and_does_not_retrace_on_new_learning_rate():
    batch, meta_batch = _batches("float32")
    clf, wnet = _models()
    sched = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.1, 0.01])
    opt, meta_opt = keras.optimizers.SGD(sched, momentum=0.9), keras.optimizers.Adam(1e-3)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    step = steps.make_train_step(clf, opt, steps.StepOptions(N, NM), weight_net=wnet,
                                meta_optimizer=meta_opt)
    out = [step(batch, meta_batch) for _ in range(3)]
    assert float(opt.learning_rate) == pytest.approx(0.01)
    assert step.experimental_get_tracing_count() == 1
    assert set(out[0]) >= {"loss_sum", "correct", "meta_loss", "weight_sum",
                           "weight_sum_corrupted", "count_corrupted"}
    assert float(out[0]["count_corrupted"]) == float(np.sum(batch["corrupted"]))


@pytest.mark.e2e
def test_xla_compiled_step_matches_the_plain_graph_step():
    batch, meta_batch = _batches("float32")
    results = []
    for jit in (False, True):
        clf, wnet = _models(seed=5)
        opt, meta_opt = keras.optimizers.SGD(LR, momentum=0.9), keras.optimizers.Adam(1e-2)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
        step = steps.make_train_step(clf, opt, steps.StepOptions(N, NM), weight_net=wnet,
                                    meta_optimizer=meta_opt, jit_compile=jit)
        for _ in range(2):
            step(batch, meta_batch)
        results.append([v.numpy() for v in clf.variables + wnet.variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_meta_interval_alternates_meta_and_weighted_steps():
    """Alternating(every=3) over 6 steps, as one loop call, equals the steps called by hand:
    meta, weighted, weighted, meta, weighted, weighted."""
    batch, meta_batch = _batches("float32")
    options = steps.StepOptions(N, NM)
    runs, thetas = [], []
    for by_hand in (False, True):
        clf, wnet = _models(seed=4)
        opt, meta_opt = optim.TorchSGD(LR, momentum=0.9), optim.TorchAdam(1e-2)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
        full = lambda b, mb: steps.mwnet_step(clf, wnet, opt, meta_opt, b, mb, options)  # noqa
        plain = lambda b, mb: steps.weighted_step(clf, wnet, opt, b, options)  # noqa
        if by_hand:
            for i in range(6):
                (full if i % 3 == 0 else plain)(batch, meta_batch)
        else:
            counter = tf.Variable(0, dtype=tf.int64)
            loop = steps.compile_loop(steps.Alternating(full, plain, 3, counter))
            ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(6)
            it = iter(ds)
            for n in (2, 4):  # two calls: the schedule runs on across calls
                loop(it, tf.constant(n))
                thetas.append([v.numpy().copy() for v in wnet.trainable_variables])
            assert int(counter.numpy()) == 6
        runs.append([v.numpy() for v in clf.variables + wnet.variables])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(*thetas))  # step 3 moved it again


def test_alternating_segments_follow_the_counter_across_calls():
    """The host's schedule: a `first` step where the counter is a multiple of `every`, runs of
    `other` steps between, starting from wherever the counter stands (a resumed run)."""
    counter = tf.Variable(0, dtype=tf.int64)
    alt = steps.Alternating(None, None, 4, counter)
    assert alt.segments(10) == [(True, 1), (False, 3), (True, 1), (False, 3), (True, 1),
                                (False, 1)]
    counter.assign(6)
    assert alt.segments(5) == [(False, 2), (True, 1), (False, 2)]
    assert steps.Alternating(None, None, 1, counter).segments(2) == [(True, 1), (True, 1)]


def test_alternating_steps_are_separate_graphs_without_control_flow():
    """`compile_step` of an Alternating step runs `first` then `other` as two functions chosen
    on the host, so neither graph holds the other's ops (no `If` node holding both)."""
    calls = []

    def first(x):
        calls.append("first")  # traced once per function: a Python side effect
        return {"v": x * 2.0}

    def other(x):
        calls.append("other")
        return {"v": x + 1.0}
    counter = tf.Variable(0, dtype=tf.int64)
    step = steps.compile_step(steps.Alternating(first, other, 2, counter))
    got = [float(step(tf.constant(3.0))["v"]) for _ in range(4)]
    assert got == [6.0, 4.0, 6.0, 4.0] and int(counter.numpy()) == 4
    assert sorted(calls) == ["first", "other"]  # each traced once, not both inside a cond


@pytest.mark.parametrize("weight_norm", ["none", "batch"])
def test_weight_net_gradient_matches_eq6_on_a_model_loaded_from_a_keras_file(
        float64, tmp_path, weight_norm):
    """--model=PATH.keras: the exact step on a model the user saved (here a Dense - BN - ReLU
    - Dense net built with plain Keras layers), loaded as the training loop loads it."""
    import types

    from mwnet_tf.training.loop import load_model_file
    inputs = keras.Input((D,))
    x = keras.layers.Dense(7, kernel_initializer=keras.initializers.GlorotUniform(3))(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    outputs = keras.layers.Dense(C, kernel_initializer=keras.initializers.GlorotUniform(4))(x)
    keras.Model(inputs, outputs).save(tmp_path / "net.keras")
    clf = load_model_file(str(tmp_path / "net.keras"),
                          types.SimpleNamespace(input_shape=(D,), num_classes=C))
    assert clf.weights[0].dtype == "float64"
    wnet = build_weight_net(seed=1)
    batch, meta_batch = _batches()
    expected = _eq6_meta_gradient(clf, wnet, batch, meta_batch, weight_norm)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    steps.mwnet_step(clf, wnet, keras.optimizers.SGD(LR), keras.optimizers.SGD(1.0), batch,
                     meta_batch, steps.StepOptions(N, NM, weight_norm=weight_norm))
    got = np.concatenate([(b - v.numpy()).ravel()
                          for b, v in zip(before, wnet.trainable_variables)])
    flat_e = np.concatenate([e.ravel() for e in expected])
    assert np.linalg.norm(flat_e) > 1e-8
    np.testing.assert_allclose(got, flat_e, rtol=1e-6, atol=1e-12 * np.abs(flat_e).max())
