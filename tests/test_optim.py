"""TorchSGD / TorchAdam against NumPy transcriptions of torch.optim.SGD / Adam, in float64."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.methods.optim import TorchAdam, TorchSGD

SHAPES = [(2, 3), (3,)]
STEPS, BOUNDARY = 10, 4  # steps 0..4 use LRS[0], steps 5..9 LRS[1]
LRS = (0.1, 0.01)
WD = 0.05


# --- NumPy transcriptions of torch.optim (plain float64) ---------------------------------------

def lr_at(step, lrs=LRS, boundary=BOUNDARY):
    """PiecewiseConstantDecay's rate for 0-based step `step`."""
    return lrs[0] if step <= boundary else lrs[1]


def torch_sgd_reference(w0, grads, lrs, momentum, nesterov, weight_decay):
    """torch.optim.SGD (dampening 0) on one parameter; `grads[k]`, `lrs[k]` for step k."""
    w, buf = w0.copy(), None
    for g, lr in zip(grads, lrs):
        d_p = g + weight_decay * w
        if momentum != 0:
            buf = d_p.copy() if buf is None else momentum * buf + d_p
            d_p = d_p + momentum * buf if nesterov else buf
        w = w - lr * d_p
    return w


def torch_adam_reference(w0, grads, lrs, beta_1=0.9, beta_2=0.999, eps=1e-8, weight_decay=0.0,
                         amsgrad=False):
    """torch.optim.Adam on one parameter (with amsgrad: `max_exp_avg_sq = max(max_exp_avg_sq,
    exp_avg_sq)` in the denominator, torch's `_single_tensor_adam`)."""
    w = w0.copy()
    m, v, v_max = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for step, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g + weight_decay * w
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        bias_correction1 = 1 - beta_1 ** step
        bias_correction2 = 1 - beta_2 ** step
        if amsgrad:
            v_max = np.maximum(v_max, v)
        denom = np.sqrt(v_max if amsgrad else v) / np.sqrt(bias_correction2) + eps
        w = w - (lr / bias_correction1) * (m / denom)
    return w


# --- helpers -----------------------------------------------------------------------------------

def schedule(lrs=LRS, boundary=BOUNDARY):
    # np.float64 values: Python floats would make the schedule return float32 rates.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [boundary], [np.float64(x) for x in lrs])


def problem(seed=0, steps=STEPS, scale=1.0):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    grads = [[scale * rng.normal(size=s) for s in SHAPES] for _ in range(steps)]
    return w0, grads


def run(opt, w0, grads, mode="eager"):
    """Applies `grads` (one list per step) with `opt` to fresh float64 variables from `w0`."""
    variables = [keras.Variable(w, dtype="float64") for w in w0]
    opt.build(variables)
    if mode == "eager":
        apply = opt.apply
    else:
        apply = tf.function(lambda g: opt.apply(g, variables), jit_compile=mode == "xla")
    for g in grads:
        if mode == "eager":
            apply([tf.constant(x) for x in g], variables)
        else:
            apply([tf.constant(x) for x in g])
    return [v.numpy() for v in variables]


def rel_err(got, want, base):
    """Max |got - want| relative to the size of the displacement `want - base`."""
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b - c)))
               for a, b, c in zip(got, want, base))


def reference(fn, w0, grads, **kw):
    lrs = [lr_at(k) for k in range(len(grads))]
    return [fn(w, [g[i] for g in grads], lrs, **kw) for i, w in enumerate(w0)]


