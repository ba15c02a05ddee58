"""A meta set selected from the training set (`--meta_source=selected`): the selection rule
(`mwnet_tf.methods.meta_select`), its per-epoch state (`mwnet_tf.training.meta_set`), the
config checks, and own data without a trusted set at the loaders (fast: tiny arrays, a tiny
model, no training)."""

import dataclasses
import os

import numpy as np
import pytest
from test_own_data import image_rows, make_folder, one_line_error, write_csv, write_npz

from mwnet_tf.config import Config
from mwnet_tf.data import DataUnavailableError, load_csv_table, load_image_folder, load_npz_arrays
from mwnet_tf.data.bias import BiasedData
from mwnet_tf.data.custom.biased import DEFAULT_HELDOUT_FRACTION, make_own_biased_data
from mwnet_tf.methods.base import meta_as_training
from mwnet_tf.methods.meta_select import lowest_loss_per_class
from mwnet_tf.protocols import run_name

# ---------------------------------------------------------------- the rule


def _reference(losses, labels, k, num_classes):
    """Per class, the k smallest (loss, index) pairs: the rule written out plainly."""
    chosen = []
    for c in range(num_classes):
        pairs = sorted((np.inf if np.isnan(v) else v, i) for i, (v, y)
                       in enumerate(zip(losses, labels)) if y == c)
        chosen += [i for _, i in pairs[:k]]
    return sorted(chosen)


@pytest.mark.parametrize("seed", range(5))
def test_lowest_loss_per_class_is_the_k_smallest_of_every_class(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 200)
    losses = rng.exponential(1.0, 200).round(1)  # rounded: many ties
    losses[rng.integers(0, 200, 5)] = np.nan
    rows = lowest_loss_per_class(losses, labels, 7, 4)
    assert rows.dtype == np.int64 and list(rows) == sorted(rows)
    assert list(rows) == _reference(losses, labels, 7, 4)
    assert np.array_equal(np.bincount(labels[rows], minlength=4), [7, 7, 7, 7])
    for c in range(4):  # nothing left out of a class has a lower loss than what was taken
        taken = np.nan_to_num(losses[rows][labels[rows] == c], nan=np.inf)
        rest = np.setdiff1d(np.flatnonzero(labels == c), rows)
        assert np.nan_to_num(losses[rest], nan=np.inf).min() >= taken.max()


def test_ties_go_to_the_lower_index_and_nan_is_never_preferred():
    labels = np.array([1, 0, 1, 0, 1, 0, 1])
    assert list(lowest_loss_per_class(np.zeros(7), labels, 2, 2)) == [0, 1, 2, 3]
    losses = np.array([0.5, 0.2, 0.5, 0.2, 0.1, 0.2, 0.5])
    assert list(lowest_loss_per_class(losses, labels, 2, 2)) == [0, 1, 3, 4]
    losses = np.array([np.nan, 9.0, 3.0, 1.0, np.nan, 2.0, 5.0])
    assert list(lowest_loss_per_class(losses, labels, 2, 2)) == [2, 3, 5, 6]
    # the same arrays in another order give the same samples
    order = np.random.default_rng(0).permutation(7)
    rows = lowest_loss_per_class(losses[order], labels[order], 2, 2)
    assert sorted(order[rows]) == [2, 3, 5, 6]


