"""Model structure: parameter counts of the published architectures, batch norm, seeding, inits."""

import keras
import numpy as np
import pytest

from mwnet_tf.models import MODELS, build_classifier, build_weight_net
from mwnet_tf.models.resnet import SubsamplePad

SHAPES = {"resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3), "resnet50": (64, 64, 3),
          "mlp": (8, 8, 1), "cnn": (28, 28, 1), "tiny": (5,)}


def _count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def _batch_norms(model):
    return [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]


def _kernels(model, cls):
    return [la.kernel.numpy() for la in model.layers if isinstance(la, cls)]


@pytest.fixture(scope="module")
def wrn():
    return build_classifier("wrn28_10", 10, (32, 32, 3), synchronized_bn=True, seed=0)


@pytest.fixture(scope="module")
def resnet50():
    return build_classifier("resnet50", 14, (64, 64, 3), synchronized_bn=True, seed=0)


@pytest.mark.parametrize("name, classes, count", [
    # He et al.'s CIFAR ResNet-32 with option-A shortcuts (full size: seconds to build)
    pytest.param("resnet32", 10, 464_154, marks=pytest.mark.e2e),
    pytest.param("resnet32", 100, 470_004, marks=pytest.mark.e2e),
    ("mlp", 10, 19_722),        # 64*256+256 + 2*256 (BN) + 256*10+10
    ("cnn", 10, 56_554),
    ("tiny", 3, 48 + 16 + 27),  # 5*8+8, BN 2*8, 8*3+3
])
def test_parameter_counts_of_small_models(name, classes, count):
    assert _count(build_classifier(name, classes, SHAPES[name]).trainable_variables) == count


@pytest.mark.e2e
def test_wrn28_10_has_the_pytorch_parameter_count_and_synchronized_pytorch_bn(wrn):
    assert _count(wrn.trainable_variables) == 36_479_194
    bns = _batch_norms(wrn)
    assert len(bns) == 25  # 2 per block (12 blocks) + the final one
    assert all(b.momentum == 0.9 and b.epsilon == 1e-5 and b.synchronized for b in bns)


@pytest.mark.e2e
def test_resnet50_count_batch_norm_and_seeded_initializers(resnet50):
    # Keras' backbone (convs with biases) + a 2048 -> 14 head.
    assert _count(resnet50.trainable_variables) == 23_534_592 + 2048 * 14 + 14
    bns = _batch_norms(resnet50)
    assert len(bns) == 53
    assert all(b.momentum == 0.9 and b.epsilon == 1e-5 and b.synchronized for b in bns)
    convs = [la for la in resnet50.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 53 and all(c.kernel_initializer.seed is not None for c in convs)
    assert resnet50.output.shape == (None, 14)


@pytest.mark.parametrize("name", [pytest.param("resnet32", marks=pytest.mark.e2e), "mlp", "cnn",
                                  "tiny"])
def test_batch_norm_matches_pytorch_and_synchronizes_on_request(name):
    for sync in (False, True):
        bns = _batch_norms(build_classifier(name, 10, SHAPES[name], synchronized_bn=sync))
        assert bns and all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)
        assert all(b.synchronized == sync for b in bns)


def test_option_a_shortcut_has_no_parameters():
    model = build_classifier("resnet32", 10, (32, 32, 3))
    shortcuts = [la for la in model.layers if isinstance(la, SubsamplePad)]
    assert len(shortcuts) == 2 and not any(la.weights for la in shortcuts)
    # Stem conv + 30 3x3 convs + 31 BN + linear: nothing left over for the shortcuts.
    convs = 3 * 3 * 3 * 16 + sum(9 * c_in * c + 9 * c * c + 9 * c * c * 8 for c_in, c in
                                 ((16, 16), (16, 32), (32, 64)))
    bns = 2 * (16 + 10 * 16 + 10 * 32 + 10 * 64)
    assert _count(model.trainable_variables) == convs + bns + 64 * 10 + 10


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    model = build_classifier("resnet32", 10, (32, 32, 3))
    shortcut = [la for la in model.layers if isinstance(la, SubsamplePad)][0]
    x = np.arange(2 * 32 * 32 * 16, dtype="float32").reshape(2, 32, 32, 16)
    y = np.asarray(shortcut(x))
    assert y.shape == (2, 16, 16, 32)
    np.testing.assert_array_equal(y[..., 8:24], x[:, ::2, ::2, :])
    assert not y[..., :8].any() and not y[..., 24:].any()


