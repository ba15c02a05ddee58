"""Shared test fixtures."""

import keras
import numpy as np
import pytest
from cli import CliSession  # (tests/cli.py)

from mwnet_tf.data import Dataset


@pytest.fixture
def float64():
    """Keras floatx and dtype policy float64 for the test, both restored afterwards (a
    global policy another test left set would otherwise override floatx)."""
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(old_policy)


@pytest.fixture
def synthetic_dataset():
    """Factory of small random `Dataset`s: `make(per_class, num_classes=10, shape=(8, 8, 3))`.

    Class c has `per_class[c]` (or `per_class`) training images; `coarse=True` adds coarse
    labels (fine class // 5).
    """
    def make(per_class=40, num_classes=10, shape=(8, 8, 3), test_per_class=3, augment=False,
             coarse=False, seed=0):
        rng = np.random.default_rng(seed)
        counts = np.broadcast_to(per_class, (num_classes,))
        train_y = np.repeat(np.arange(num_classes), counts)
        rng.shuffle(train_y)
        test_y = np.repeat(np.arange(num_classes), test_per_class)
        return Dataset(
            name="synthetic",
            train_x=rng.integers(0, 256, (len(train_y), *shape), dtype=np.uint8),
            train_y=train_y.astype(np.int64),
            test_x=rng.integers(0, 256, (len(test_y), *shape), dtype=np.uint8),
            test_y=test_y.astype(np.int64), num_classes=num_classes,
            mean=(0.5,) * shape[-1], std=(0.25,) * shape[-1], augment=augment,
            train_coarse=(train_y // 5).astype(np.int64) if coarse else None)
    return make


@pytest.fixture(scope="module")
def cli():
    """`cli.run(*args, **env)`: `python -m mwnet_tf.train ARGS` through one TensorFlow import
    for the module's tests (`tests/cli.py`, `CliSession`)."""
    session = CliSession()
    yield session
    session.close()


# The modules that take longest, longest first (measured with `--durations=0`, one worker,
# 2026-12-07; the multi-worker and signal tests also keep the second core busy). pytest-xdist
# hands out whole files in collection order when run with `--no-loadscope-reorder` (the
# README's test command), so no long module starts last while the other worker idles; the
# rest follow in their usual order.
LONGEST_FIRST = ("test_multi_worker.py", "test_own_data_cli.py", "test_label_order_cli.py",
                 "test_meta_source_cli.py", "test_preemption.py", "test_cmwnet.py",
                 "test_methods_cli.py", "test_mirrored.py", "test_catalogue.py", "test_bench.py",
                 "test_train.py", "test_docs.py", "test_image_files.py", "test_jit.py",
                 "test_predict.py", "test_commands.py", "test_example.py", "test_defaults.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a module
