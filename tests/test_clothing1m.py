"""Clothing1M: the loader on a tiny folder in the published layout, the JPEG pipeline, ImageNet
weights from a local HDF5 file, and one epoch end to end through the command line."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from clothing1m_files import write_clothing1m, write_legacy_h5

from mwnet_tf.data import DataUnavailableError
from mwnet_tf.data.clothing1m import load_clothing1m, resize_for
from mwnet_tf.data.pipeline import (
    center_crop,
    decode_jpeg,
    make_test_dataset,
    make_train_dataset,
)

SIZE = 32  # crops of 32x32 after a resize to 37x37 (the paper's 224 / 256)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("clothing1m"))
    return root, write_clothing1m(root)


def test_loader_reads_the_published_layout(folder, tmp_path):
    root, keys = folder
    data = load_clothing1m(root, SIZE)
    assert (len(data.train_y), len(data.meta_y), len(data.test_y)) == (42, 14, 14)
    assert data.from_files and data.input_shape == (SIZE, SIZE, 3) and data.num_classes == 14
    assert list(data.train_x) == [os.path.join(root, k) for k in keys["train"]]
    assert list(data.train_y) == [keys["noisy"][k] for k in keys["train"]]  # noisy labels
    assert list(data.meta_y) == [keys["clean"][k] for k in keys["val"]]  # clean val = meta
    assert list(data.test_y) == [keys["clean"][k] for k in keys["test"]]
    # two of every class's three images have clean labels too, one of them another one
    assert data.realized_noise_rate == 0.5 and data.corrupted.sum() == 14
    assert not data.corruption_known  # clean labels for the overlap only: no clean/corrupted split
    moved = str(tmp_path / "c")  # annotation files in annotations/, as some copies have them
    write_clothing1m(moved, annotations="annotations")
    assert len(load_clothing1m(moved).train_y) == 42


@pytest.mark.parametrize("damage, needle", [
    ("no clean_label_kv.txt", "clean_label_kv.txt: missing"),
    ("a missing image", "missing: noisy_train_key_list.txt names it"),
    ("a label 14", "noisy_label_kv.txt: line 1 has label 14 outside 0..13"),
    ("a line without a label", "noisy_label_kv.txt: line 1 is not"),
    ("a val key without a clean label", "clean_val_key_list.txt: key images/x.jpg has no"),
    ("no images folder", "images: missing"),
    ("13 class names", "holds 13 class names"),
])
def test_loader_names_the_file_in_one_line(tmp_path, damage, needle):
    root = str(tmp_path)
    keys = write_clothing1m(root)
    if damage == "no clean_label_kv.txt":
        os.remove(f"{root}/clean_label_kv.txt")
    elif damage == "a missing image":
        os.remove(os.path.join(root, keys["train"][5]))
    elif damage in ("a label 14", "a line without a label"):
        lines = open(f"{root}/noisy_label_kv.txt").read().splitlines()
        lines[0] = lines[0].split()[0] + (" 14" if damage == "a label 14" else "")
        open(f"{root}/noisy_label_kv.txt", "w").write("\n".join(lines) + "\n")
    elif damage == "a val key without a clean label":
        with open(f"{root}/clean_val_key_list.txt", "a") as f:
            f.write("images/x.jpg\n")
    elif damage == "no images folder":
        shutil.rmtree(f"{root}/images")
    else:
        names = open(f"{root}/category_names_eng.txt").read().splitlines()[:13]
        open(f"{root}/category_names_eng.txt", "w").write("\n".join(names) + "\n")
    with pytest.raises(DataUnavailableError) as e:
        load_clothing1m(root, SIZE)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_jpeg_pipeline_crops_flips_and_repeats(folder):
    root, _ = folder
    data = load_clothing1m(root, SIZE)
    first = list(make_train_dataset(data, batch_size=8, meta_batch_size=7, seed=3, epoch=0))
    again = list(make_train_dataset(data, batch_size=8, meta_batch_size=7, seed=3, epoch=0))
    assert len(first) == 5
    (train, meta_batch) = first[0]
    assert train["x"].shape == (8, SIZE, SIZE, 3) and train["x"].dtype == tf.float32
    assert meta_batch["x"].shape == (7, SIZE, SIZE, 3)
    for (a, ma), (b, mb) in zip(first, again):  # seeded: the same batches
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(ma["x"], mb["x"])
    test = next(iter(make_test_dataset(data, batch_size=14)))
    image = center_crop(decode_jpeg(tf.constant(data.test_x[0]), resize_for(SIZE)), SIZE)
    expected = (image.numpy() / 255.0 - np.array(data.mean)) / np.array(data.std)
    np.testing.assert_allclose(test["x"][0].numpy(), expected, atol=1e-5)
    assert resize_for(224) == 256


def test_a_file_that_is_not_a_jpeg_is_named(tmp_path):
    path = str(tmp_path / "bad.jpg")
    open(path, "wb").write(b"<html>404</html>")
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.jpg"):
        decode_jpeg(tf.constant(path), 37)


@pytest.fixture(scope="module")
def resnets():
    from mwnet_tf.models import build_classifier
    return [build_classifier("resnet50", 14, (SIZE, SIZE, 3), seed=s) for s in (0, 1)]


@pytest.mark.e2e
def test_pretrained_legacy_h5_loads_by_name_and_keeps_the_head(resnets, tmp_path):
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from mwnet_tf.models.pretrained import backbone_layers, load_pretrained

    source, target = resnets
    backbone = {layer.name for layer in backbone_layers(source)}
    path = str(tmp_path / "resnet50_notop.h5")
    write_legacy_h5(path, source, include=lambda layer: layer.name in backbone
                    or not layer.weights)
    head = [w.numpy() for w in target.layers[-1].weights]
    assert load_pretrained(target, path) == len(backbone) == 106
    for a, b in zip(backbone_layers(source), backbone_layers(target)):
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    for before, w in zip(head, target.layers[-1].weights):  # the head stays as it was
        np.testing.assert_array_equal(before, w.numpy())
    # Keras' own loader of this layout, by name, reads the same arrays from the file
    import h5py
    fresh = keras.Model(source.input, source.get_layer("avg_pool").output)
    for w in fresh.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    with h5py.File(path, "r") as f:
        legacy_h5_format.load_weights_from_hdf5_group_by_name(f, fresh)
    np.testing.assert_array_equal(fresh.get_layer("conv5_block3_3_bn").weights[3].numpy(),
                                  source.get_layer("conv5_block3_3_bn").weights[3].numpy())
    # a Keras 3 .weights.h5 of the backbone
    keras3 = str(tmp_path / "backbone.weights.h5")
    keras.Model(source.input, source.get_layer("avg_pool").output).save_weights(keras3)
    for w in target.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    load_pretrained(target, keras3)
    np.testing.assert_array_equal(target.get_layer("conv1_conv").weights[0].numpy(),
                                  source.get_layer("conv1_conv").weights[0].numpy())


def test_wrong_pretrained_files_are_one_line_errors(resnets, tmp_path):
    import keras

    from mwnet_tf.models.pretrained import load_pretrained

    text = tmp_path / "weights.h5"
    text.write_text("not weights")
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs))
    write_legacy_h5(str(tmp_path / "other.h5"), other)
    other.save_weights(str(tmp_path / "other.weights.h5"))
    for path, needle in ((tmp_path / "none.h5", "no such file"), (text, "not an HDF5"),
                         (tmp_path / "other.h5", "no weights for layer conv1_conv"),
                         (tmp_path / "other.weights.h5", "not weights of this ResNet-50")):
        with pytest.raises(ValueError) as e:
            load_pretrained(resnets[1], str(path))
        assert needle in str(e.value) and str(path) in str(e.value), str(e.value)
        assert "\n" not in str(e.value)


def _args(root, workdir, *extra):
    return ["--dataset=clothing1m", f"--data_dir={root}", f"--image_size={SIZE}",
            "--epochs=1", "--lr_decay_epochs=", "--batch_size=8", "--meta_batch_size=7",
            "--eval_batch_size=14", "--progress_seconds=0", f"--workdir={workdir}", *extra]


@pytest.mark.e2e
def test_one_epoch_through_the_command_line(cli, folder, tmp_path):
    """MW-Net on the tiny model (ResNet-50's meta step takes minutes to compile on a CPU)."""
    root, _ = folder
    proc = cli.run(*_args(root, tmp_path / "run", "--model=tiny"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clothing1m: 42 training images (50.0% labels corrupted), 14 meta, 14 test" in (
        proc.stdout)
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert results["realized_noise_rate"] == 0.5 and len(results["history"]) == 1
    assert "weight_histogram" in results  # the tracked samples, decoded as center crops
    assert "--dataset=clothing1m" in open(tmp_path / "run" / "flags.cfg").read()


@pytest.mark.slow  # about 70 s on 2 cores: run with `python -m pytest -m slow tests`
def test_one_epoch_of_resnet50_from_a_pretrained_file(cli, folder, resnets, tmp_path):
    """Cross-entropy (its step compiles in a minute on a CPU; MW-Net's takes three)."""
    from mwnet_tf.models.pretrained import backbone_layers

    root, _ = folder
    backbone = {layer.name for layer in backbone_layers(resnets[0])}
    path = str(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    write_legacy_h5(path, resnets[0], include=lambda layer: layer.name in backbone)
    proc = cli.run(*_args(root, tmp_path / "run", "--method=ce", f"--pretrained={path}"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"backbone weights from {path}" in proc.stdout
    assert f"--pretrained={path}" in open(tmp_path / "run" / "flags.cfg").read()
