"""label_issues.csv: the ranking, the detection metrics, every method's label_scores hook, the
table and its CSV."""

import csv
import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mwnet_tf import files, methods
from mwnet_tf.config import METHODS, Config
from mwnet_tf.data import make_biased_data
from mwnet_tf.methods import Context, steps
from mwnet_tf.models import build_classifier
from mwnet_tf.outputs import label_issues as li
from mwnet_tf.training import loop

RUN = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
           lr_decay_epochs=(1,), batch_size=10, meta_batch_size=10, eval_batch_size=16,
           progress_seconds=0.0, seed=3, tensorboard_images=False)


# --- metrics on constructed cases ------------------------------------------------------------

def test_auroc_perfect_reversed_and_all_tied():
    wrong = np.array([True, True, False, False, False])
    assert li.auroc(np.array([5.0, 4, 3, 2, 1]), wrong) == 1.0
    assert li.auroc(np.array([1.0, 2, 3, 4, 5]), wrong) == 0.0
    assert li.auroc(np.zeros(5), wrong) == 0.5
    assert li.auroc(np.arange(3.0), np.zeros(3, bool)) is None
    assert li.auroc(np.arange(3.0), np.ones(3, bool)) is None


@pytest.mark.parametrize("seed", range(5))
def test_auroc_with_ties_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 300).astype(float)  # many ties
    positives = rng.random(300) < 0.2 + 0.1 * scores / 5
    assert li.auroc(scores, positives) == pytest.approx(roc_auc_score(positives, scores),
                                                        abs=1e-12)
    continuous = rng.normal(size=300)
    assert li.auroc(continuous, positives) == pytest.approx(
        roc_auc_score(positives, continuous), abs=1e-12)


def test_average_ranks_share_the_mean_rank_of_a_tie():
    np.testing.assert_array_equal(li.average_ranks(np.array([3.0, 1, 3, 2, 3])),
                                  [4, 1, 4, 2, 4])


def test_detection_metrics_of_perfect_and_reversed_rankings():
    wrong = np.array([True, True, True, False, False, False, False])
    score = -np.arange(7.0)  # rank order: decreasing score
    perfect = li.detection_metrics(score, wrong)
    assert perfect == {"auroc": 1.0, "precision_at_k": 1.0, "recall_at_k": 1.0, "k": 3, "n": 7}
    reversed_ = li.detection_metrics(score, wrong[::-1])
    assert reversed_["auroc"] == 0.0 and reversed_["precision_at_k"] == 0.0
    assert reversed_["recall_at_k"] == 0.0 and reversed_["k"] == 3
    half = li.detection_metrics(score, np.array([True, False, True, False, False, False, True]))
    assert half["precision_at_k"] == pytest.approx(2 / 3)
    assert li.detection_metrics(score, np.zeros(7, bool)) is None


def test_ranking_by_the_first_score_then_the_second_then_position_nan_last():
    suspicion = np.array([0.0, 1.0, 1.0, np.nan, 2.0, 1.0])
    losses = np.array([9.0, 0.5, 3.0, 9.0, 0.0, 0.5])
    np.testing.assert_array_equal(li.ranking(suspicion, losses), [4, 2, 1, 5, 0, 3])


# --- the hooks of every method on a tiny model ---------------------------------------------

@pytest.fixture(scope="module")
def biased():
    rng = np.random.default_rng(0)
    from mwnet_tf.data import Dataset

    c, per_class, shape = 3, 14, (4, 4, 1)
    y = np.repeat(np.arange(c), per_class)
    ds = Dataset(name="synthetic", train_x=rng.integers(0, 256, (len(y), *shape), np.uint8),
                 train_y=y.astype(np.int64),
                 test_x=rng.integers(0, 256, (6, *shape), np.uint8),
                 test_y=np.repeat(np.arange(c), 2).astype(np.int64), num_classes=c,
                 mean=(0.5,), std=(0.25,), augment=False)
    return make_biased_data(ds, noise="uniform", rate=0.5, meta_per_class=4, seed=0)


