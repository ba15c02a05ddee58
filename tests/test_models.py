"""Model structure: parameter counts of the published architectures, batch norm, seeding."""

import keras
import numpy as np
import pytest

from mwnet_tf.models import MODELS, build_classifier, build_weight_net


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize("name, shape, classes, count", [
    ("resnet32", (32, 32, 3), 10, 464_154),       # He et al.'s CIFAR ResNet-32, option A
    ("resnet32", (32, 32, 3), 100, 470_004),
    ("wrn28_10", (32, 32, 3), 10, 36_479_194),    # the PyTorch WRN-28-10's count
    ("resnet50", (224, 224, 3), 14, 23_563_278),  # 23,534,592 backbone + 2048*14+14 head
    ("mlp", (8, 8, 1), 10, 19_722),
    ("cnn", (28, 28, 1), 10, 56_554),
])
def test_parameter_counts(name, shape, classes, count):
    assert _trainable(build_classifier(name, classes, shape, seed=0)) == count


def test_weight_net_is_1_100_1_with_sigmoid_output():
    net = build_weight_net(seed=0)
    assert _trainable(net) == 301
    out = net(np.linspace(0, 20, 50, dtype="float32")[:, None]).numpy()
    assert out.shape == (50, 1) and np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("name", ["resnet32", "wrn28_10", "mlp", "cnn", "tiny"])
def test_batch_norm_matches_pytorch_and_synchronizes_on_request(name):
    shape = {"resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3), "cnn": (28, 28, 1)}.get(
        name, (8, 8, 1))
    for sync in (False, True):
        bns = [la for la in build_classifier(name, 10, shape, synchronized_bn=sync).layers
               if isinstance(la, keras.layers.BatchNormalization)]
        assert bns and all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)
        assert all(b.synchronized == sync for b in bns)


def test_option_a_shortcut_has_no_parameters():
    # ResNet-32 = stem conv + 30 3x3 convs + 31 BN + linear: nothing left for shortcuts.
    convs = 3 * 3 * 3 * 16 + sum(9 * c_in * c + 9 * c * c + 9 * c * c * 8 for c_in, c in
                                 ((16, 16), (16, 32), (32, 64)))
    bns = 2 * (16 + 10 * 16 + 10 * 32 + 10 * 64)
    assert _trainable(build_classifier("resnet32", 10, (32, 32, 3))) == (
        convs + bns + 64 * 10 + 10)


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = (build_classifier("resnet32", 10, (32, 32, 3), seed=s) for s in (1, 1, 2))
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert any(not np.array_equal(va.numpy(), vc.numpy())
               for va, vc in zip(a.weights, c.weights))


def test_stateless_call_in_training_mode_reaches_batch_norm():
    model = build_classifier("resnet32", 10, (32, 32, 3), seed=0)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    _, trained = model.stateless_call(tv, ntv, x, training=True)
    _, inferred = model.stateless_call(tv, ntv, x, training=False)
    assert any(not np.allclose(a, b) for a, b in zip(ntv, trained))
    assert all(np.array_equal(a, b) for a, b in zip(ntv, inferred))


def test_every_model_builds_and_outputs_logits():
    shapes = {"resnet50": (64, 64, 3), "resnet32": (32, 32, 3), "wrn28_10": (32, 32, 3),
              "cnn": (28, 28, 1)}
    for name in MODELS:
        if name in ("wrn28_10", "resnet50"):
            continue  # counted above; a forward of them is slow on 2 cores
        shape = shapes.get(name, (8, 8, 1))
        out = build_classifier(name, 7, shape)(np.zeros((2, *shape), "float32"))
        assert out.shape == (2, 7)
    with pytest.raises(ValueError, match="unknown model"):
        build_classifier("vgg", 10, (32, 32, 3))
