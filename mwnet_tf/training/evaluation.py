"""Evaluation on the test set after each epoch, the epoch's TensorBoard summaries and its
log line."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from mwnet_tf import faults
from mwnet_tf.data import BiasedData
from mwnet_tf.data.pipeline import make_test_dataset
from mwnet_tf.methods import steps
from mwnet_tf.training.epoch import reading_images


def evaluate(eval_step, dataset) -> dict:
    """Test loss and accuracy (%), and per-class accuracy (%) and the confusion matrix when the
    step gives them."""
    sums: dict = {}
    for batch in dataset:
        for k, v in eval_step(batch).items():
            sums[k] = sums.get(k, 0.0) + v.numpy().astype(np.float64)
        faults.hit("eval")
    out = {"loss": float(sums["loss_sum"] / sums["count"]),
           "accuracy": float(100.0 * sums["correct"] / sums["count"])}
    if "class_count" in sums:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["per_class_accuracy"] = [float(a) for a in
                                         100.0 * sums["class_correct"] / sums["class_count"]]
    if "confusion" in sums:
        out["confusion_matrix"] = np.rint(sums["confusion"]).astype(int).tolist()
    return out


def epoch_line(epoch: int, total_epochs: int, stage_name: str | None, lr: float, train: dict,
               test: dict, seconds: float, meta: dict | None = None,
               test_name: str = "test") -> str:
    """The log line of a finished epoch (1-based `epoch`; `stage_name` for runs of several
    stages; `meta`: the selected meta set's record; `test_name`: "heldout_noisy" for a part
    of the training set held out with its given labels)."""
    extra = "".join(f"  {k} {train[k]:.3f}" for k in
                    ("meta_loss", "weight_clean", "weight_corrupted") if k in train)
    if meta and "meta_clean_fraction" in meta:
        extra += f"  meta clean {meta['meta_clean_fraction']:.3f}"
    where = f" ({stage_name})" if stage_name else ""
    evaluated = "heldout (given labels)" if test_name == "heldout_noisy" else test_name
    return (f"epoch {epoch}/{total_epochs}{where}  lr {lr:g}  train loss "
            f"{train['loss']:.4f} acc {train['accuracy']:.2f}%{extra}  {evaluated} loss "
            f"{test['loss']:.4f} acc {test['accuracy']:.2f}%  {seconds:.1f}s")


class Evaluation:
    """The test set and the method's evaluation model, and the summary writers of `workdir`
    (`train/`, `test/`; no-op writers on workers other than the chief). `strategy` is None
    when training is not distributed."""

    def __init__(self, data: BiasedData, method, *, batch_size: int, workdir: str,
                 chief: bool, strategy: tf.distribute.Strategy | None):
        self.data = data
        self.name = data.test_name  # "test", or "heldout_noisy": its TensorBoard folder too
        self.step = steps.make_eval_step(method.eval_model(), strategy, data.num_classes)
        self.dataset = make_test_dataset(data, batch_size=batch_size)
        if strategy is not None:
            self.dataset = strategy.experimental_distribute_dataset(self.dataset)
        self.writers = {k: tf.summary.create_file_writer(os.path.join(workdir, folder))
                        if chief else tf.summary.create_noop_writer()
                        for k, folder in (("train", "train"), ("test", self.name))}

    def test(self, last_checkpoint) -> dict:
        """`evaluate` on the test set (an image that cannot be decoded names
        `last_checkpoint()`)."""
        with reading_images(self.data, True, last_checkpoint):
            return evaluate(self.step, self.dataset)

    def summaries(self, epoch: int, lr: float, train: dict, test: dict) -> None:
        """The epoch's scalars: training metrics and learning rate, test loss, accuracy and
        per-class accuracy."""
        with self.writers["train"].as_default(step=epoch):
            for k, v in train.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", lr)
        with self.writers["test"].as_default(step=epoch):
            tf.summary.scalar("loss", test["loss"])
            tf.summary.scalar("accuracy", test["accuracy"])
            for c, acc in enumerate(test.get("per_class_accuracy", [])):
                tf.summary.scalar(f"class_accuracy/{c:03d}", acc)

    def flush(self) -> None:
        for w in self.writers.values():
            w.flush()
