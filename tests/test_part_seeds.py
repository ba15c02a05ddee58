"""The parts of a run's randomness on seeds of their own (--meta_seed, --init_seed,
--order_seed), each falling back to --seed."""

import numpy as np

from mwnet_tf.config import Config
from mwnet_tf.data import make_biased_data


def test_each_part_seed_falls_back_to_the_run_seed():
    c = Config(seed=3)
    assert [c.part_seed(p) for p in ("meta", "noise", "init", "order")] == [3, 3, 3, 3]
    c = Config(seed=3, meta_seed=5, order_seed=0)
    assert [c.part_seed(p) for p in ("meta", "init", "order")] == [5, 3, 0]


def test_meta_seed_changes_the_meta_draw_alone(synthetic_dataset):
    ds = synthetic_dataset(per_class=30)
    kw = dict(noise="flip", rate=0.4, meta_per_class=5, seed=0)
    base = make_biased_data(ds, **kw)
    same = make_biased_data(ds, meta_seed=0, **kw)
    np.testing.assert_array_equal(base.meta_index, same.meta_index)
    np.testing.assert_array_equal(base.train_y, same.train_y)
    other = make_biased_data(ds, meta_seed=1, **kw)
    assert not np.array_equal(base.meta_index, other.meta_index)
    assert not set(other.meta_index) & set(other.train_index)  # still disjoint
    # the noise is drawn by the run seed's generator, not the meta seed's
    np.testing.assert_array_equal(make_biased_data(ds, **dict(kw, seed=1)).meta_index,
                                  make_biased_data(ds, **dict(kw, seed=1), meta_seed=1).meta_index)
    assert np.array_equal(other.transition, base.transition)


def test_noise_seed_changes_the_noise_alone(synthetic_dataset):
    ds = synthetic_dataset(per_class=30)
    kw = dict(noise="flip", rate=0.4, meta_per_class=5, seed=0)
    base = make_biased_data(ds, **kw)
    other = make_biased_data(ds, noise_seed=1, **kw)
    np.testing.assert_array_equal(base.meta_index, other.meta_index)
    np.testing.assert_array_equal(base.train_clean_y, other.train_clean_y)
    assert not np.array_equal(base.train_y, other.train_y)
    np.testing.assert_array_equal(make_biased_data(ds, noise_seed=0, **kw).train_y, base.train_y)