@pytest.mark.e2e
def test_kaiming_normal_inits_as_in_the_authors_code(wrn):
    resnet = build_classifier("resnet32", 10, (32, 32, 3), seed=0)
    # ResNet-32: convs and the linear kernel kaiming normal with fan in.
    for k in _kernels(resnet, keras.layers.Conv2D) + _kernels(resnet, keras.layers.Dense):
        fan_in = np.prod(k.shape[:-1])
        assert abs(k.std() / np.sqrt(2 / fan_in) - 1) < 0.15
    # WRN: convs kaiming normal with fan out, linear bias zero.
    for k in _kernels(wrn, keras.layers.Conv2D)[:4]:
        fan_out = np.prod(k.shape[:2]) * k.shape[-1]
        assert abs(k.std() / np.sqrt(2 / fan_out) - 1) < 0.15
    assert not wrn.layers[-1].bias.numpy().any()


def test_weight_net_is_1_100_1_with_torch_linear_init_and_sigmoid_output():
    net = build_weight_net(seed=0)
    assert _count(net.trainable_variables) == 301
    k1, b1, k2, b2 = (v.numpy() for v in net.trainable_variables)
    assert k1.shape == (1, 100) and k2.shape == (100, 1)
    assert np.abs(k1).max() <= 1 and np.abs(b1).max() <= 1 and np.abs(k1).max() > 0.9
    assert np.abs(k2).max() <= 0.1 and np.abs(b2).max() <= 0.1
    out = net(np.linspace(0, 20, 50, dtype="float32")[:, None]).numpy()
    assert out.shape == (50, 1) and np.all((out > 0) & (out < 1))


@pytest.mark.e2e
@pytest.mark.parametrize("build", [
    lambda s: build_classifier("resnet32", 10, (32, 32, 3), seed=s),
    lambda s: build_classifier("cnn", 10, (28, 28, 1), seed=s),
    lambda s: build_weight_net(seed=s),
])
def test_same_seed_same_weights_different_seed_different_weights(build):
    a, b, c = build(1), build(1), build(2)
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert any(not np.array_equal(va.numpy(), vc.numpy())
               for va, vc in zip(a.weights, c.weights))


def test_stateless_call_in_training_mode_reaches_batch_norm():
    model = build_classifier("resnet32", 10, (32, 32, 3), seed=0)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    assert len(ntv) == 2 * 31  # moving mean and variance of every BN
    _, trained = model.stateless_call(tv, ntv, x, training=True)
    _, inferred = model.stateless_call(tv, ntv, x, training=False)
    assert all(not np.allclose(a, b) for a, b in zip(ntv, trained))
    assert all(np.array_equal(a, b) for a, b in zip(ntv, inferred))


def test_models_follow_set_floatx_whatever_dtype_policy_keras_has_fixed():
    build_weight_net()  # Keras has fixed its global (float32) dtype policy by now
    keras.config.set_floatx("float64")
    try:
        model, wnet = build_classifier("tiny", 3, (5,), seed=0), build_weight_net(seed=0)
        x = np.random.default_rng(0).normal(size=(6, 5))
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        logits, new_ntv = model.stateless_call(tv, ntv, x, training=True)
        weights = wnet(np.ones((6, 1)))
        keras.config.set_dtype_policy("float64")  # a policy fixed while floatx was float64
    finally:
        keras.config.set_floatx("float32")
    try:
        later = build_classifier("mlp", 3, (5,))
    finally:
        keras.config.set_dtype_policy("float32")
    assert all(v.dtype == "float64" for v in model.weights + wnet.weights)
    assert logits.dtype == "float64" and logits.shape == (6, 3)
    assert all(v.dtype == "float64" for v in new_ntv) and weights.dtype == "float64"
    assert all(v.dtype == "float32" for v in later.weights)


def test_every_model_builds_and_outputs_logits(wrn, resnet50):
    for name in MODELS:
        if name in ("wrn28_10", "resnet50"):
            continue  # built by the fixtures; their forward is slow on 2 CPU cores
        shape = SHAPES[name]
        out = build_classifier(name, 7, shape)(np.ones((2, *shape), "float32"), training=False)
        assert out.shape == (2, 7)
        # Logits, not probabilities: rows do not sum to 1.
        assert not np.allclose(np.sum(out, axis=1), 1.0)
    assert wrn(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown model"):
        build_classifier("vgg", 10, (32, 32, 3))


def test_every_models_builder_is_found_from_its_declaration():
    from mwnet_tf import config, models
    for name in config.MODELS:
        assert callable(models.builder(name)), name
    assert models.builder("cnn").__name__ == "cnn"


@pytest.mark.e2e
def test_resnet32_saves_and_loads_in_keras_safe_mode(tmp_path):
    # The option-A shortcut is a registered layer, not a Lambda: a saved classifier loads
    # without running Python code from the file.
    model = build_classifier("resnet32", 10, (32, 32, 3), seed=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
