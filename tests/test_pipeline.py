"""tf.data pipelines: augmentation, determinism, batch structure, real and mocked data."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mwnet_tf.data import load_dataset, make_biased_data
from mwnet_tf.data.pipeline import augment, make_test_dataset, make_train_dataset, normalize


def _windows(image, pad=4):
    """Every crop of the reflect-padded image, flipped or not: {(dy, dx, flip): crop}."""
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop[:, ::-1]
    return out


def _which_window(result, windows):
    return [k for k, v in windows.items() if np.array_equal(v, result)]


def test_normalize():
    x = np.array([[[0, 255]], [[51, 102]]], np.uint8)  # [2, 1, 2]: two channels
    out = normalize(tf.constant(x), (0.5, 0.2), (0.25, 0.5)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x / 255.0 - [0.5, 0.2]) / [0.25, 0.5], rtol=1e-6)


def test_augment_is_a_seeded_reflect_padded_crop_and_flip():
    image = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    windows = _windows(image)
    seeds = np.stack([np.full(120, 7), np.arange(120)], axis=1).astype(np.int64)
    eager = np.stack([augment(tf.constant(image), tf.constant(s)).numpy() for s in seeds])

    def fn(seed):
        return augment(tf.constant(image), seed)

    in_data = np.stack(list(tf.data.Dataset.from_tensor_slices(seeds).map(fn)
                            .as_numpy_iterator()))
    np.testing.assert_array_equal(eager, in_data)  # same seed, same image, eager or graph
    seen = set()
    for out in eager:
        assert out.shape == image.shape and out.dtype == np.uint8
        found = _which_window(out, windows)
        assert found, "not a crop of the reflect-padded image"
        seen.update(found)
    # Offset 0 (the reflect-padded corner) occurs; so do every offset 0..8 and both flips.
    assert (0, 0, False) in seen or (0, 0, True) in seen
    assert {k[0] for k in seen} == {k[1] for k in seen} == set(range(9))
    assert {k[2] for k in seen} == {False, True}
    assert any(not np.array_equal(out, image) for out in eager)
    corner = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")[:10, :12]
    assert np.array_equal(windows[(0, 0, False)], corner) and not np.array_equal(corner, image)
    int32_seed = augment(tf.constant(image), tf.constant([7, 3], tf.int32)).numpy()
    assert _which_window(int32_seed, windows)


@pytest.fixture(scope="module")
def digits_data():
    return make_biased_data(load_dataset("digits"), noise="uniform", rate=0.4,
                            meta_per_class=10, seed=0)


def _collect(ds):
    batches = list(ds.as_numpy_iterator())
    return batches, {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}


def test_train_dataset_structure_and_one_epoch_of_digits(digits_data):
    data = digits_data
    ds = make_train_dataset(data, batch_size=100, meta_batch_size=40, seed=1, epoch=0)
    train_spec, meta_spec = ds.element_spec
    assert train_spec["x"].shape == (100, 8, 8, 1) and train_spec["x"].dtype == tf.float32
    assert train_spec["y"].dtype == tf.int32 and train_spec["y_clean"].dtype == tf.int32
    assert train_spec["corrupted"].dtype == tf.bool and train_spec["corrupted"].shape == (100,)
    assert meta_spec["x"].shape == (40, 8, 8, 1) and meta_spec["y"].dtype == tf.int32
    batches, train = _collect(ds)
    n = len(data.train_y)
    assert len(batches) == n // 100
    # Every training image at most once, with its own labels (digits: no augmentation).
    pixels = np.round((train["x"] * data.std[0] + data.mean[0]) * 255).astype(np.uint8)
    rows = {data.train_x[i].tobytes(): i for i in range(n)}
    idx = np.array([rows[p.tobytes()] for p in pixels])
    assert len(set(idx.tolist())) == len(idx) == (n // 100) * 100
    np.testing.assert_array_equal(train["y"], data.train_y[idx])
    np.testing.assert_array_equal(train["y_clean"], data.train_clean_y[idx])
    np.testing.assert_array_equal(train["corrupted"], data.corrupted[idx])
    assert not np.array_equal(idx, np.sort(idx))  # shuffled
    # The meta stream: each pass of 100 meta images (2 batches of 40) is a fresh permutation.
    meta_x = np.concatenate([b[1]["x"] for b in batches])
    meta_y = np.concatenate([b[1]["y"] for b in batches])
    meta_rows = {data.meta_x[i].tobytes(): i for i in range(len(data.meta_y))}
    meta_pixels = np.round((meta_x * data.std[0] + data.mean[0]) * 255).astype(np.uint8)
    meta_idx = np.array([meta_rows[p.tobytes()] for p in meta_pixels])
    np.testing.assert_array_equal(meta_y, data.meta_y[meta_idx])
    passes = meta_idx[:len(meta_idx) // 80 * 80].reshape(-1, 80)
    assert len(passes) >= 2 and all(len(set(p.tolist())) == 80 for p in passes)
    assert not np.array_equal(passes[0], passes[1])


def test_train_dataset_is_deterministic_per_seed_and_epoch(synthetic_dataset):
    data = make_biased_data(synthetic_dataset(per_class=12, shape=(8, 8, 3), augment=True),
                            noise="flip", rate=0.4, meta_per_class=2, seed=0)

    def first(seed, epoch):
        ds = make_train_dataset(data, batch_size=16, meta_batch_size=8, seed=seed, epoch=epoch)
        return [b for b, _ in zip(ds.as_numpy_iterator(), range(3))]

    a, b = first(0, 0), first(0, 0)
    for x, y in zip(a, b):
        for part in (0, 1):
            for key in x[part]:
                np.testing.assert_array_equal(x[part][key], y[part][key])
    assert not np.array_equal(a[0][0]["x"], first(1, 0)[0][0]["x"])
    assert not np.array_equal(a[0][0]["x"], first(0, 1)[0][0]["x"])
    assert not np.array_equal(a[0][1]["x"], first(0, 1)[0][1]["x"])


def test_test_dataset_covers_every_test_example_once_in_order(digits_data):
    data = digits_data
    batches = list(make_test_dataset(data, batch_size=128).as_numpy_iterator())
    assert [len(b["y"]) for b in batches] == [128, 128, 128, 116]
    x = np.concatenate([b["x"] for b in batches])
    y = np.concatenate([b["y"] for b in batches])
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, data.test_y)
    np.testing.assert_allclose(x, (data.test_x / 255.0 - data.mean[0]) / data.std[0], atol=1e-5)


def test_too_small_training_or_meta_set_raises(digits_data):
    with pytest.raises(ValueError, match="smaller than one batch"):
        make_train_dataset(digits_data, batch_size=5000, meta_batch_size=10, seed=0, epoch=0)
    with pytest.raises(ValueError, match="meta set"):
        make_train_dataset(digits_data, batch_size=100, meta_batch_size=101, seed=0, epoch=0)


@pytest.mark.parametrize("name,examples", [("cifar10", 64), ("cifar100", 800)])
def test_cifar_pipeline_under_mock_data(monkeypatch, tmp_path, name, examples):
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=examples):
        ds = load_dataset(name, data_dir=str(tmp_path))
    data = make_biased_data(ds, noise="uniform", rate=0.4, meta_per_class=1, seed=0)
    train, meta = next(iter(make_train_dataset(data, batch_size=16, meta_batch_size=4, seed=0,
                                               epoch=0)))
    assert train["x"].shape == (16, 32, 32, 3) and train["x"].dtype == tf.float32
    assert meta["x"].shape == (4, 32, 32, 3) and meta["y"].dtype == tf.int32
    assert np.all(np.isfinite(train["x"].numpy()))
    assert abs(float(tf.reduce_mean(train["x"]))) < 1.5  # normalized, not raw pixels
    test = next(iter(make_test_dataset(data, batch_size=10)))
    assert test["x"].shape == (10, 32, 32, 3) and test["y"].dtype == tf.int32
