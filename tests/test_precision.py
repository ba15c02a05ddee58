"""Mixed precision (`--mixed_precision`): what stays float32, the meta-gradient against float32,
and float16's loss scaling (skipped overflow steps)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.config import Config
from mwnet_tf.methods import optim, precision, steps
from mwnet_tf.models import build_classifier, build_weight_net

N, C, SHAPE = 32, 4, (6,)
# bfloat16 keeps 8 bits of mantissa (about 2-3 decimal digits): the weight net's meta-gradient
# of one step, computed through a bfloat16 classifier, agrees with float32's to this relative
# error (measured on this MLP: 1.0e-3 for bfloat16, 6e-5 for float16 with 11 bits, loss-scaled;
# the bounds leave a factor of 10).
TOLERANCE = {"bfloat16": 1e-2, "float16": 1e-3}


def _batch(seed):
    rng = np.random.default_rng(seed)
    return {"x": tf.constant(rng.normal(size=(N, *SHAPE)).astype("float32")),
            "y": tf.constant(rng.integers(0, C, N).astype("int32"))}


def _one_meta_step(mode, model="mlp"):
    """The weight net's change after one MW-Net step (plain SGD, lr 1: minus its gradient), the
    classifier and weight net, and the per-sample losses' dtype."""
    with precision.policy(mode):
        clf = build_classifier(model, C, SHAPE, seed=0)
    wnet = build_weight_net(seed=1)
    opt = precision.wrap(optim.TorchSGD(0.1, momentum=0.9), mode)
    meta_opt = precision.wrap(optim.TorchSGD(1.0), mode)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    step = tf.function(lambda b, mb: steps.mwnet_step(clf, wnet, opt, meta_opt, b, mb,
                                                     steps.StepOptions(N, N)))
    out = step(_batch(0), _batch(1))
    delta = np.concatenate([(v.numpy() - b).ravel()
                            for v, b in zip(wnet.trainable_variables, before)])
    return delta, clf, wnet, out


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["bfloat16", "float16"])
def test_meta_gradient_agrees_with_float32(mode):
    exact, *_ = _one_meta_step("none")
    low, clf, wnet, out = _one_meta_step(mode)
    assert np.linalg.norm(exact) > 0
    rel = np.linalg.norm(low - exact) / np.linalg.norm(exact)
    assert rel < TOLERANCE[mode], rel
    # the low precision really ran: the hidden layer computes in it, the output in float32
    assert clf.layers[1].compute_dtype == mode
    assert clf.layers[-1].compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in clf.trainable_variables)
    assert all(v.dtype == "float32" for v in wnet.trainable_variables)
    assert wnet.layers[-1].compute_dtype == "float32"
    assert out["loss_sum"].dtype == tf.float32 and out["meta_loss"].dtype == tf.float32


def test_float16_overflow_is_skipped_and_the_scale_lowered():
    """A loss scale so large that the scaled gradients overflow float16: both networks keep
    their weights, both scales are halved, the step reports a meta loss of 0, not NaN."""
    with precision.policy("float16"):
        clf = build_classifier("mlp", C, SHAPE, seed=0)
    wnet = build_weight_net(seed=1)
    opt = keras.optimizers.LossScaleOptimizer(optim.TorchSGD(0.1, momentum=0.9),
                                              initial_scale=2.0 ** 120)
    meta_opt = keras.optimizers.LossScaleOptimizer(optim.TorchSGD(1.0), initial_scale=2.0 ** 120)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    c0 = [v.numpy().copy() for v in clf.trainable_variables]
    w0 = [v.numpy().copy() for v in wnet.trainable_variables]
    out = steps.mwnet_step(clf, wnet, opt, meta_opt, _batch(0), _batch(1), steps.StepOptions(N, N))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(c0, clf.trainable_variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(w0, wnet.trainable_variables))
    assert float(opt.dynamic_scale) == 2.0 ** 119 and float(meta_opt.dynamic_scale) == 2.0 ** 119
    assert float(out["meta_loss"]) == 0.0 and np.isfinite(float(out["loss_sum"]))
    # a sane scale: the same step moves both networks
    opt.dynamic_scale.assign(2.0 ** 10)
    meta_opt.dynamic_scale.assign(2.0 ** 10)
    steps.mwnet_step(clf, wnet, opt, meta_opt, _batch(0), _batch(1), steps.StepOptions(N, N))
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(w0, wnet.trainable_variables))
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(c0, clf.trainable_variables))


def test_head_scope_and_weighted_step_run_in_bfloat16():
    with precision.policy("bfloat16"):
        clf = build_classifier("mlp", C, SHAPE, seed=0)
    wnet = build_weight_net(seed=1)
    opt, meta_opt = optim.TorchSGD(0.1, momentum=0.9), optim.TorchAdam(1e-3)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    w0 = [v.numpy().copy() for v in wnet.trainable_variables]
    out = steps.mwnet_step(clf, wnet, opt, meta_opt, _batch(0), _batch(1), steps.StepOptions(N, N),
                          head=steps.split_head(clf))
    assert np.isfinite(float(out["meta_loss"]))
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(w0, wnet.trainable_variables))
    out = steps.weighted_step(clf, wnet, opt, _batch(2), steps.StepOptions(N, N))
    assert out["loss_sum"].dtype == tf.float32


def test_float16_only_for_methods_with_loss_scaling():
    Config(method="mwnet", mixed_precision="float16")
    Config(method="l2rw", mixed_precision="bfloat16")
    with pytest.raises(ValueError, match="float16 .*bfloat16 with --method=l2rw"):
        Config(method="l2rw", mixed_precision="float16")
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        Config(mixed_precision="half")
