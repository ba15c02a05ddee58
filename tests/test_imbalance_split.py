"""Long-tail cut, meta split and the whole biased-data recipe."""

import numpy as np
import pytest

from mwnet_tf.data import long_tail_counts, long_tail_indices, make_biased_data, meta_split

CIFAR10_LT100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # the published counts


def test_long_tail_counts_are_exact():
    np.testing.assert_array_equal(long_tail_counts(5000, 10, 100), CIFAR10_LT100)
    np.testing.assert_array_equal(long_tail_counts(500, 100, 10)[[0, 99]], [500, 50])
    np.testing.assert_array_equal(long_tail_counts(7, 4, 1.0), [7, 7, 7, 7])
    with pytest.raises(ValueError, match="imbalance"):
        long_tail_counts(5000, 10, 0.5)


def test_long_tail_indices_keep_exactly_those_counts():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 5000))
    idx = long_tail_indices(labels, 100, np.random.default_rng(1))
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    np.testing.assert_array_equal(np.bincount(labels[idx]), CIFAR10_LT100)
    other = long_tail_indices(labels, 100, np.random.default_rng(2))
    assert not np.array_equal(idx, other)  # which images are kept depends on the generator
    np.testing.assert_array_equal(long_tail_indices(labels, 1, np.random.default_rng(1)),
                                  np.arange(labels.size))


def test_meta_split_is_balanced_disjoint_and_complete():
    labels = np.random.default_rng(0).integers(0, 5, 300)
    meta, rest = meta_split(labels, 7, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(labels[meta]), [7] * 5)
    assert np.intersect1d(meta, rest).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([meta, rest])), np.arange(300))
    meta2, _ = meta_split(labels, 7, np.random.default_rng(1))
    assert not np.array_equal(meta, meta2)
    with pytest.raises(ValueError, match="class 3 has only 2"):
        meta_split(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]), 3, np.random.default_rng(0))


def _biased(ds, **kw):
    args = dict(noise="flip", rate=0.4, meta_per_class=5, seed=0)
    args.update(kw)
    return make_biased_data(ds, **args)


def test_biased_data_meta_set_is_clean_balanced_and_never_in_training(synthetic_dataset):
    ds = synthetic_dataset(per_class=60)
    data = _biased(ds)
    assert np.intersect1d(data.meta_index, data.train_index).size == 0
    assert data.meta_index.size + data.train_index.size == ds.train_y.size
    np.testing.assert_array_equal(np.bincount(data.meta_y), [5] * 10)
    np.testing.assert_array_equal(data.meta_y, ds.train_y[data.meta_index])
    np.testing.assert_array_equal(data.meta_x, ds.train_x[data.meta_index])
    np.testing.assert_array_equal(data.train_clean_y, ds.train_y[data.train_index])
    np.testing.assert_array_equal(data.train_x, ds.train_x[data.train_index])
    np.testing.assert_array_equal(data.test_y, ds.test_y)
    assert data.train_y.dtype == np.int64 and data.train_x.dtype == np.uint8
    assert data.corrupted.dtype == bool and data.corrupted.any()
    assert data.realized_noise_rate == pytest.approx(np.mean(data.train_y != data.train_clean_y))
    assert 0.25 < data.realized_noise_rate < 0.55  # 550 labels at p = 0.4
    assert np.all(data.transition[~np.eye(10, dtype=bool)] <= 0.2 + 1e-12)


def test_biased_data_is_reproducible_and_stages_have_their_own_seeds(synthetic_dataset):
    ds = synthetic_dataset(per_class=60)
    a, b, c = _biased(ds), _biased(ds), _biased(ds, seed=1)
    for name in ("train_y", "train_index", "meta_index", "transition"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert np.any(a.train_y != c.train_y)
    assert not np.array_equal(a.meta_index, c.meta_index)
    # Another noise rate changes the labels but neither the meta split nor the training images.
    d = _biased(ds, rate=0.2)
    np.testing.assert_array_equal(a.meta_index, d.meta_index)
    np.testing.assert_array_equal(a.train_index, d.train_index)
    assert d.realized_noise_rate < a.realized_noise_rate


def test_long_tail_cut_comes_after_the_meta_split_and_before_noise(synthetic_dataset):
    ds = synthetic_dataset(per_class=110)
    data = _biased(ds, noise="uniform", rate=0.0, imbalance=10, meta_per_class=10)
    np.testing.assert_array_equal(np.bincount(data.meta_y), [10] * 10)
    np.testing.assert_array_equal(np.bincount(data.train_clean_y), long_tail_counts(100, 10, 10))
    assert data.realized_noise_rate == 0.0


def test_hierarchical_noise_needs_coarse_labels(synthetic_dataset):
    data = _biased(synthetic_dataset(coarse=True), noise="hierarchical", rate=0.5)
    moved = data.corrupted
    assert moved.any()
    np.testing.assert_array_equal(data.train_y[moved] // 5, data.train_clean_y[moved] // 5)
    with pytest.raises(ValueError, match="coarse"):
        _biased(synthetic_dataset(), noise="hierarchical")
