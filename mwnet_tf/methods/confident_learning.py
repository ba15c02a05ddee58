"""Confident learning: find the label errors with cleanlab, then train without them.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels",
Journal of Artificial Intelligence Research 70, 2021 (arXiv:1911.00068), through the authors'
library `cleanlab` (`cleanlab.filter.find_label_issues`).

The run has k + 1 stages:

1. k cross-validation folds ("fold i/k"): each trains a freshly initialized classifier with
   plain cross-entropy on the training samples outside fold i, then predicts (eval mode) the
   softmax probabilities of fold i's samples. Together the folds give every training sample
   an out-of-fold probability vector from a model that never saw its label.
2. `cleanlab.filter.find_label_issues(labels=noisy labels, pred_probs=out-of-fold matrix)`
   with cleanlab's defaults (`filter_by="prune_by_noise_rate"`, `frac_noise=1`,
   `min_examples_per_class=1`), which estimates the confident joint of noisy and true labels
   and flags, per noisy class, that many samples ranked by margin.
3. "train on kept": a fresh classifier, plain cross-entropy on the samples not flagged.

What comes from the official code (cleanlab 2.x and its CIFAR example script
`examples/cifar10/cifar10_train_crossval.py`, read, not copied):

- the folds are stratified by the *noisy* label (`StratifiedKFold(shuffle=True)` in
  `cleanlab.count.estimate_cv_predicted_probabilities`); here the same split is drawn with a
  NumPy generator seeded from `--seed` (`stratified_folds`), so a seed always gives the same
  folds without touching global random state;
- the number of folds defaults to cleanlab's `cv_n_folds=5` (the paper's CIFAR runs used 4:
  the example script's `--cvn 4`);
- each fold model starts from scratch and the final model is trained from scratch on the
  pruned set (`CleanLearning.fit`, and the example's `--dir-train-mask`).

Not taken: `CleanLearning.fit` additionally weights the kept samples of noisy class k by
`1 / noise_matrix[k, k]` when the classifier accepts sample weights, and the paper's best
CIFAR numbers train the pruned set with Co-Teaching; this method trains the kept samples with
unweighted cross-entropy, the plain "prune, then retrain" of the paper. `find_label_issues` is
called with `n_jobs=1` (cleanlab documents that its result does not depend on `n_jobs`; its
default forks a process pool, which is not safe inside a multithreaded TensorFlow process).

State kept in every checkpoint: the out-of-fold matrix [N, C], how many folds are done and the
kept mask [N], so a resumed run keeps the folds already trained. `results()` reports how many
samples were flagged and, since the synthetic corruption is known here, the precision and
recall of the flagged set against the truly corrupted samples. `export()` writes them per
sample to `label_issues.npz`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf.data import BiasedData
from mwnet_tf.methods import steps
from mwnet_tf.methods.base import (
    Method,
    Stage,
    predict_probabilities,
    training_subset,
)
from mwnet_tf.protocols import scaled_decay_epochs

_FOLD_STREAM = 0xC1F0  # this method's own random stream, beside the data pipeline's
FINAL_STAGE = "train on kept"


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each sample, stratified by `labels` and fixed by `seed`.

    Each class's samples are shuffled and dealt to the folds in turn, continuing from where
    the previous class stopped, so every class is split as evenly as possible (fold counts
    within a class differ by at most one) and so are the fold sizes.
    """
    labels = np.asarray(labels)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _FOLD_STREAM]))
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                            for c in np.unique(labels)] or [np.zeros(0, np.int64)])
    folds = np.empty(len(labels), np.int64)
    folds[order] = np.arange(len(labels)) % k
    return folds


def flagged_stats(flagged: np.ndarray, corrupted: np.ndarray) -> dict:
    """Precision and recall (None when undefined) of a flagged set against the corrupted one."""
    hits = int(np.sum(flagged & corrupted))
    n_flagged, n_corrupted = int(np.sum(flagged)), int(np.sum(corrupted))
    return {"label_issue_precision": hits / n_flagged if n_flagged else None,
            "label_issue_recall": hits / n_corrupted if n_corrupted else None}


