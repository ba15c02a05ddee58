"""Own data: image folders, CSV tables, .npz arrays, tfds sets by name
(`mwnet_tf.data.custom`).

Every test writes the tiny files it needs into tmp_path (PIL, NumPy); no network.
"""

import json
import os
import subprocess
import sys
import unittest.mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from mwnet_tf.data import (
    DataUnavailableError,
    OwnData,
    load_csv_table,
    load_image_folder,
    load_npz_arrays,
    load_own_data,
    load_tfds_dataset,
    make_own_biased_data,
)
from mwnet_tf.data.bias import BiasedData
from mwnet_tf.data.custom.biased import hold_out
from mwnet_tf.data.image_files import read_header
from mwnet_tf.data.pipeline import (
    find_undecodable,
    make_test_dataset,
    make_train_dataset,
    name_unreadable,
)
from mwnet_tf.models import build_classifier

FORMATS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif"}


def write_image(path, fmt="PNG", mode="RGB", size=(12, 10), seed=0):
    """A random image file; returns its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, fmt)
    return str(path)


def make_folder(root, counts=None, classes=("cat", "dog"), fmt="PNG", mode="RGB",
                size=(12, 10)):
    """root/<split>/<class>/<i>.<ext> with counts[split] images per class."""
    counts = counts or {"train": 6, "meta": 4, "test": 2}
    seed = 0
    for split, n in counts.items():
        for c in classes:
            for i in range(n):
                seed += 1
                write_image(root / split / c / f"{i}.{FORMATS[fmt]}", fmt, mode, size, seed)
    return str(root)


def damage(path):
    """Keeps the header and the first half of the file: a valid start, broken data."""
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw[:len(raw) // 2])


def one_line_error(fn, *args, match, **kwargs):
    with pytest.raises(DataUnavailableError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for part in ([match] if isinstance(match, str) else match):
        assert part in message, message
    return message


# ---------------------------------------------------------------- image folders


def test_folder_loads_class_names_counts_and_splits(tmp_path):
    own = load_image_folder(make_folder(tmp_path, classes=("dog", "cat", "bird")),
                            image_size=16)
    assert own.name == "folder" and own.class_names == ("bird", "cat", "dog")
    assert (len(own.train_y), len(own.meta_y), len(own.test_y)) == (18, 12, 6)
    assert np.array_equal(np.bincount(own.train_y), [6, 6, 6])
    for x, y in ((own.train_x, own.train_y), (own.meta_x, own.meta_y),
                 (own.test_x, own.test_y)):
        assert all(os.path.basename(os.path.dirname(p)) == own.class_names[k]
                   for p, k in zip(x, y))
    assert own.test_held_out is None and own.channels == 3 and own.image_size == 16
    assert own.verified and own.train_true_y is None and own.meta_x is not None
    assert len(own.mean) == 3 and all(0.3 < m < 0.7 for m in own.mean)  # uniform noise images
    assert own.summary()["test_held_out"] is None and "3 classes" in own.describe()


def test_folder_without_test_holds_out_a_stratified_seeded_part_of_the_trusted_set(tmp_path):
    root = make_folder(tmp_path, {"train": 3, "meta": 10}, classes=("a", "b", "c"))
    own = load_image_folder(root, image_size=8, test_fraction=0.3)
    assert own.test_held_out == 0.3 and "held out: 0.3 of the trusted set" in own.describe()
    assert np.array_equal(np.bincount(own.test_y), [3, 3, 3])
    assert np.array_equal(np.bincount(own.meta_y), [7, 7, 7])
    assert not set(own.test_x) & set(own.meta_x)
    again = load_image_folder(root, image_size=8, test_fraction=0.3)
    assert np.array_equal(again.test_x, own.test_x)
    other = load_image_folder(root, image_size=8, test_fraction=0.3, split_seed=1)
    assert not np.array_equal(other.test_x, own.test_x)
    default = load_image_folder(root, image_size=8)
    assert np.array_equal(np.bincount(default.test_y), [5, 5, 5])  # half by default


def test_hold_out_keeps_one_image_per_class_on_each_side():
    keep, test = hold_out(np.array([0, 0, 1, 1, 1, 1, 1]), 0.9, 0, ("a", "b"), "x")
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    assert np.array_equal(np.bincount(labels[test]), [1, 4])
    assert np.array_equal(np.bincount(labels[keep]), [1, 1])


@pytest.mark.parametrize("gray_only", [False, True])
def test_four_formats_and_mixed_channels_go_through_the_pipeline(tmp_path, gray_only):
    seed = 0
    for split, n in (("train", 2), ("meta", 2), ("test", 1)):
        for c in ("a", "b"):
            for fmt, ext in FORMATS.items():
                for i in range(n):
                    seed += 1
                    mode = "L" if gray_only or (seed % 2) else "RGB"
                    if fmt == "GIF" and gray_only:
                        continue  # a GIF counts as color
                    size = (9 + seed % 7, 11 + seed % 5)  # sizes vary: resized
                    write_image(tmp_path / split / c / f"{fmt}{i}.{ext}", fmt, mode, size, seed)
    own = load_image_folder(str(tmp_path), image_size=12)
    channels = 1 if gray_only else 3
    assert own.channels == channels and len(own.mean) == channels
    formats = {read_header(p)[0] for p in own.train_x}
    assert formats == set(FORMATS) - ({"GIF"} if gray_only else set())
    data = make_own_biased_data(own, seed=0)
    assert data.from_files and not data.resize_crop and data.input_shape == (12, 12, channels)
    (batch, meta), = make_train_dataset(data, batch_size=4, meta_batch_size=3, seed=0,
                                        epoch=0).take(1)
    assert batch["x"].shape == (4, 12, 12, channels) and batch["x"].dtype == tf.float32
    assert meta["x"].shape == (3, 12, 12, channels)
    test = next(iter(make_test_dataset(data, batch_size=100)))
    assert test["x"].shape == (len(own.test_y), 12, 12, channels)
    assert np.isfinite(test["x"].numpy()).all()


def test_gray_images_decode_to_their_own_values(tmp_path):
    path = write_image(tmp_path / "g.bmp", "BMP", "L", (8, 8), seed=3)
    from mwnet_tf.data.pipeline import decode_image

    decoded = decode_image(tf.constant(path), 8, 1).numpy()[..., 0]
    assert np.array_equal(decoded, np.asarray(Image.open(path)))


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 6), color) for color in ((255, 0, 0), (0, 0, 255))]
    path = str(tmp_path / "anim.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    from mwnet_tf.data.pipeline import decode_image

    image = decode_image(tf.constant(path), 6, 3).numpy()
    assert image.shape == (6, 6, 3) and image[..., 0].min() > 200 and image[..., 2].max() < 50


def test_augmentation_is_a_parameter(tmp_path):
    root = make_folder(tmp_path, {"train": 4, "meta": 4, "test": 1})

    def first_batches(augment):
        data = make_own_biased_data(load_image_folder(root, image_size=16, augment=augment),
                                    seed=0)
        (batch, meta), = make_train_dataset(data, batch_size=8, meta_batch_size=2, seed=0,
                                            epoch=0).take(1)
        test = next(iter(make_test_dataset(data, batch_size=8)))
        return data.augment, batch["x"].numpy(), meta["x"].numpy(), test["x"].numpy()

    plain, again, augmented = first_batches(False), first_batches(False), first_batches(True)
    assert not plain[0] and augmented[0]
    assert all(np.array_equal(a, b) for a, b in zip(plain[1:], again[1:]))
    assert not np.array_equal(plain[1], augmented[1])  # training images
    assert not np.array_equal(plain[2], augmented[2])  # trusted images
    assert np.array_equal(plain[3], augmented[3])  # the test set is never augmented


# ---------------------------------------------------------------- tables


def write_csv(tmp_path, rows, header="path,label,split", name="data.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def image_rows(tmp_path, labels_by_split, true=None):
    """Writes one PNG per row and returns the CSV rows (`true`: a true_label per row)."""
    rows, k = [], 0
    for split, labels in labels_by_split.items():
        for label in labels:
            rel = f"img/{split}_{k}.png"
            write_image(tmp_path / rel, seed=k)
            rows.append(f"{rel},{label},{split}" + (f",{true[k]}" if true else ""))
            k += 1
    return rows


def test_csv_with_names_true_labels_and_splits(tmp_path):
    labels = {"train": ["cat", "dog", "dog", "cat", "cat", "dog"], "meta": ["dog", "cat"] * 2,
              "test": ["cat", "dog"]}
    true = ["cat", "cat", "dog", "dog", "cat", "dog"] + ["dog", "cat"] * 3
    path = write_csv(tmp_path, image_rows(tmp_path, labels, true),
                     "path,label,split,true_label")
    own = load_csv_table(path, image_size=8)
    assert own.name == "csv" and own.class_names == ("cat", "dog")
    assert (len(own.train_y), len(own.meta_y), len(own.test_y)) == (6, 4, 2)
    assert list(own.train_y) == [0, 1, 1, 0, 0, 1]
    assert list(own.train_true_y) == [0, 0, 1, 1, 0, 1]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in own.train_x)
    data = make_own_biased_data(own, seed=0)
    assert list(data.corrupted) == [False, True, False, True, False, False]
    assert data.realized_noise_rate == pytest.approx(2 / 6)
    assert own.summary()["clean_labels_known"]


def test_csv_with_integer_labels_and_held_out_test(tmp_path):
    labels = {"train": [0, 1, 2, 2, 1, 0], "meta": [0, 1, 2] * 4}
    own = load_csv_table(write_csv(tmp_path, image_rows(tmp_path, labels)), image_size=8,
                         test_fraction=0.25)
    assert own.class_names == ("0", "1", "2") and own.test_held_out == 0.25
    assert np.array_equal(np.bincount(own.test_y), [1, 1, 1])
    assert np.array_equal(np.bincount(own.meta_y), [3, 3, 3])
    named = load_csv_table(write_csv(tmp_path, image_rows(tmp_path, labels)), image_size=8,
                           classes=("zero", "one", "two"))
    assert named.class_names == ("zero", "one", "two") and list(named.train_y) == [0, 1, 2, 2,
                                                                                  1, 0]


# ---------------------------------------------------------------- arrays


def write_npz(tmp_path, name="data.npz", **arrays):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    return path


def tabular(n=40, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(10.0, 3.0, (n, d)), np.arange(n) % classes


def test_npz_tabular_features_train_an_mlp(tmp_path):
    x, y = tabular(60)
    xm, ym = tabular(30, seed=1)
    path = write_npz(tmp_path, x_train=x, y_train=y, x_meta=xm, y_meta=ym,
                     class_names=np.array(["low", "mid", "high"]))
    own = load_npz_arrays(path)
    assert own.class_names == ("low", "mid", "high") and not own.augment
    assert own.test_held_out == 0.5 and np.array_equal(np.bincount(own.test_y), [5, 5, 5])
    assert len(own.mean) == 5  # per feature, in x / 255 units
    data = make_own_biased_data(own, noise="uniform", rate=0.5, seed=0)
    assert data.input_shape == (5,) and 0 < data.realized_noise_rate < 1
    (batch, meta), = make_train_dataset(data, batch_size=10, meta_batch_size=5, seed=0,
                                        epoch=0).take(1)
    assert batch["x"].shape == (10, 5)
    assert abs(float(tf.reduce_mean(batch["x"]))) < 1.0  # standardized per feature
    model = build_classifier("mlp", 3, data.input_shape, seed=0)
    assert model(batch["x"]).shape == (10, 3)


def test_npz_images_with_test_and_true_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    y = np.arange(20) % 2
    path = write_npz(tmp_path, x_train=x, y_train=y, y_train_true=np.zeros(20, int),
                     x_meta=x[:6], y_meta=y[:6], x_test=x[:4], y_test=y[:4])
    own = load_npz_arrays(path)
    assert own.augment and own.class_names == ("0", "1") and own.test_held_out is None
    assert len(own.mean) == 3 and list(own.train_true_y) == [0] * 20
    data = make_own_biased_data(own, noise="instance", rate=0.2, seed=0)
    assert data.train_x.shape == (20, 8, 8, 3)
    assert data.realized_noise_rate == pytest.approx(np.mean(data.train_y != 0))


def test_npz_grayscale_images_without_a_channel_axis_get_one(tmp_path):
    """uint8 [N, H, W] (as keras.datasets.mnist gives them) are images [N, H, W, 1]: augmented
    by default and fit for the convolutional models; uint8 [N, 5, 5] stays a feature array."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 12, 10), dtype=np.uint8)
    y = np.arange(20) % 2
    own = load_npz_arrays(write_npz(tmp_path, x_train=x, y_train=y, x_meta=x[:6],
                                    y_meta=y[:6], x_test=x[:4], y_test=y[:4]))
    assert own.train_x.shape == (20, 12, 10, 1) and own.meta_x.shape == (6, 12, 10, 1)
    assert own.test_x.shape == (4, 12, 10, 1) and own.augment and len(own.mean) == 1
    np.testing.assert_array_equal(own.train_x[..., 0], x)
    small = x[:, :5, :5]
    own = load_npz_arrays(write_npz(tmp_path, "small.npz", x_train=small, y_train=y,
                                    x_meta=small[:6], y_meta=y[:6]))
    assert own.train_x.shape == (20, 5, 5) and not own.augment