def _method(name, data, **params):
    source = "selected" if name == "cmwnet_sl" else "trusted"  # cmwnet_sl's only source
    config = Config(**dict(RUN, method=name, method_params=params, meta_source=source))

    def new_classifier(seed):
        return build_classifier("tiny", data.num_classes, data.input_shape, seed=seed)

    classifier = new_classifier(config.seed)
    optimizer = loop.make_optimizer(config)
    optimizer.build(classifier.trainable_variables)
    return methods.get(name)(Context(
        config=config, data=data, classifier=classifier, optimizer=optimizer,
        options=steps.StepOptions(config.batch_size, config.meta_batch_size),
        new_classifier=new_classifier,
        new_optimizer=lambda kind: loop.make_optimizer(config, kind)))


PARAMS = {"confident_learning": {"cl_folds": 2}, "fine_tune": {}}


@pytest.mark.parametrize("name", METHODS)
def test_every_methods_label_scores_are_finite_and_cover_the_training_set(name, biased):
    method = _method(name, biased, **PARAMS.get(name, {}))
    if name == "confident_learning":  # as after the folds: out-of-fold probabilities, kept
        rng = np.random.default_rng(1)
        oof = rng.dirichlet(np.ones(biased.num_classes), len(biased.train_y))
        method.out_of_fold.assign(oof)
        method.folds_done.assign(method.k)
        method.kept.assign(rng.random(len(biased.train_y)) < 0.7)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    n = len(biased.train_y)
    for column, values in table.items():
        if values is not None:
            assert len(values) == n, column
            if values.dtype.kind == "f":
                assert np.all(np.isfinite(values)), column
    np.testing.assert_array_equal(table["rank"], np.arange(1, n + 1))
    assert sorted(table["index"]) == sorted(biased.train_index)
    if name in ("mwnet", "cmwnet", "cmwnet_sl", "l2rw", "confident_learning", "co_teaching"):
        assert table["weight"] is not None
    else:
        assert table["weight"] is None
    if name in ("confident_learning", "co_teaching"):
        assert table["flagged"] is not None
    detection = li.label_issue_detection(table)
    assert detection["k"] == int(biased.corrupted.sum()) and 0 <= detection["auroc"] <= 1


def test_mwnet_weight_is_the_weight_functions_and_the_file_is_in_loss_order(biased):
    method = _method("mwnet", biased)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    np.testing.assert_allclose(table["weight"], method.weight_of(table["loss"]), rtol=1e-6)
    np.testing.assert_allclose(table["suspicion"], 1.0 - table["weight"])
    assert np.all(np.diff(table["loss"]) <= 0)  # largest loss first, whatever the weights


def test_l2rw_weights_are_the_tracked_figures_weights_in_batches_of_the_run(biased):
    import tensorflow as tf

    from mwnet_tf.data.pipeline import normalize

    method = _method("l2rw", biased)
    probs, losses = li.classifier_outputs(method.eval_model(), biased, 16)
    scores = method.label_scores(losses, probs, biased.train_y)
    # the same weights as the figures' code (sample_weights) on the whole set at once
    x = normalize(tf.constant(biased.train_x), biased.mean, biased.std)
    expected = method.sample_weights(x, tf.constant(biased.train_y, tf.int32), losses)
    np.testing.assert_allclose(scores["weight"], expected, rtol=1e-5, atol=1e-6)
    # n * w_i per batch of the run's size: each full batch's weights sum to its size (or 0)
    n = method.ctx.options.global_batch_size
    for start in range(0, len(losses) - n + 1, n):
        total = scores["weight"][start:start + n].sum()
        assert total == pytest.approx(n, rel=1e-4) or total == 0


def test_confident_learning_keeps_its_flags_and_self_confidence_as_columns(biased):
    method = _method("confident_learning", biased, cl_folds=2)
    rng = np.random.default_rng(2)
    n = len(biased.train_y)
    oof = rng.dirichlet(np.ones(biased.num_classes), n)
    flagged = rng.random(n) < 0.3
    method.out_of_fold.assign(oof)
    method.folds_done.assign(method.k)
    method.kept.assign(~flagged)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    assert np.all(np.diff(table["loss"]) <= 0)  # the file's order: the loss
    # cleanlab's own order (flagged first, each group by increasing self-confidence) is the
    # suspicion column's
    np.testing.assert_allclose(table["suspicion"],
                               table["flagged"] + 1.0 - table["self_confidence"])
    position = {int(j): i for i, j in enumerate(biased.train_index)}
    rows = [position[int(j)] for j in table["index"]]
    np.testing.assert_allclose(table["self_confidence"],
                               oof[rows, biased.train_y[rows]])
    np.testing.assert_array_equal(table["weight"], (~table["flagged"]).astype(float))