class ConfidentLearning(Method):
    """Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
    Labels", JAIR 2021: k-fold out-of-fold probabilities, `cleanlab.filter.find_label_issues`
    with its defaults, then cross-entropy training on the samples it does not flag.

    Fold stages use the run's `--epochs` and `--lr_decay_epochs` unless `--cl_fold_epochs` is
    given (then the decay epochs are scaled in proportion); they are not reported. The final
    stage uses the run's schedule and is the one reported.
    """

    uses_meta = False
    reference = "Northcutt et al. 2021"

    def __init__(self, ctx):
        super().__init__(ctx)
        data, batch = ctx.data, ctx.config.batch_size
        n = len(data.train_y)
        self.k = int(self.hp["cl_folds"])
        if self.k > n:
            raise ValueError(f"cl_folds ({self.k}) exceeds the {n} training images")
        self.folds = stratified_folds(data.train_y, self.k, ctx.config.seed)
        for i in range(self.k):
            outside = int(np.sum(self.folds != i))
            if outside < batch:
                raise ValueError(f"confident_learning: fold {i + 1}/{self.k} trains on {outside} "
                                 f"images, fewer than one batch ({batch}): lower --batch_size")
        self.out_of_fold = tf.Variable(tf.zeros([n, data.num_classes], tf.float64),
                                       trainable=False, name="cl_out_of_fold")
        self.folds_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="cl_folds_done")
        self.kept = tf.Variable(tf.ones([n], tf.bool), trainable=False, name="cl_kept")
        self._cache: tuple[str, BiasedData] | None = None

    # --- the run's shape -------------------------------------------------------------------
    def fold_schedule(self) -> tuple[int, tuple[int, ...]]:
        """(epochs, lr decay epochs) of each fold stage."""
        c = self.config
        epochs = self.hp["cl_fold_epochs"]
        epochs = c.epochs if epochs is None else int(epochs)
        return epochs, scaled_decay_epochs(c.lr_decay_epochs, c.epochs, epochs)

    def stages(self) -> list[Stage]:
        c = self.config
        epochs, decay = self.fold_schedule()
        folds = [Stage(self._fold_name(i), epochs, decay, fresh=True, reported=False)
                 for i in range(self.k)]
        return folds + [Stage(FINAL_STAGE, c.epochs, tuple(c.lr_decay_epochs), fresh=True)]

    def _fold_name(self, i: int) -> str:
        return f"fold {i + 1}/{self.k}"

    def _fold_of(self, stage: Stage) -> int | None:
        for i in range(self.k):
            if stage.name == self._fold_name(i):
                return i
        return None

    def training_rows(self, stage: Stage) -> np.ndarray:
        """Indices (into the training set) of the samples `stage` trains on."""
        i = self._fold_of(stage)
        if i is not None:
            return np.flatnonzero(self.folds != i)
        if stage.name != FINAL_STAGE:
            raise ValueError(f"unknown stage {stage.name!r}")
        if int(self.folds_done.numpy()) < self.k:
            raise RuntimeError("the kept set is not known before every fold is done")
        rows = np.flatnonzero(self.kept.numpy())
        batch = self.config.batch_size
        if len(rows) < batch:
            n = len(self.folds)
            raise ValueError(f"confident_learning: cleanlab flagged {n - len(rows)} of {n} "
                             f"training images; the {len(rows)} kept are fewer than one batch "
                             f"({batch}): lower --batch_size")
        return rows

    def stage_data(self, stage: Stage) -> BiasedData:
        if self._cache is None or self._cache[0] != stage.name:  # one stage's copy at a time
            self._cache = None
            self._cache = (stage.name, training_subset(self.ctx.data, self.training_rows(stage)))
        return self._cache[1]

    # --- state -----------------------------------------------------------------------------
    def trackables(self):
        return {"cl_out_of_fold": self.out_of_fold, "cl_folds_done": self.folds_done,
                "cl_kept": self.kept}

    # --- hooks -----------------------------------------------------------------------------
    def end_stage(self, stage: Stage) -> None:
        i = self._fold_of(stage)
        if i is None:
            return
        data = self.ctx.data
        rows = np.flatnonzero(self.folds == i)
        probs = predict_probabilities(self.ctx.classifier, data, data.train_x[rows],
                                      batch_size=self.config.eval_batch_size)
        oof = self.out_of_fold.numpy()
        oof[rows] = probs
        self.out_of_fold.assign(oof)
        self.folds_done.assign(i + 1)
        if i == self.k - 1:
            self.kept.assign(~find_issues(data.train_y, oof))

    def results(self) -> dict:
        done = int(self.folds_done.numpy())
        out = {"cl_folds": self.k, "cl_folds_done": done}
        if done < self.k:
            return out
        data = self.ctx.data
        kept = self.kept.numpy()
        flagged, corrupted = ~kept, data.corrupted
        predicted = np.argmax(self.out_of_fold.numpy(), axis=1)
        out.update(
            label_issues_found=int(np.sum(flagged)), kept=int(np.sum(kept)),
            kept_noise_rate=float(np.mean(corrupted[kept])) if kept.any() else None,
            out_of_fold_accuracy_noisy=float(np.mean(predicted == data.train_y)),
            out_of_fold_accuracy_clean=float(np.mean(predicted == data.train_clean_y)),
            **flagged_stats(flagged, corrupted))
        return out

    def export(self, workdir: str) -> None:
        if int(self.folds_done.numpy()) < self.k:
            return
        data = self.ctx.data
        path = os.path.join(workdir, files.CL_ISSUES)
        with files.atomic_file(path) as f:
            np.savez(f, train_index=data.train_index, fold=self.folds,
                     out_of_fold_probs=self.out_of_fold.numpy(),
                     label_issue=~self.kept.numpy(), noisy_label=data.train_y,
                     corrupted=data.corrupted)

    # --- the step ---------------------------------------------------------------------------
    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options

        def step(batch, meta_batch=None):
            return steps.ce_step(clf, opt, batch, options)
        return step

    def label_scores(self, losses, probabilities, labels):
        """cleanlab's verdict: "flagged" (the samples the final stage left out, weight 0;
        the others weight 1) and "self_confidence", the out-of-fold probability of the given
        label; flagged samples come first, each group by increasing self-confidence
        (suspicion = flagged + 1 - self_confidence). Before the folds are done: the loss."""
        if int(self.folds_done.numpy()) < self.k:
            return super().label_scores(losses, probabilities, labels)
        labels = np.asarray(labels, np.int64)
        confidence = self.out_of_fold.numpy()[np.arange(len(labels)), labels]
        flagged = ~self.kept.numpy()
        return {"suspicion": flagged + (1.0 - confidence),
                "weight": (~flagged).astype(np.float64), "flagged": flagged,
                "self_confidence": confidence}


def find_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's label-issue mask (True: flagged) with its defaults, one process."""
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(labels=np.asarray(labels), pred_probs=pred_probs,
                                        n_jobs=1), bool)


METHOD = ConfidentLearning