def test_a_convolutional_model_on_feature_rows_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"--model=cnn takes images \[height, width, "
                       r"channels\]; this data's samples have shape \(5,\): use --model=mlp"):
        build_classifier("cnn", 3, (5,))
    assert build_classifier("mlp", 3, (5,)).output_shape == (None, 3)


# ---------------------------------------------------------------- tfds by name


class TwoImages(tfds.core.GeneratorBasedBuilder):
    """A tfds builder with two image features (registered as "two_images")."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "mask": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(names=["a", "b"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {}


@pytest.fixture
def mock_tfds(monkeypatch):
    """`tfds.testing.mock_data`, counted as prepared (as tests/test_datasets.py)."""
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=40):
        yield


def test_tfds_by_name_finds_the_features_and_carves_the_trusted_set(mock_tfds):
    own = load_tfds_dataset("mnist")
    assert own.name == "tfds:mnist" and own.class_names == tuple(str(k) for k in range(10))
    assert own.meta_x is None and own.train_x.shape == (40, 28, 28, 1)
    assert own.test_x.shape == (40, 28, 28, 1) and own.test_held_out is None
    labels = own.train_y
    per_class = int(np.bincount(labels, minlength=10).min())
    if per_class:
        data = make_own_biased_data(own, meta_per_class=per_class, seed=0)
        assert len(data.meta_y) == 10 * per_class
        assert not set(data.train_index) & set(data.meta_index)
    with pytest.raises(ValueError, match="meta_per_class"):
        make_own_biased_data(own, seed=0)
    masked = load_tfds_dataset("two_images", image_key="mask", image_size=12)
    assert masked.class_names == ("a", "b") and masked.train_x.shape == (40, 12, 12, 1)
    assert load_own_data("tfds:mnist", None).name == "tfds:mnist"


# ---------------------------------------------------------------- noise and the trusted set


def test_own_noise_defaults_to_none_and_synthetic_noise_applies_to_files(tmp_path):
    own = load_image_folder(make_folder(tmp_path, {"train": 20, "meta": 5, "test": 1}),
                            image_size=8)
    data = make_own_biased_data(own, seed=0)
    assert np.array_equal(data.train_y, own.train_y) and np.isnan(data.realized_noise_rate)
    assert np.array_equal(data.train_x, own.train_x) and len(data.meta_y) == 10
    noisy = make_own_biased_data(own, noise="flip1", rate=0.4, meta_per_class=3, seed=0)
    assert noisy.from_files and 0.1 < noisy.realized_noise_rate < 0.7
    assert np.array_equal(noisy.train_clean_y, own.train_y) and noisy.corrupted.any()
    assert np.array_equal(np.bincount(noisy.meta_y), [3, 3])
    again = make_own_biased_data(own, noise="flip1", rate=0.4, meta_per_class=3, seed=0)
    assert np.array_equal(again.train_y, noisy.train_y)
    for noise in ("human", "hierarchical", "instance"):
        with pytest.raises(ValueError, match=noise):
            make_own_biased_data(own, noise=noise, rate=0.2, seed=0)


# ---------------------------------------------------------------- damaged images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_damaged_image_is_named_at_load_time(tmp_path, fmt):
    root = make_folder(tmp_path, {"train": 3, "meta": 2}, fmt=fmt, size=(48, 48))
    bad = tmp_path / "train" / "dog" / f"1.{FORMATS[fmt]}"
    damage(bad)
    one_line_error(load_image_folder, root, image_size=8, match=[str(bad), "damaged image"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_damaged_image_found_while_training_is_named(tmp_path, fmt):
    root = make_folder(tmp_path, {"train": 8, "meta": 2, "test": 1}, fmt=fmt, size=(48, 48))
    own = load_image_folder(root, image_size=8, verify=False, mean_std=((0.5,), (0.25,)))
    bad = own.train_x[5]
    damage(bad)
    data = make_own_biased_data(own, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        for _ in make_train_dataset(data, batch_size=4, meta_batch_size=2, seed=0, epoch=0):
            pass
    named = name_unreadable(data, seed=0, epoch=0, batch_size=4, step=0)
    assert named is not None and named.startswith(f"{bad}: cannot be decoded")


def test_damaged_clothing1m_jpeg_is_named(tmp_path):
    paths = [write_image(tmp_path / "images" / f"{i}.jpg", "JPEG", size=(20, 20), seed=i)
             for i in range(6)]
    damage(paths[3])
    n = len(paths)
    data = BiasedData(train_x=np.array(paths), train_y=np.zeros(n, np.int64),
                      train_clean_y=np.zeros(n, np.int64), meta_x=np.array(paths[:2]),
                      meta_y=np.zeros(2, np.int64), test_x=np.array(paths[:2]),
                      test_y=np.zeros(2, np.int64), num_classes=2, mean=(0.5,) * 3,
                      std=(0.25,) * 3, augment=True, transition=np.eye(2),
                      realized_noise_rate=0.0, train_index=np.arange(n),
                      meta_index=np.arange(2), image_size=16)
    assert data.resize_crop and data.input_shape == (16, 16, 3)
    named = name_unreadable(data, seed=1, epoch=2, batch_size=2, step=1)
    assert named is not None and named.startswith(f"{paths[3]}: cannot be decoded")
    assert find_undecodable(paths[:3], lambda p: tf.io.decode_jpeg(tf.io.read_file(p))) is None


# ---------------------------------------------------------------- multi-worker input


class _Context:
    """A stand-in for `tf.distribute.InputContext` (num pipelines, pipeline id, replicas)."""

    def __init__(self, pipelines, pipeline_id, replicas):
        self.num_input_pipelines, self.input_pipeline_id = pipelines, pipeline_id
        self.num_replicas_in_sync = replicas

    def get_per_replica_batch_size(self, global_batch_size):
        return global_batch_size // self.num_replicas_in_sync


@pytest.mark.parametrize("from_files", [False, True])
def test_sharded_pipelines_together_give_the_global_batches(tmp_path, from_files):
    if from_files:
        own = load_image_folder(make_folder(tmp_path, {"train": 13, "meta": 6, "test": 1}),
                                image_size=8)
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (26, 8, 8, 3), dtype=np.uint8)
        own = OwnData("npz", "-", ("a", "b"), x, np.arange(26) % 2, x[:12], np.arange(12) % 2,
                      x[:2], np.arange(2), (0.5,) * 3, (0.25,) * 3, augment=True)
    data = make_own_biased_data(own, seed=0)
    args = dict(batch_size=8, meta_batch_size=4, seed=3, epoch=1)
    whole = list(make_train_dataset(data, **args))
    workers, replicas = 2, 4  # 2 replicas per worker
    parts = [list(make_train_dataset(data, **args, input_context=_Context(workers, w, replicas)))
             for w in range(workers)]
    assert all(len(p) == len(whole) * 2 for p in parts)

    def rows(batches):
        return sorted(tuple(np.round(r, 4).ravel()) for b in batches for r in b["x"].numpy())
    for step, (train, meta) in enumerate(whole):
        mine = [p[2 * step + r] for p in parts for r in range(2)]
        assert rows([train]) == rows([m[0] for m in mine])
        assert rows([meta]) == rows([m[1] for m in mine])
    skipped = list(make_train_dataset(data, **args, input_context=_Context(workers, 1, replicas),
                                      skip_steps=1))
    assert len(skipped) == len(parts[1]) - 2
    assert np.array_equal(skipped[0][0]["x"], parts[1][2][0]["x"])


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from mwnet_tf.data import OwnData, make_own_biased_data
from mwnet_tf.data.pipeline import make_train_dataset
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (26, 8, 8, 3), dtype=np.uint8)
own = OwnData("npz", "-", ("a", "b"), x, np.arange(26) % 2, x[:12], np.arange(12) % 2,
              x[:2], np.arange(2), (0.5,) * 3, (0.25,) * 3, augment=True)
data = make_own_biased_data(own, seed=0)
args = dict(batch_size=8, meta_batch_size=4, seed=3, epoch=1)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
dist = strategy.distribute_datasets_from_function(
    lambda ctx: make_train_dataset(data, **args, input_context=ctx))
whole = list(make_train_dataset(data, **args))
ok = []
for (train, meta), (wt, wm) in zip(dist, whole):
    got = tf.concat(strategy.experimental_local_results(train["x"]), 0).numpy()
    gm = tf.concat(strategy.experimental_local_results(meta["x"]), 0).numpy()
    rows = lambda a: sorted(map(tuple, np.round(a.reshape(len(a), -1), 4)))
    ok.append(rows(got) == rows(wt["x"].numpy()) and rows(gm) == rows(wm["x"].numpy()))
print(json.dumps({"steps": len(ok), "ok": all(ok) and len(ok) == len(whole)}))
"""


