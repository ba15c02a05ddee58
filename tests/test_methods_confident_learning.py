"""Confident learning (Northcutt et al. 2021, through cleanlab): folds, out-of-fold
probabilities, the kept set, resume and errors."""

import json
import types

import numpy as np
import pytest
from cleanlab.filter import find_label_issues

from mwnet_tf.config import Config
from mwnet_tf.data import make_biased_data
from mwnet_tf.methods import confident_learning as cl
from mwnet_tf.methods.base import predict_probabilities
from mwnet_tf.training import loop

RUN = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=1,
           lr_decay_epochs=(), batch_size=100, meta_batch_size=50, progress_seconds=0.0,
           seed=3, method="confident_learning", method_params={"cl_folds": 2},
           tensorboard_images=False)


class Spy(cl.ConfidentLearning):
    """Records the rows each stage trains on and each fold model's predictions on the whole
    training set, just before the method stores its held-out rows."""

    instances: list = []

    def __init__(self, ctx):
        super().__init__(ctx)
        self.trained_rows: dict[str, np.ndarray] = {}
        self.fold_model_probs: dict[str, np.ndarray] = {}
        self.ended: list[str] = []
        Spy.instances.append(self)

    def stage_data(self, stage):
        sub = super().stage_data(stage)
        where = {int(j): r for r, j in enumerate(self.ctx.data.train_index)}
        self.trained_rows[stage.name] = np.array([where[int(j)] for j in sub.train_index])
        return sub

    def end_stage(self, stage):
        self.ended.append(stage.name)
        if stage.name != cl.FINAL_STAGE:
            data = self.ctx.data
            self.fold_model_probs[stage.name] = predict_probabilities(
                self.ctx.classifier, data, data.train_x)
        super().end_stage(stage)


@pytest.fixture
def spy(monkeypatch):
    Spy.instances = []
    monkeypatch.setattr(cl, "METHOD", Spy)
    return Spy