def test_co_teaching_keeps_the_small_loss_fraction_at_the_final_forget_rate(biased):
    method = _method("co_teaching", biased, ct_forget_rate=0.25)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    n = len(biased.train_y)
    dropped = n - round(0.75 * n)
    assert table["flagged"][:dropped].all() and not table["flagged"][dropped:].any()
    assert np.all(np.diff(table["loss"]) <= 0)


# --- the table, the CSV and its head --------------------------------------------------------

def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_is_complete_and_sorted(biased, tmp_path):
    method = _method("mwnet", biased)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    path = li.write_label_issues(str(tmp_path / files.LABEL_ISSUES), table)
    rows = _read_csv(path)
    assert list(rows[0]) == [*li.COLUMNS, *li.TRUTH_COLUMNS]
    assert len(rows) == len(biased.train_y)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert sorted(int(r["index"]) for r in rows) == sorted(biased.train_index.tolist())
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True)
    for r in rows:
        assert (r["corrupted"] == "true") == (r["given_label"] != r["true_label"])
        assert r["flagged"] == ""  # MW-Net gives no verdict of its own
        assert 0 < float(r["predicted_probability"]) <= 1
    assert [p.name for p in tmp_path.iterdir()] == [files.LABEL_ISSUES]  # no temporary left


def test_a_failed_write_leaves_the_old_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old\n")

    def rows():
        yield [1]
        raise OSError("disk full")
    from mwnet_tf.files import write_csv
    with pytest.raises(OSError):
        write_csv(str(path), ["a"], rows())
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


class _Scores:
    """A stand-in method with given scores."""
    name = "given"

    def __init__(self, suspicion):
        self.suspicion = suspicion

    def label_scores(self, losses, probabilities, labels):
        return {"suspicion": self.suspicion, "weight": None}


def test_a_signal_of_the_truth_detects_perfectly_and_its_reverse_not_at_all(biased):
    model = build_classifier("tiny", biased.num_classes, biased.input_shape, seed=0)
    bad = biased.corrupted.astype(float)
    perfect = li.label_issue_detection(
        li.compute_label_issues(model, _Scores(bad), biased, 16))
    assert perfect["signal_auroc"] == 1.0 and perfect["signal_precision_at_k"] == 1.0
    assert perfect["k"] == int(bad.sum())
    # the file is in loss order whatever the signal: its AUROC is the loss's
    assert perfect["auroc"] == perfect["loss_auroc"]
    assert perfect["precision_at_k"] == perfect["loss_precision_at_k"]
    worst = li.label_issue_detection(
        li.compute_label_issues(model, _Scores(-bad), biased, 16))
    assert worst["signal_auroc"] == 0.0 and worst["signal_precision_at_k"] == 0.0
    assert worst["auroc"] == perfect["auroc"]


def test_a_weight_that_rises_with_the_loss_cannot_turn_the_file_upside_down(biased):
    model = build_classifier("tiny", biased.num_classes, biased.input_shape, seed=0)
    _, losses = li.classifier_outputs(model, biased, 16)
    rising = _Scores(-losses)  # weight rising with the loss: low loss most suspect
    table = li.compute_label_issues(model, rising, biased, 16)
    found = li.label_issue_detection(table)
    assert np.all(np.diff(table["loss"]) <= 0)
    assert found["auroc"] == found["loss_auroc"]
    assert found["signal_auroc"] == pytest.approx(1.0 - found["loss_auroc"], abs=1e-6)


def test_truth_unknown_gives_no_truth_columns_and_no_metrics(biased):
    unknown = dataclasses.replace(biased, realized_noise_rate=float("nan"))
    model = build_classifier("tiny", biased.num_classes, biased.input_shape, seed=0)
    table = li.compute_label_issues(model, _Scores(np.zeros(len(biased.train_y))), unknown, 16)
    assert "true_label" not in table and li.label_issue_detection(table) is None