@pytest.mark.e2e
def test_distribute_datasets_from_function_under_mirrored_strategy(tmp_path):
    """Two logical CPUs (so in a process of its own): the replicas' batches of
    `distribute_datasets_from_function` together are the unsharded global batches."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"steps": 3, "ok": True}


# ---------------------------------------------------------------- bad input: one line each


def _folder_bad(tmp_path, case):
    root = make_folder(tmp_path, {"train": 2, "meta": 2})
    if case == "not an image":
        (tmp_path / "train" / "cat" / "notes.png").write_text("hello")
        return root, [os.path.join(root, "train", "cat", "notes.png"), "not an image"]
    if case == "empty class":
        os.makedirs(tmp_path / "train" / "eel")
        os.makedirs(tmp_path / "meta" / "eel")
        return root, [os.path.join(root, "train", "eel"), "empty class folder"]
    if case == "unknown meta class":
        write_image(tmp_path / "meta" / "cow" / "0.png")
        return root, ["'cow'", "not a class of train/"]
    if case == "class missing from meta":
        write_image(tmp_path / "train" / "cow" / "0.png")
        return root, ["'cow'", "no folder in meta/"]
    if case == "loose file":
        write_image(tmp_path / "train" / "stray.png")
        return root, [os.path.join(root, "train", "stray.png"), "class folders"]
    if case == "no meta folder":
        return make_folder(tmp_path / "x", {"train": 2}), ["meta", "missing"]
    if case == "damaged header":
        path = tmp_path / "meta" / "dog" / "0.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        return root, [str(path), "damaged PNG"]
    if case == "too few to hold out":
        return make_folder(tmp_path / "y", {"train": 2, "meta": 1}), ["'cat'", "hold out"]
    raise AssertionError(case)


FOLDER_CASES = ("not an image", "empty class", "unknown meta class", "class missing from meta",
                "loose file", "no meta folder", "damaged header", "too few to hold out")


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_bad_image_folder_is_a_one_line_error(tmp_path, case):
    root, parts = _folder_bad(tmp_path, case)
    one_line_error(load_image_folder, root, image_size=8, match=parts)


def _csv_bad(tmp_path, case):
    rows = image_rows(tmp_path, {"train": ["cat", "dog"], "meta": ["cat", "dog"] * 2})
    header = "path,label,split"
    if case == "missing file":
        rows.append("img/nowhere.png,cat,train")
        parts = ["img/nowhere.png", "no such file", "line 8"]
    elif case == "dot-dot":
        write_image(tmp_path.parent / f"{tmp_path.name}_outside.png")
        rows.append(f"../{tmp_path.name}_outside.png,cat,train")
        parts = [f"../{tmp_path.name}_outside.png", "leaves the data folder"]
    elif case == "symlink":
        outside = write_image(tmp_path.parent / f"{tmp_path.name}_target.png")
        os.symlink(outside, tmp_path / "img" / "link.png")
        rows.append("img/link.png,cat,train")
        parts = ["img/link.png", "symlink"]
    elif case == "unknown label":
        rows.append(rows[0].replace(",cat,train", ",cow,meta"))
        parts = ["label 'cow'", "line 8"]
    elif case == "mixed labels":
        rows.append(rows[0].replace(",cat,", ",3,"))
        parts = ["mix integers", "'3'"]
    elif case == "no split column":
        rows = [r.rsplit(",", 1)[0] for r in rows]
        header = "path,label"
        parts = ["no split column"]
    elif case == "bad split":
        rows.append(rows[0].replace(",train", ",valid"))
        parts = ["split 'valid'", "line 8"]
    elif case == "no label column":
        header = "path,class,split"
        parts = ["no label column"]
    elif case == "not an image":
        (tmp_path / "img" / "x.gif").write_text("GIF? no")
        rows.append("img/x.gif,cat,train")
        parts = [str(tmp_path / "img" / "x.gif"), "not an image"]
    else:
        raise AssertionError(case)
    return write_csv(tmp_path, rows, header), parts


CSV_CASES = ("missing file", "dot-dot", "symlink", "unknown label", "mixed labels",
             "no split column", "bad split", "no label column", "not an image")


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv_table_is_a_one_line_error(tmp_path, case):
    path, parts = _csv_bad(tmp_path, case)
    one_line_error(load_csv_table, path, image_size=8, match=parts)


def _npz_bad(tmp_path, case):
    x, y = tabular(12, classes=2)
    good = dict(x_train=x, y_train=y, x_meta=x, y_meta=y)
    if case == "pickled objects":
        good["x_meta"] = np.array([{"a": 1}] * 12, dtype=object)
        return write_npz(tmp_path, **good), ["x_meta", "Python objects"]
    if case == "lengths":
        good["y_train"] = y[:-1]
        return write_npz(tmp_path, **good), ["y_train has 11 labels for 12 rows"]
    if case == "shapes":
        good["x_meta"] = x[:, :3]
        return write_npz(tmp_path, **good), ["x_meta rows have shape (3,)"]
    if case == "label outside classes":
        good["class_names"] = np.array(["a"])
        return write_npz(tmp_path, **good), ["label 1", "outside the 1 classes"]
    if case == "missing keys":
        del good["y_meta"]
        return write_npz(tmp_path, **good), ["no y_meta"]
    if case == "not an npz":
        path = tmp_path / "data.npz"
        path.write_text("x,y\n1,2\n")
        return str(path), [str(path), "not a NumPy .npz file"]
    if case == "class without trusted rows":
        good["y_meta"] = np.zeros_like(y)
        return write_npz(tmp_path, **good), ["class '1' has no trusted (meta) rows"]
    if case == "test without labels":
        good["x_test"] = x
        return write_npz(tmp_path, **good), ["x_test and y_test go together"]
    raise AssertionError(case)


NPZ_CASES = ("pickled objects", "lengths", "shapes", "label outside classes", "missing keys",
             "not an npz", "test without labels", "class without trusted rows")


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_a_one_line_error(tmp_path, case):
    path, parts = _npz_bad(tmp_path, case)
    one_line_error(load_npz_arrays, path, match=[path] + parts)


def test_bad_tfds_requests_are_one_line_errors(mock_tfds, tmp_path):
    one_line_error(load_tfds_dataset, "two_images", match=["several image features",
                                                          "image, mask", "--image_key"])
    one_line_error(load_tfds_dataset, "two_images", image_key="label",
                   match=["--image_key=label", "image, mask"])
    one_line_error(load_tfds_dataset, "no_such_set_xyz", match=["tfds:no_such_set_xyz"])


def test_unprepared_tfds_set_is_a_one_line_error(tmp_path):
    one_line_error(load_tfds_dataset, "mnist", str(tmp_path),
                   match=["mnist is not prepared", str(tmp_path)])


def test_too_few_trusted_images_for_meta_per_class(tmp_path):
    own = load_image_folder(make_folder(tmp_path, {"train": 3, "meta": 3, "test": 1}),
                            image_size=8)
    one_line_error(make_own_biased_data, own, meta_per_class=4, seed=0,
                   match=["trusted set", "class 'cat' has only 3 images",
                          "meta_per_class=4"])


def test_load_own_data_dispatches_and_names_what_is_missing(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "meta": 2, "test": 1})
    assert load_own_data("folder", root, image_size=8).name == "folder"
    one_line_error(load_own_data, "npz", None, match=["--data_dir=FILE.npz"])
    one_line_error(load_own_data, "csv", root, match=["is a folder"])
    with pytest.raises(ValueError, match="unknown own data set"):
        load_own_data("tfds:", root)
    with unittest.mock.patch("mwnet_tf.data.custom.from_files.VERIFY_LIMIT", 0):
        assert not load_own_data("folder", root, image_size=8).verified
