"""The classifier to take home: classifier.keras, classifier.json and the serving SavedModel
(raw inputs in, preprocessing inside, probabilities out), served through saved_model_cli."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.data import make_biased_data
from mwnet_tf.data.class_names import default_class_names
from mwnet_tf.data.pipeline import normalize
from mwnet_tf.models import build_classifier
from mwnet_tf.outputs import serving

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def data():
    from mwnet_tf.data import Dataset

    rng = np.random.default_rng(0)
    c, shape = 3, (6, 5, 2)
    y = np.repeat(np.arange(c), 10)
    ds = Dataset(name="synthetic", train_x=rng.integers(0, 256, (len(y), *shape), np.uint8),
                 train_y=y.astype(np.int64),
                 test_x=rng.integers(0, 256, (3, *shape), np.uint8),
                 test_y=np.arange(c, dtype=np.int64), num_classes=c,
                 mean=(0.4, 0.6), std=(0.2, 0.3), augment=False)
    return make_biased_data(ds, noise="uniform", rate=0.3, meta_per_class=2, seed=0)


def _trained_ish(data, seed=1):
    """A tiny classifier with nonzero batch-norm statistics (as after training)."""
    model = build_classifier("tiny", data.num_classes, data.input_shape, seed=seed)
    x = normalize(data.train_x, data.mean, data.std)
    for _ in range(3):
        model(x, training=True)
    for var in model.non_trainable_variables:  # move the moving statistics away from 0/1
        var.assign(var * 0.5 + 0.3)
    return model


def _serve(path, raw: np.ndarray, tmp_path) -> np.ndarray:
    """`saved_model_cli run` on `raw` (a literal, as --input_exprs takes); the probabilities."""
    outdir = tmp_path / "cli_out"
    expr = f"{serving.INPUT}={raw.tolist()!r}"
    proc = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", str(path), "--tag_set", "serve",
         "--signature_def", serving.SIGNATURE, "--input_exprs", expr, "--outdir", str(outdir),
         "--overwrite"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(outdir / f"{serving.OUTPUT}.npy")


@pytest.mark.e2e
def test_export_writes_the_keras_file_the_spec_and_a_saved_model_served_by_the_cli(
        data, tmp_path):
    model = _trained_ish(data)
    paths = serving.export_classifier(model, data, str(tmp_path / "run"),
                                      class_names=["ant", "bee", "cat"])
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        [files.CLASSIFIER, files.CLASSIFIER_SPEC, files.CLASSIFIER_SERVING])
    spec = json.loads(open(paths["spec"]).read())
    assert spec["class_names"] == ["ant", "bee", "cat"] and spec["raw_dtype"] == "uint8"
    assert spec["input_shape"] == spec["raw_shape"] == [6, 5, 2]
    assert spec["mean"] == [0.4, 0.6] and spec["std"] == [0.2, 0.3]

    raw = np.random.default_rng(5).integers(0, 256, (4, 6, 5, 2), np.uint8)
    expected = tf.nn.softmax(model(normalize(raw, data.mean, data.std), training=False))
    served = _serve(paths["serving"], raw, tmp_path)
    assert served.shape == (4, 3) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.sum(1), 1.0, rtol=1e-5)

    # classifier.keras loads in safe mode and gives the same logits
    loaded = keras.saving.load_model(paths["keras"], safe_mode=True)
    x = normalize(raw, data.mean, data.std)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False),
                               rtol=1e-6, atol=1e-6)


def test_serving_signature_takes_raw_uint8_of_the_data_sets_shape(data, tmp_path):
    model = _trained_ish(data)
    path = serving.export_serving(model, serving.input_spec(model, data),
                                  str(tmp_path / "s"))
    fn = tf.saved_model.load(path).signatures[serving.SIGNATURE]
    spec = fn.structured_input_signature[1][serving.INPUT]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 6, 5, 2]
    raw = np.random.default_rng(1).integers(0, 256, (3, 6, 5, 2), np.uint8)
    np.testing.assert_allclose(fn(**{serving.INPUT: tf.constant(raw)})[serving.OUTPUT],
                               tf.nn.softmax(model(normalize(raw, data.mean, data.std),
                                                   training=False)), rtol=1e-5, atol=1e-6)


def test_data_read_from_files_serve_any_size_resized_and_center_cropped(data, tmp_path):
    from mwnet_tf.data.clothing1m import resize_for

    files = dataclasses.replace(data, image_size=8, mean=(0.5, 0.4, 0.3), std=(0.2,) * 3)
    model = build_classifier("tiny", 3, (8, 8, 3), seed=0)
    spec = serving.input_spec(model, files, dataset="clothing1m_like")
    assert spec["raw_shape"] == [None, None, 3] and spec["resize"] == resize_for(8) == 9
    path = serving.export_serving(model, spec, str(tmp_path / "s"))
    fn = tf.saved_model.load(path).signatures[serving.SIGNATURE]
    raw = np.random.default_rng(2).integers(0, 256, (2, 13, 11, 3), np.uint8)
    resized = serving.resize_image(raw, (9, 9))[:, :8, :8, :]  # offset (9 - 8) // 2 = 0
    expected = tf.nn.softmax(model(normalize(resized, files.mean, files.std), training=False))
    np.testing.assert_allclose(fn(**{serving.INPUT: tf.constant(raw)})[serving.OUTPUT],
                               expected, rtol=1e-5, atol=1e-6)


def test_features_that_are_not_images_serve_as_float32(data, tmp_path):
    rng = np.random.default_rng(3)
    feats = dataclasses.replace(data, train_x=rng.normal(size=(len(data.train_y), 7)),
                                mean=(0.0,), std=(1.0,))
    model = build_classifier("tiny", 3, (7,), seed=0)
    spec = serving.input_spec(model, feats)
    assert spec["kind"] == "features" and spec["raw_dtype"] == "float32"
    path = serving.export_serving(model, spec, str(tmp_path / "s"))
    fn = tf.saved_model.load(path).signatures[serving.SIGNATURE]
    raw = rng.normal(size=(4, 7)).astype(np.float32)
    np.testing.assert_allclose(
        fn(**{serving.INPUT: tf.constant(raw)})[serving.OUTPUT],
        tf.nn.softmax(model(normalize(raw, (0.0,), (1.0,)), training=False)),
        rtol=1e-5, atol=1e-6)


def test_default_class_names():
    assert default_class_names("cifar10", 10)[0] == "airplane"
    assert len(default_class_names("cifar100", 100)) == 100
    assert default_class_names("fashion_mnist", 10)[-1] == "Ankle boot"
    assert default_class_names("clothing1m", 14)[0] == "T-Shirt"
    assert default_class_names("mine", 3) == ["0", "1", "2"]
    assert default_class_names("cifar10", 3) == ["0", "1", "2"]


def test_a_second_export_replaces_the_first(data, tmp_path):
    model = _trained_ish(data)
    run = str(tmp_path / "run")
    serving.export_classifier(model, data, run, serving=False)
    other = _trained_ish(data, seed=9)
    serving.export_classifier(other, data, run, serving=False)
    loaded = keras.saving.load_model(os.path.join(run, files.CLASSIFIER), safe_mode=True)
    for a, b in zip(loaded.weights, other.weights):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(run)) == sorted([files.CLASSIFIER, files.CLASSIFIER_SPEC])