def test_a_class_with_fewer_than_k_samples_is_a_one_line_error():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError) as info:
        lowest_loss_per_class(np.ones(8), labels, 3, 3)
    assert str(info.value) == ("class 1 has 2 training samples, fewer than the 3 per class a "
                               "selected meta set takes: lower --select_per_class")
    with pytest.raises(ValueError, match="class 'dog' has 2 training samples"):
        lowest_loss_per_class(np.ones(8), labels, 3, 3, class_names=("cat", "dog", "eel"))
    with pytest.raises(ValueError, match="class 3 has 0 training samples"):  # a class absent
        lowest_loss_per_class(np.ones(8), labels, 1, 4)
    with pytest.raises(ValueError, match="same length"):
        lowest_loss_per_class(np.ones(7), labels, 1, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        lowest_loss_per_class(np.ones(8), labels, 0, 3)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        lowest_loss_per_class(np.ones(8), labels, 1, 2)


# ---------------------------------------------------------------- the config


def test_config_takes_the_source_and_checks_its_flags():
    assert Config().meta_source == "trusted" and Config().select_per_class == 10
    c = Config(meta_source="selected", select_per_class=5)
    assert run_name(c) == "digits-uniform0.4-mwnet-selected-s0"
    assert run_name(Config()) == "digits-uniform0.4-mwnet-s0"
    with pytest.raises(ValueError, match=r"meta_source must be one of \('trusted', 'selected'\)"):
        Config(meta_source="random")
    with pytest.raises(ValueError, match="--select_per_class goes with --meta_source=selected"):
        Config(select_per_class=5)
    with pytest.raises(ValueError, match="select_per_class must be >= 1"):
        Config(meta_source="selected", select_per_class=0)
    with pytest.raises(ValueError, match="--weight_fn trains with a frozen weight function"):
        Config(meta_source="selected", method_params={"weight_fn": "runs/x/weight_fn"})


def test_selected_runs_get_a_row_of_their_own_in_the_tables():
    from mwnet_tf.reporting import tables
    assert tables.ADDED_FIELDS["meta_source"] == "trusted"
    assert tables.row_name(Config(meta_source="selected").to_dict()) == (
        "mwnet (meta_source=selected)")
    assert tables.row_name(Config().to_dict()) == "mwnet"
    assert tables.row_name({"method": "l2rw"}) == "l2rw"  # kept before the field existed


# ---------------------------------------------------------------- the per-epoch state


def _data(n=40, classes=4, corrupt_every=5):
    rng = np.random.default_rng(0)
    clean = np.arange(n) % classes
    given = np.where(np.arange(n) % corrupt_every == 0, (clean + 1) % classes, clean)
    x = rng.integers(0, 256, (n, 6), dtype=np.uint8)
    return BiasedData(
        train_x=x, train_y=given.astype(np.int64), train_clean_y=clean.astype(np.int64),
        meta_x=x[:0], meta_y=np.zeros(0, np.int64), test_x=x[:8], test_y=clean[:8],
        num_classes=classes, mean=(0.5,), std=(0.25,), augment=False,
        transition=np.eye(classes), realized_noise_rate=0.2, train_index=np.arange(n) + 100,
        meta_index=np.zeros(0, np.int64))


def test_selected_meta_ranks_by_the_models_losses_and_keeps_the_given_labels():
    import tensorflow as tf

    from mwnet_tf.data.pipeline import normalize
    from mwnet_tf.models import build_classifier
    from mwnet_tf.training.meta_set import VARIABLE, SelectedMeta, first_selection

    data = _data()
    model = build_classifier("mlp", 4, (6,), seed=3)
    selection = SelectedMeta(data, 3, batch_size=7)  # batches of 7: a shorter last one
    # before any ranking: the first 3 of every class by index
    assert np.array_equal(selection.rows(), first_selection(data, 3))
    assert list(selection.rows()) == _reference(np.zeros(40), data.train_y, 3, 4)
    logits = model(normalize(data.train_x, data.mean, data.std), training=False).numpy()
    logits = logits.astype(np.float64)
    expected = (np.log(np.exp(logits).sum(1)) - logits[np.arange(40), data.train_y])
    losses = selection.losses(model)
    np.testing.assert_allclose(losses, expected, rtol=1e-6, atol=1e-9)
    rows = selection.select(model)
    assert np.array_equal(rows, lowest_loss_per_class(losses, data.train_y, 3, 4))
    assert np.array_equal(selection.indices.numpy(), rows)
    assert set(selection.trackables()) == {VARIABLE}
    meta = selection.data()
    assert np.array_equal(meta.meta_x, data.train_x[rows])
    assert np.array_equal(meta.meta_y, data.train_y[rows])  # given labels, not the true ones
    assert np.array_equal(meta.meta_true_y, data.train_clean_y[rows])
    assert np.array_equal(meta.meta_index, data.train_index[rows])
    clean = float(np.mean(data.train_y[rows] == data.train_clean_y[rows]))
    assert selection.record() == {"meta_clean_fraction": clean}
    assert selection.summary("classifier")["size"] == 12
    # as training data (fine_tune's second stage), its wrong labels stay marked wrong
    as_train = meta_as_training(meta)
    assert np.array_equal(as_train.corrupted, data.train_y[rows] != data.train_clean_y[rows])
    # where the truth is unknown there is no clean fraction
    unknown = SelectedMeta(dataclasses.replace(data, corruption_known=False), 3, batch_size=7)
    assert unknown.record() == {}
    with pytest.raises(ValueError, match="fewer than the 11 per class"):
        SelectedMeta(data, 11, batch_size=7)
    assert isinstance(selection.indices, tf.Variable)


# ---------------------------------------------------------------- own data without a trusted set


def test_a_folder_without_meta_is_refused_unless_the_meta_set_is_selected(tmp_path):
    root = make_folder(tmp_path, {"train": 10}, classes=("cat", "dog"))
    one_line_error(load_image_folder, root, image_size=8,
                   match=["meta", "missing", "--meta_source=selected"])
    own = load_image_folder(root, image_size=8, need_trusted=False)
    assert own.meta_x is None and own.test_labels_given
    assert own.test_held_out == DEFAULT_HELDOUT_FRACTION
    assert np.array_equal(np.bincount(own.test_y), [1, 1]) and len(own.train_y) == 18
    assert not set(own.test_x) & set(own.train_x)
    assert "no trusted set" in own.describe() and "heldout_noisy_accuracy" in own.describe()
    assert own.summary()["test_labels_given"] and own.summary()["trusted"] is None
    data = make_own_biased_data(own)
    assert data.test_name == "heldout_noisy" and len(data.meta_y) == 0
    assert data.meta_x.shape == (0,) and len(data.train_y) == 18
    with pytest.raises(ValueError, match="has no trusted set: the meta set is selected"):
        make_own_biased_data(own, meta_per_class=2)
    # with test/, the test set is a test set
    make_folder(tmp_path, {"test": 2}, classes=("cat", "dog"))
    own = load_image_folder(root, image_size=8, need_trusted=False)
    assert not own.test_labels_given and len(own.test_y) == 4 and len(own.train_y) == 20
    assert make_own_biased_data(own).test_name == "test"


def test_a_table_without_split_column_or_meta_rows_trains_with_a_selected_meta_set(tmp_path):
    rows = image_rows(tmp_path, {"train": ["cat", "dog"] * 10})
    plain = write_csv(tmp_path, [r.rsplit(",", 1)[0] for r in rows], "path,label", "plain.csv")
    one_line_error(load_csv_table, plain, image_size=8,
                   match=["no split column", "--meta_source=selected"])
    own = load_csv_table(plain, image_size=8, need_trusted=False, test_fraction=0.2)
    assert own.meta_x is None and own.test_labels_given and own.test_held_out == 0.2
    assert (len(own.train_y), len(own.test_y)) == (16, 4)
    split = write_csv(tmp_path, rows, "path,label,split", "split.csv")
    one_line_error(load_csv_table, split, image_size=8,
                   match=["no meta rows", "--meta_source=selected"])
    assert load_csv_table(split, image_size=8, need_trusted=False).test_labels_given


def test_arrays_without_x_meta_train_with_a_selected_meta_set(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    path = write_npz(tmp_path, x_train=x, y_train=y, y_train_true=y)
    one_line_error(load_npz_arrays, path, match=["no x_meta, y_meta", "--meta_source=selected"])
    own = load_npz_arrays(path, need_trusted=False)
    assert own.meta_x is None and own.test_labels_given and len(own.test_y) == 4
    assert len(own.train_true_y) == len(own.train_y) == 36
    half = write_npz(tmp_path, "half.npz", x_train=x, y_train=y, x_meta=x[:4])
    with pytest.raises(DataUnavailableError, match="x_meta and y_meta go together"):
        load_npz_arrays(half, need_trusted=False)
    with_test = write_npz(tmp_path, "test.npz", x_train=x, y_train=y, x_test=x[:6],
                          y_test=y[:6])
    own = load_npz_arrays(with_test, need_trusted=False)
    assert not own.test_labels_given and len(own.train_y) == 40
    assert os.path.basename(own.source) == "test.npz"


# ---------------------------------------------------------------- the docs say what the code does


def _page(name):
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                           name)) as f:
        return " ".join(f.read().split())