def test_a_hook_of_the_wrong_length_is_an_error(biased):
    model = build_classifier("tiny", biased.num_classes, biased.input_shape, seed=0)
    with pytest.raises(ValueError, match="shape"):
        li.compute_label_issues(model, _Scores(np.zeros(3)), biased, 16)


def test_render_head_shows_the_top_rows(biased):
    method = _method("co_teaching", biased)
    table = li.compute_label_issues(method.eval_model(), method, biased, batch_size=16)
    text = li.render_head(table)
    lines = text.splitlines()
    assert len(lines) == 2 + li.HEAD_ROWS
    assert "given_label" in lines[1] and "flagged" in lines[1]
    assert lines[2].split()[0] == "1" and lines[-1].split()[0] == "10"


def test_data_read_from_files_are_listed_by_path_without_truth(tmp_path):
    import tensorflow as tf

    from mwnet_tf.data.pipeline import load_images, normalize

    rng = np.random.default_rng(4)
    paths = []
    for i in range(6):
        path = str(tmp_path / f"{i}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(rng.integers(0, 256, (12, 10, 3), np.uint8)))
        paths.append(path)
    labels = np.array([0, 1, 2, 0, 1, 2])
    data = dataclasses.replace(
        _files_template(), train_x=np.array(paths), train_y=labels,
        train_clean_y=labels, train_index=np.arange(6), image_size=8)
    model = build_classifier("tiny", 3, (8, 8, 3), seed=0)
    table = li.compute_label_issues(model, _Scores(np.arange(6.0)), data, batch_size=4)
    assert sorted(table["path"]) == sorted(paths) and "index" not in table
    rows = [paths.index(p) for p in table["path"]]
    assert "true_label" not in table and li.label_issue_detection(table) is None
    logits = model(normalize(load_images(data, data.train_x), data.mean, data.std),
                   training=False)
    expected = -tf.nn.log_softmax(tf.cast(logits, tf.float64)).numpy()[np.arange(6), labels]
    np.testing.assert_allclose(table["loss"], expected[rows], rtol=1e-6)
    assert np.all(np.diff(table["loss"]) <= 0)
    # own image files (not Clothing1M) with a realized noise rate: the truth is known
    own = dataclasses.replace(data, resize_crop=False, realized_noise_rate=0.0)
    table = li.compute_label_issues(model, _Scores(np.arange(6.0)), own, batch_size=4)
    rows = [paths.index(p) for p in table["path"]]
    assert list(table["true_label"]) == list(labels[rows])
    assert li.label_issue_detection(table) is None  # no wrong label to detect


def _files_template():
    from mwnet_tf.data import Dataset

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    ds = Dataset(name="synthetic", train_x=rng.integers(0, 256, (12, 8, 8, 3), np.uint8),
                 train_y=y.astype(np.int64), test_x=rng.integers(0, 256, (3, 8, 8, 3), np.uint8),
                 test_y=np.arange(3, dtype=np.int64), num_classes=3, mean=(0.5,) * 3,
                 std=(0.25,) * 3, augment=False)
    return make_biased_data(ds, noise="none", rate=0.0, meta_per_class=1, seed=0)


def test_feature_arrays_that_are_not_images(biased):
    rng = np.random.default_rng(6)
    n = len(biased.train_y)
    feats = dataclasses.replace(biased, train_x=rng.normal(size=(n, 5)), mean=(0.0,),
                                std=(1.0,))
    method = _method("co_teaching", feats)
    table = li.compute_label_issues(method.eval_model(), method, feats, batch_size=16)
    assert len(table["rank"]) == n and np.all(np.isfinite(table["loss"]))


@pytest.mark.parametrize("weights, trend", [
    (np.linspace(0.9, 0.1, 101), "falls"),
    (np.linspace(0.48, 0.80, 101), "rises"),
    (np.full(101, 0.5) + 0.004 * np.sin(np.arange(101)), "flat"),
    (np.r_[np.linspace(0.2, 0.9, 50), np.linspace(0.9, 0.1, 51)], "not monotone"),
])
def test_weight_trend_tells_a_falling_function_from_the_others(weights, trend):
    from mwnet_tf.training.diagnostics import weight_trend

    out = weight_trend(np.linspace(0, 9, len(weights)), weights)
    assert out == {"weight_function_trend": trend,
                   "weight_function_decreasing": trend == "falls"}
