"""The training loop's parts alone: the checkpointer's triggers and resume state, one epoch's
calls, the stage lookup."""

import json
import os

import pytest
import tensorflow as tf

from mwnet_tf.config import Config
from mwnet_tf.errors import Interrupted, TrainingError
from mwnet_tf.training import epoch
from mwnet_tf.training.checkpointer import Checkpointer


def _checkpointer(workdir, stop=None, **config):
    weight = tf.Variable(1.0)
    ckpt = Checkpointer(tf.distribute.get_strategy(), str(workdir), Config(**config), chief=True,
                        models={"weight": weight}, extra={}, stop_requested=stop)
    ckpt.restore(log=lambda s: None)
    return ckpt, weight


def test_saves_every_n_steps_with_the_epochs_sums_and_resumes_there(tmp_path):
    ckpt, weight = _checkpointer(tmp_path, checkpoint_every_steps=2, keep_checkpoints=1)
    ckpt.begin_epoch(0, 0)
    ckpt.after_call(1, {"loss_sum": 1.0})
    assert ckpt.last() is None
    weight.assign(5.0)
    ckpt.after_call(2, {"loss_sum": 3.0})
    assert ckpt.last() == os.path.join(tmp_path, "checkpoints", "ckpt-2")
    ckpt.after_call(4, {"loss_sum": 7.0})
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert [n for n in names if n.startswith("progress-")] == ["progress-4.json"]  # pruned
    assert json.loads((tmp_path / "checkpoints" / "progress-4.json").read_text()) == {
        "epoch": 0, "step": 4, "sums": {"loss_sum": 7.0}}

    again, weight = _checkpointer(tmp_path, checkpoint_every_steps=2)
    assert (again.epochs_done, again.step_in_epoch, again.partial) == (0, 4, {"loss_sum": 7.0})
    assert float(weight.numpy()) == 5.0


def test_a_stop_signal_saves_and_raises_interrupted(tmp_path):
    ckpt, _ = _checkpointer(tmp_path, stop=lambda: 15)
    ckpt.begin_epoch(0, 0)
    with pytest.raises(Interrupted, match="signal 15 at epoch 1 step 5; checkpoint .*ckpt-5"):
        ckpt.after_call(5, {})
    assert ckpt.last().endswith("ckpt-5")


def test_an_epochs_end_records_the_best_accuracy_and_the_next_epoch(tmp_path):
    ckpt, _ = _checkpointer(tmp_path)
    ckpt.begin_epoch(0, 0)
    ckpt.end_epoch(10, 80.0)
    ckpt.begin_epoch(1, 0)
    ckpt.end_epoch(10, None)  # a stage that is not reported
    assert (ckpt.epochs_done, ckpt.step_in_epoch, ckpt.best_accuracy) == (2, 0, 80.0)
    assert ckpt.save().endswith("ckpt-20")
    ckpt.stop_after_epoch(3, None)  # no stop requested: returns


def test_an_epoch_ends_its_calls_at_multiples_of_both_intervals():
    calls = []

    def train_loop(iterator, n):
        calls.append(int(n))
        return {"loss_sum": float(n), "correct": float(n)}

    seen = []
    sums = epoch.train_epoch(train_loop, [], steps=10, steps_per_call=4, batch_size=2,
                             checkpoint_every_steps=3, start_step=1, sums={"loss_sum": 1.0},
                             after_call=lambda step, s: seen.append(step))
    assert calls == [2, 1, 2, 2, 1, 1] and seen == [3, 4, 6, 8, 9, 10]
    assert sums == {"loss_sum": 10.0, "correct": 9.0, "count": 20, "steps": 10}
    with pytest.raises(TrainingError, match="NaN/inf at epoch 1 steps 1-4"):
        epoch.train_epoch(lambda it, n: {"loss_sum": float("nan")}, [], steps=4,
                          steps_per_call=4, batch_size=2)


def test_stage_at_and_epoch_lr():
    class Stage:
        def __init__(self, epochs):
            self.epochs = epochs
    stages = [Stage(2), Stage(3)]
    assert [epoch.stage_at(stages, e) for e in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1),
                                                              (1, 2)]
    with pytest.raises(IndexError):
        epoch.stage_at(stages, 5)
    assert epoch.epoch_lr(0.1, (1,), 0.5, 1) == pytest.approx(0.05)


def test_epoch_metrics_leave_out_a_mean_over_no_samples():
    sums = {"count": 4, "loss_sum": 2.0, "correct": 3, "steps": 2, "weight_sum": 2.0,
            "count_corrupted": 0, "weight_sum_corrupted": 0.0}
    m = epoch.epoch_metrics(sums)
    assert m == {"loss": 0.5, "accuracy": 75.0, "weight_mean": 0.5, "weight_clean": 0.5}
    json.dumps(m, allow_nan=False)  # strict JSON in results.json
    m = epoch.epoch_metrics(dict(sums, count_corrupted=1, weight_sum_corrupted=0.2))
    assert m["weight_corrupted"] == pytest.approx(0.2) and m["weight_clean"] == pytest.approx(0.6)


def test_an_epoch_without_a_meta_step_has_no_meta_loss():
    """A weight net updated every K-th step can miss a short epoch (3 steps, K = 10)."""
    sums = {"count": 4, "loss_sum": 2.0, "correct": 3, "steps": 3, "meta_loss": 0.0,
            "meta_steps": 0.0}
    assert "meta_loss" not in epoch.epoch_metrics(sums)
    assert epoch.epoch_metrics(dict(sums, meta_loss=1.5, meta_steps=1.0))["meta_loss"] == 1.5