# --- exactness against the torch rules ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.0, False)])
def test_torch_sgd_matches_torch_rule_across_lr_decay(float64, momentum, nesterov, mode):
    w0, grads = problem(seed=1)
    opt = TorchSGD(schedule(), momentum=momentum, nesterov=nesterov, weight_decay=WD)
    got = run(opt, w0, grads, mode)
    want = reference(torch_sgd_reference, w0, grads, momentum=momentum, nesterov=nesterov,
                     weight_decay=WD)
    assert rel_err(got, want, w0) < 1e-12
    assert int(opt.iterations.numpy()) == STEPS
    lr = opt.learning_rate
    assert tf.is_tensor(lr) and lr.dtype == tf.float64
    assert float(lr) == LRS[1]


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_torch_adam_matches_torch_rule_across_lr_decay(float64, mode):
    w0, grads = problem(seed=2)
    opt = TorchAdam(schedule(), beta_1=0.8, beta_2=0.99, epsilon=1e-8, weight_decay=WD)
    got = run(opt, w0, grads, mode)
    want = reference(torch_adam_reference, w0, grads, beta_1=0.8, beta_2=0.99, eps=1e-8,
                     weight_decay=WD)
    assert rel_err(got, want, w0) < 1e-12
    assert float(opt.learning_rate) == LRS[1]


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_torch_adam_amsgrad_matches_torch_rule_across_lr_decay(float64, mode):
    # gradients that shrink after step 3: v falls below its running maximum, where amsgrad
    # and plain Adam part
    w0, grads = problem(seed=6)
    grads = [[g * (1.0 if k < 3 else 0.05) for g in step] for k, step in enumerate(grads)]
    opt = TorchAdam(schedule(), beta_1=0.8, beta_2=0.9, weight_decay=WD, amsgrad=True)
    got = run(opt, w0, grads, mode)
    want = reference(torch_adam_reference, w0, grads, beta_1=0.8, beta_2=0.9,
                     weight_decay=WD, amsgrad=True)
    assert rel_err(got, want, w0) < 1e-12
    plain = reference(torch_adam_reference, w0, grads, beta_1=0.8, beta_2=0.9,
                      weight_decay=WD)
    assert rel_err(plain, want, w0) > 1e-3  # the rule made a difference
    assert opt.get_config()["amsgrad"] is True


def test_weight_decay_is_coupled_and_not_keras_decoupled(float64):
    # One SGD step without momentum, zero gradient: w <- w - lr * wd * w, whatever Keras does.
    opt = TorchSGD(0.5, weight_decay=0.1)
    assert opt.weight_decay is None and opt.coupled_weight_decay == 0.1
    (w,) = run(opt, [np.array([2.0])], [[np.array([0.0])]])
    assert w[0] == pytest.approx(2.0 - 0.5 * 0.1 * 2.0, rel=1e-15)
    # Adam: coupled decay goes through the moments, so a zero gradient still moves w by ~lr.
    opt = TorchAdam(0.01, weight_decay=0.1)
    (w,) = run(opt, [np.array([2.0])], [[np.array([0.0])]])
    assert w[0] == pytest.approx(2.0 - 0.01, rel=1e-6)


# --- why: Keras' own optimizers depart from torch ----------------------------------------------

def test_keras_sgd_departs_from_torch_after_lr_decay_torch_sgd_does_not(float64):
    w0, grads = problem(seed=3)
    want = reference(torch_sgd_reference, w0, grads, momentum=0.9, nesterov=False,
                     weight_decay=0.0)
    ours = run(TorchSGD(schedule(), momentum=0.9), w0, grads)
    assert rel_err(ours, want, w0) < 1e-12

    # Before the decay Keras' SGD is the same rule (its velocity = -lr * torch's buffer), up to
    # its momentum 0.9 passing through float32 (`ops.cast` of a Python float).
    before = BOUNDARY + 1
    want_before = [torch_sgd_reference(w, [g[i] for g in grads[:before]], [LRS[0]] * before,
                                       0.9, False, 0.0) for i, w in enumerate(w0)]
    keras_before = run(keras.optimizers.SGD(schedule(), momentum=0.9), w0, grads[:before])
    assert rel_err(keras_before, want_before, w0) < 1e-6
    # After it, Keras' velocity still carries the old rate.
    keras_sgd = run(keras.optimizers.SGD(schedule(), momentum=0.9), w0, grads)
    assert rel_err(keras_sgd, want, w0) > 0.1