def test_folds_are_stratified_by_label_deterministic_per_seed_and_cover_every_sample():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=203, p=[0.5, 0.3, 0.15, 0.05])
    folds = cl.stratified_folds(labels, 5, seed=7)
    assert folds.shape == labels.shape and set(np.unique(folds)) == set(range(5))
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == len(labels) and sizes.max() - sizes.min() <= 1
    for c in range(4):
        per_fold = np.bincount(folds[labels == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, (c, per_fold)
    np.testing.assert_array_equal(folds, cl.stratified_folds(labels, 5, seed=7))
    assert not np.array_equal(folds, cl.stratified_folds(labels, 5, seed=8))
    state = np.random.get_state()[1].copy()
    cl.stratified_folds(labels, 5, seed=7)
    np.testing.assert_array_equal(state, np.random.get_state()[1])  # no global state used


def test_stages_folds_then_kept_with_the_run_schedule_or_cl_fold_epochs():
    config = Config(**dict(RUN, epochs=10, lr_decay_epochs=(6, 8), batch_size=20,
                           method_params={"cl_folds": 3, "cl_fold_epochs": 5}))
    data = make_biased_data(_tiny_dataset(), noise="uniform", rate=0.4, meta_per_class=2,
                            seed=0)
    method = cl.ConfidentLearning(types.SimpleNamespace(config=config, data=data))
    stages = method.stages()
    assert [s.name for s in stages] == ["fold 1/3", "fold 2/3", "fold 3/3", "train on kept"]
    assert all(s.fresh for s in stages)
    assert [s.reported for s in stages] == [False, False, False, True]
    assert [(s.epochs, s.lr_decay_epochs) for s in stages] == [(5, (3, 4))] * 3 + [(10, (6, 8))]
    config = config.replace(method_params={"cl_folds": 3})
    stages = cl.ConfidentLearning(types.SimpleNamespace(config=config, data=data)).stages()
    assert {(s.epochs, s.lr_decay_epochs) for s in stages} == {(10, (6, 8))}


def test_drops_exactly_what_cleanlab_flags_on_probabilities_no_model_saw_its_own_labels_for(
        tmp_path, spy):
    results = loop.train_and_evaluate(Config(**RUN), str(tmp_path), log=lambda s: None)
    (method,) = spy.instances
    data = method.ctx.data
    n = len(data.train_y)
    oof = method.out_of_fold.numpy()
    kept = method.kept.numpy()

    # Every sample is in exactly one fold; fold i's model trained on all the others only, and
    # the out-of-fold rows of fold i are that model's predictions (eval mode).
    folds = method.folds
    assert folds.shape == (n,) and set(np.unique(folds)) == {0, 1}
    assert method.ended == ["fold 1/2", "fold 2/2", "train on kept"]
    for i in range(2):
        name = f"fold {i + 1}/2"
        held_out = np.flatnonzero(folds == i)
        trained = method.trained_rows[name]
        assert len(np.unique(trained)) == len(trained)
        assert not np.isin(trained, held_out).any()
        np.testing.assert_array_equal(np.sort(trained), np.flatnonzero(folds != i))
        np.testing.assert_allclose(oof[held_out], method.fold_model_probs[name][held_out],
                                   rtol=1e-6, atol=1e-9)
        other = method.fold_model_probs[f"fold {2 - i}/2"][held_out]
        assert not np.allclose(oof[held_out], other)  # the two models do differ
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-6)  # no row left empty

    # The kept mask is cleanlab's verdict (its defaults) on the stored matrix, and the last
    # stage trained on exactly the kept samples.
    flagged = find_label_issues(labels=data.train_y, pred_probs=oof, n_jobs=1)
    np.testing.assert_array_equal(kept, ~flagged)
    assert 0 < flagged.sum() < n - 100
    np.testing.assert_array_equal(np.sort(method.trained_rows[cl.FINAL_STAGE]),
                                  np.flatnonzero(kept))

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["label_issues_found"] == results["label_issues_found"] == int(flagged.sum())
    assert saved["kept"] == int(kept.sum())
    hits = int(np.sum(flagged & data.corrupted))
    assert saved["label_issue_precision"] == pytest.approx(hits / flagged.sum())
    assert saved["label_issue_recall"] == pytest.approx(hits / data.corrupted.sum())
    assert [s["name"] for s in saved["stages"]] == ["fold 1/2", "fold 2/2", "train on kept"]
    exported = np.load(tmp_path / "label_issues.npz")
    np.testing.assert_array_equal(exported["label_issue"], flagged)
    np.testing.assert_array_equal(exported["fold"], folds)


class _StopBeforeFinal(Spy):
    def stage_data(self, stage):
        if stage.name == cl.FINAL_STAGE:
            raise KeyboardInterrupt("stopped after the folds")
        return super().stage_data(stage)


@pytest.mark.e2e
def test_resumed_run_keeps_the_folds_done_and_their_kept_mask(tmp_path, monkeypatch):
    Spy.instances = []
    monkeypatch.setattr(cl, "METHOD", _StopBeforeFinal)
    with pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(Config(**RUN), str(tmp_path), log=lambda s: None)
    first = Spy.instances[-1]
    oof, kept = first.out_of_fold.numpy(), first.kept.numpy()
    assert int(first.folds_done.numpy()) == 2 and not kept.all()

    monkeypatch.setattr(cl, "METHOD", Spy)
    logs = []
    loop.train_and_evaluate(Config(**RUN), str(tmp_path), log=logs.append)
    second = Spy.instances[-1]
    assert any("resumed" in line for line in logs)
    assert second.ended == [cl.FINAL_STAGE]  # no fold retrained
    np.testing.assert_array_equal(second.out_of_fold.numpy(), oof)
    np.testing.assert_array_equal(second.kept.numpy(), kept)
    np.testing.assert_array_equal(np.sort(second.trained_rows[cl.FINAL_STAGE]),
                                  np.flatnonzero(kept))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["label_issues_found"] == int((~kept).sum())


def _tiny_dataset(per_class=30, num_classes=3):
    rng = np.random.default_rng(0)
    from mwnet_tf.data import Dataset

    y = np.repeat(np.arange(num_classes), per_class)
    return Dataset(name="synthetic", train_x=rng.integers(0, 256, (len(y), 4, 4, 1), np.uint8),
                   train_y=y.astype(np.int64), test_x=np.zeros((3, 4, 4, 1), np.uint8),
                   test_y=np.arange(3, dtype=np.int64), num_classes=num_classes, mean=(0.5,),
                   std=(0.25,), augment=False)


def test_clear_errors_for_too_many_folds_small_folds_and_a_kept_set_under_one_batch():
    data = make_biased_data(_tiny_dataset(), noise="uniform", rate=0.4, meta_per_class=2,
                            seed=0)
    n = len(data.train_y)  # 84

    def build(**changes):
        config = Config(**dict(RUN, **changes))
        return cl.ConfidentLearning(types.SimpleNamespace(config=config, data=data))

    with pytest.raises(ValueError, match="cl_folds must be >= 2"):
        Config(**dict(RUN, method_params={"cl_folds": 1}))
    with pytest.raises(ValueError, match="exceeds the 84 training images"):
        build(method_params={"cl_folds": n + 1})
    with pytest.raises(ValueError, match=r"fold 1/2 trains on 42 images, fewer than one batch"):
        build(batch_size=50)

    method = build(batch_size=20)
    final = method.stages()[-1]
    with pytest.raises(RuntimeError, match="before every fold is done"):
        method.stage_data(final)
    method.folds_done.assign(2)
    mask = np.zeros(n, bool)
    mask[:19] = True
    method.kept.assign(mask)
    with pytest.raises(ValueError, match="flagged 65 of 84 .* the 19 kept are fewer than one"):
        method.stage_data(final)
    mask[19] = True
    method.kept.assign(mask)
    assert len(method.stage_data(final).train_y) == 20
    # A held-out fold smaller than one batch is fine: its rows are predicted, not batched.
    small = build(batch_size=20, method_params={"cl_folds": 20})
    assert np.bincount(small.folds).max() < 20