def test_the_docs_state_the_rule_its_defaults_and_the_naming_of_a_noisy_held_out_part():
    from mwnet_tf.methods import get
    from mwnet_tf.methods.base import Method

    data, methods = _page("data.md"), _page("methods.md")
    k = Config().select_per_class
    assert f"`--select_per_class` (default {k}, as CMW-Net-SL)" in data
    assert f"`--select_per_class` (k, default {k})" in methods
    assert f"(default **{DEFAULT_HELDOUT_FRACTION:g}**" in data
    assert "`selected` does **not** become the default where no trusted set exists" in data
    for name in ("heldout_noisy_accuracy", "best_heldout_noisy_accuracy",
                 "per_class_heldout_noisy_accuracy", "`heldout_noisy/`", "test_labels_given"):
        assert name in data, name
    # the ranking model and the first epoch, as the code has them
    assert Method.ranked_by == "classifier"
    assert "the classifier being trained, as the previous epoch left it" in methods
    assert "ranks by the classifier **as initialized**: there is no warm-up" in methods
    # where each meta method reads the set, as its hooks say
    from mwnet_tf.methods.base import Stage
    # (the hooks read the stage alone)
    assert get("glc").reads_meta_at_end(None, Stage("estimate", 1))
    assert not get("glc").reads_meta_at_end(None, Stage("corrected", 1))
    assert not get("fine_tune").reads_meta_at_end(None, Stage("fine-tune", 1))
    for text in ("`mwnet` and `l2rw` select at every epoch",
                 "`glc` selects at the end of its estimate stage",
                 "`fine_tune` reads no meta set in its first stage and selects at every epoch of "
                 "its fine-tuning stage"):
        assert text in methods, text



def test_a_run_folder_started_before_the_field_existed_resumes_as_trusted(tmp_path):
    from mwnet_tf import train
    from mwnet_tf.cli.train_flags import config_to_flagfile

    work = tmp_path / "run"
    (work / "checkpoints").mkdir(parents=True)
    old = [line for line in config_to_flagfile(Config(), str(work)).splitlines()
           if "meta_source" not in line and "select_per_class" not in line]
    (work / "flags.cfg").write_text("\n".join(old) + "\n")
    train.prepare_workdir(Config(), str(work))  # the same run: resumes
    with pytest.raises(ValueError, match=r"holds a run with other settings \(meta_source\)"):
        train.prepare_workdir(Config(meta_source="selected"), str(work))