def test_keras_adam_departs_from_torch_on_tiny_gradients_torch_adam_does_not(float64):
    w0, grads = problem(seed=4, scale=1e-8)
    lr = 1e-3
    lrs = [lr] * STEPS
    want = [torch_adam_reference(w, [g[i] for g in grads], lrs) for i, w in enumerate(w0)]
    ours = run(TorchAdam(lr), w0, grads)
    assert rel_err(ours, want, w0) < 1e-12
    for epsilon in (1e-7, 1e-8):  # Keras' default, and torch's value in Keras' place
        keras_adam = run(keras.optimizers.Adam(lr, epsilon=epsilon), w0, grads)
        assert rel_err(keras_adam, want, w0) > 0.3


# --- state: checkpoints, config, tracing --------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: TorchSGD(schedule(boundary=3), momentum=0.9, nesterov=True, weight_decay=WD),
    "adam": lambda: TorchAdam(schedule(boundary=3), weight_decay=WD),
    "adam_amsgrad": lambda: TorchAdam(schedule(boundary=3), weight_decay=WD, amsgrad=True),
}


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_checkpoint_round_trip_restores_optimizer_state(float64, kind, tmp_path):
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(4,))
    grads = [tf.constant(rng.normal(size=(4,))) for _ in range(6)]

    var = keras.Variable(w0, dtype="float64")
    opt = OPTIMIZERS[kind]()
    opt.build([var])
    for g in grads[:3]:
        opt.apply([g], [var])
    path = tf.train.Checkpoint(optimizer=opt, var=var).save(str(tmp_path / "ckpt"))
    for g in grads[3:]:
        opt.apply([g], [var])

    var2 = keras.Variable(np.zeros(4), dtype="float64")
    opt2 = OPTIMIZERS[kind]()
    opt2.build([var2])
    tf.train.Checkpoint(optimizer=opt2, var=var2).restore(path).assert_consumed()
    assert int(opt2.iterations.numpy()) == 3
    assert any(np.any(v.numpy() != 0) for v in opt2.variables if v.dtype == "float64")
    for g in grads[3:]:
        opt2.apply([g], [var2])
    np.testing.assert_array_equal(var2.numpy(), var.numpy())
    for a, b in zip(opt.variables, opt2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_get_config_round_trips(float64, kind):
    opt = OPTIMIZERS[kind]()
    config = opt.get_config()
    assert config["weight_decay"] == WD
    if kind == "sgd":
        assert (config["momentum"], config["nesterov"]) == (0.9, True)
    else:
        assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (0.9, 0.999, 1e-8)
    clone = type(opt).from_config(dict(config))  # from_config replaces the schedule's dict
    assert clone.get_config() == config
    assert clone.coupled_weight_decay == WD and clone.weight_decay is None
    w0, grads = problem(seed=6, steps=6)
    for a, b in zip(run(clone, w0, grads), run(OPTIMIZERS[kind](), w0, grads)):
        np.testing.assert_array_equal(a, b)


def test_scheduled_lr_read_in_tf_function_does_not_retrace(float64):
    var = keras.Variable(np.ones(3), dtype="float64")
    opt = TorchSGD(schedule(boundary=2), momentum=0.9)
    opt.build([var])

    @tf.function
    def step(g):
        lr = opt.learning_rate  # what the MW-Net step reads
        opt.apply([g], [var])
        return lr

    rates = [float(step(tf.constant(np.ones(3)))) for _ in range(5)]
    assert rates == [LRS[0]] * 3 + [LRS[1]] * 2
    assert step.experimental_get_tracing_count() == 1


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        TorchSGD(0.1, nesterov=True)
    with pytest.raises(ValueError):
        TorchSGD(0.1, momentum=-0.1)
    with pytest.raises(ValueError):
        TorchAdam(0.1, beta_1=1.0)
    with pytest.raises(ValueError):
        TorchAdam(0.1, weight_decay=-1.0)


# The two-replica MirroredStrategy check of these rules is in test_mirrored.py.
