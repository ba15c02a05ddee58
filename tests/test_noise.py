"""Label noise: transition matrices of each type and seeded corruption."""

import numpy as np
import pytest

from mwnet_tf.data import NOISE_TYPES, coarse_map, corrupt_labels, transition_matrix

C = 10
COARSE = np.arange(C) // 5  # two coarse classes of five fine classes each


def _matrix(kind, rate=0.4, seed=0, num_classes=C):
    return transition_matrix(kind, rate, num_classes, np.random.default_rng(seed),
                             coarse_of_fine=COARSE[:num_classes])


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_rows_are_probability_distributions(kind):
    t = _matrix(kind)
    assert t.shape == (C, C) and t.dtype == np.float64
    assert np.all(t >= 0)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)


def test_none_is_identity_and_uniform_spreads_rate_over_all_classes():
    np.testing.assert_array_equal(_matrix("none", 0.7), np.eye(C))
    t = _matrix("uniform", 0.4)
    np.testing.assert_allclose(np.diag(t), 0.6 + 0.04)
    np.testing.assert_allclose(t[~np.eye(C, dtype=bool)], 0.04)


@pytest.mark.parametrize("kind,targets", [("flip", 2), ("flip1", 1)])
def test_flip_sends_rate_to_random_other_classes(kind, targets):
    p = 0.4
    t = _matrix(kind, p)
    np.testing.assert_allclose(np.diag(t), 1 - p)
    off = t * (1 - np.eye(C))
    assert np.all((off > 0).sum(axis=1) == targets)
    np.testing.assert_allclose(off[off > 0], p / targets)
    # The targets are drawn by the generator: another seed gives another matrix.
    assert not np.array_equal(t, _matrix(kind, p, seed=1))
    np.testing.assert_array_equal(t, _matrix(kind, p, seed=0))


def test_hierarchical_stays_within_the_coarse_class():
    p = 0.4
    t = _matrix("hierarchical", p)
    np.testing.assert_allclose(np.diag(t), 1 - p)
    same = COARSE[:, None] == COARSE[None, :]
    assert np.all(t[~same] == 0)
    np.testing.assert_allclose(t[same & ~np.eye(C, dtype=bool)], p / 4)


def test_invalid_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="coarse"):
        transition_matrix("hierarchical", 0.4, C, rng)
    with pytest.raises(ValueError, match="rate"):
        transition_matrix("uniform", 1.5, C, rng)
    with pytest.raises(ValueError, match="rate"):
        transition_matrix("flip", -0.1, C, rng)
    with pytest.raises(ValueError, match="unknown noise"):
        transition_matrix("pair", 0.4, C, rng)


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_realized_noise_rate_and_transitions_match_the_matrix(kind):
    p, n = 0.4, 20_000
    rng = np.random.default_rng(123)
    t = _matrix(kind, p)
    clean = rng.integers(0, C, n)
    noisy = corrupt_labels(clean, t, rng)
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    expected = {"none": 0.0, "uniform": p * (C - 1) / C}.get(kind, p)
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert abs(np.mean(noisy != clean) - expected) <= 5 * sigma + 1e-12
    # Every transition (i -> j) happens with frequency T[i, j] (5 sigma), never where T is 0.
    counts = np.zeros((C, C))
    np.add.at(counts, (clean, noisy), 1)
    rows = counts.sum(axis=1, keepdims=True)
    assert np.all(counts[t == 0] == 0)
    sigma = np.sqrt(t * (1 - t) / rows)
    assert np.all(np.abs(counts / rows - t) <= 5 * sigma + 1e-12)


def test_identity_leaves_labels_unchanged_and_seed_decides_the_noise():
    labels = np.random.default_rng(0).integers(0, C, 1000)
    np.testing.assert_array_equal(
        corrupt_labels(labels, np.eye(C), np.random.default_rng(5)), labels)
    t = _matrix("uniform", 0.5)
    a = corrupt_labels(labels, t, np.random.default_rng(1))
    b = corrupt_labels(labels, t, np.random.default_rng(1))
    c = corrupt_labels(labels, t, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_corrupt_labels_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        corrupt_labels(np.zeros(3, int), np.full((C, C), 0.5), np.random.default_rng(0))
    with pytest.raises(ValueError, match="labels"):
        corrupt_labels(np.array([0, C]), np.eye(C), np.random.default_rng(0))


def test_coarse_map_reads_the_coarse_class_of_each_fine_class():
    fine = np.array([3, 0, 1, 2, 3, 1])
    coarse = np.array([1, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(coarse_map(fine, coarse, 4), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="exactly one"):
        coarse_map(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    with pytest.raises(ValueError, match="exactly one"):
        coarse_map(np.array([0, 1]), np.array([0, 0]), 3)  # class 2 missing


# --- instance-dependent noise (Xia et al. 2020) ------------------------------------------------

def _instance(features, labels, rate=0.4, seed=0, num_classes=C):
    from mwnet_tf.data.instance_noise import instance_noisy_labels
    return instance_noisy_labels(features, labels, rate, num_classes,
                                 np.random.default_rng(seed))


def test_instance_noise_is_seeded_and_flips_about_the_rate():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6000, 20)), rng.integers(0, C, 6000)
    a, b = _instance(x, y), _instance(x, y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _instance(x, y, seed=1))
    assert np.mean(a != y) == pytest.approx(0.4, abs=0.02)  # truncated N(0.4, 0.1^2) mean
    assert np.mean(_instance(x, y, rate=0.2) != y) == pytest.approx(0.2, abs=0.02)
    # the flip rates are truncated to [0, 1]: at rate 0 their mean is E|N(0, 0.1^2)| = 0.08
    assert np.mean(_instance(x, y, rate=0.0) != y) == pytest.approx(0.1 * np.sqrt(2 / np.pi),
                                                                     abs=0.01)
    assert a.min() >= 0 and a.max() < C


def test_instance_noise_depends_on_the_image_not_only_on_its_class():
    # 400 copies each of two images of class 0: the copies of an image flip to the one or two
    # classes its own pixels score highest, while distinct images of the class spread their
    # flips over every other class (class-conditional noise would spread the copies too).
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 200))
    x = np.repeat(images, 400, axis=0)
    y = np.zeros(800, np.int64)
    noisy = _instance(x, y, seed=3)
    for i in range(2):
        flipped = noisy[i * 400:(i + 1) * 400]
        counts = np.bincount(flipped[flipped != 0], minlength=C)
        assert counts.max() >= 0.6 * counts.sum() > 0 and (counts > 0).sum() <= 2, counts
    # class-conditional noise would give both images the same flip distribution
    many = _instance(rng.normal(size=(3000, 50)), np.zeros(3000, np.int64), seed=3)
    assert len(np.unique(many[many != 0])) == C - 1


def test_instance_noise_through_the_biased_data_keeps_the_meta_set_clean(synthetic_dataset):
    from mwnet_tf.data import make_biased_data
    ds = synthetic_dataset(per_class=60)
    data = make_biased_data(ds, noise="instance", rate=0.4, meta_per_class=5, seed=4)
    again = make_biased_data(ds, noise="instance", rate=0.4, meta_per_class=5, seed=4)
    np.testing.assert_array_equal(data.train_y, again.train_y)
    assert not np.isin(data.meta_index, data.train_index).any()
    np.testing.assert_array_equal(data.meta_y, ds.train_y[data.meta_index])
    assert data.realized_noise_rate == pytest.approx(np.mean(data.train_y != data.train_clean_y))
    assert 0.25 < data.realized_noise_rate < 0.55
    np.testing.assert_allclose(data.transition.sum(axis=1), 1.0)
