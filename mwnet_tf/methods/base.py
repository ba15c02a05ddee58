"""What the trainer asks of a training method.

A method is a class with a name, its hyperparameters (`registry.Param`, one flag each),
whether it reads the clean meta set, and:

- `stages()`: the run as a list of `Stage`s (epochs, which data, fresh weights or not); most
  methods have one stage, fine-tuning has two (train set, then meta set), GLC two (a model of
  the noisy data, then corrected training), confident learning k + 1 (k cross-validation folds,
  then training on the samples kept);
- `replica_step(stage)`: a replica function `(batch, meta_batch=None) -> dict of sums`, run
  under the strategy like MW-Net's step; it must return `loss_sum` (cross-entropy of the
  classifier against the training labels, summed) and `correct`; it may return `meta_loss`,
  `weight_sum`, `weight_sum_corrupted` and `count_corrupted` (the weights it gave);
- `meta_batches(stage)`: whether the stage's steps get meta batches (methods that never read
  the meta set never receive it: the pipeline does not even build the meta stream);
- `begin_epoch(stage, epoch)` (after the trainer has set the epoch's learning rate) and
  `end_stage(stage)`: eager hooks that update the method's variables (a forget rate, a
  threshold, a corruption matrix, a kept-sample mask);
- `trackables()`: its extra state (a weight net, a second classifier, their optimizers, its
  variables), saved in every checkpoint beside the classifier;
- `stage_data(stage)`: the data a stage trains on (default: the training set, or the meta set
  when `stage.source == "meta"`);
- for a meta set selected from the training set (`--meta_source=selected`,
  `mwnet_tf.training.meta_set`): `reads_meta(stage)` and `reads_meta_at_end(stage)`, where the
  method reads the meta set (it is chosen again at each of those points), and
  `ranking_model()`, the model whose losses rank the training samples (default: the
  classifier being trained). The method reads the meta set from `ctx.data`, which the trainer
  replaces at each selection: a method keeps no copy of it across epochs.

The trainer owns everything else: strategy, the classifier and its optimizer, the learning rate
of each epoch, evaluation, summaries, checkpoints and the run folder.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf.data import BiasedData
from mwnet_tf.data.pipeline import eval_images, normalize
from mwnet_tf.methods import registry
from mwnet_tf.methods.registry import Param

SOURCES = ("train", "meta")


@dataclasses.dataclass(frozen=True)
class Stage:
    """A part of a run.

    Attributes:
        name: shown in the log ("train", "fine-tune", "fold 2/5", ...).
        epochs: its number of epochs.
        lr_decay_epochs: epochs of the stage after which the learning rate is multiplied by
            the run's decay factor.
        source: "train" (the biased training set, or `Method.stage_data`) or "meta" (the clean
            meta set as training data).
        fresh: re-initialize the classifier and reset its optimizer at the start.
        reported: the stage's test accuracy counts for the run's results (final and best).
        lr: the stage's initial learning rate (None: the run's `lr`).
    """

    name: str
    epochs: int
    lr_decay_epochs: tuple[int, ...] = ()
    source: str = "train"
    fresh: bool = False
    reported: bool = True
    lr: float | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"stage source must be one of {SOURCES}")
        if self.epochs < 1:
            raise ValueError("a stage needs at least one epoch")


@dataclasses.dataclass
class Context:
    """What a method is built from (inside the strategy's scope).

    Attributes:
        config: the run's `Config` (the method's own values in `config.method_params`).
        data: the biased training data, meta set and test set.
        classifier: the classifier the trainer evaluates, checkpoints and trains.
        optimizer: its optimizer (the learning rate is set by the trainer each epoch).
        options: batch sizes and weight normalization (`meta.StepOptions`).
        new_classifier: `seed -> a new classifier` of the same architecture.
        new_optimizer: `(kind) -> a new optimizer`, kind "classifier" (like `optimizer`) or
            "meta" (the run's weight-net optimizer).
        num_replicas: replicas in sync.
    """

    config: Any
    data: BiasedData
    classifier: keras.Model
    optimizer: keras.optimizers.Optimizer
    options: Any
    new_classifier: Callable[[int], keras.Model]
    new_optimizer: Callable[[str], keras.optimizers.Optimizer]
    num_replicas: int = 1


class Method:
    """The default: one stage on the training set; subclasses give `replica_step`.

    A method's class lives in `mwnet_tf/methods/<name>.py`, and that module's name is the
    method's: `name` and `params` (its hyperparameters, `registry.PARAMS[name]`) are set from
    it when the class is defined."""

    name = ""
    uses_meta = False  # reads the meta set in any way (then it must be the run's meta set)
    params: tuple[Param, ...] = ()
    reference = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        package, _, module = cls.__module__.rpartition(".")
        if package == __name__.rpartition(".")[0] and module in registry.METHODS:
            cls.name, cls.params = module, registry.PARAMS[module]

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.config = ctx.config
        self.hp = {p.name: ctx.config.method_params.get(p.name, p.default) for p in self.params}

    # --- the run's shape -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("train", c.epochs, tuple(c.lr_decay_epochs))]

    def meta_batches(self, stage: Stage) -> bool:
        """Whether the stage's steps get a meta batch beside each training batch."""
        return self.uses_meta

    def stage_data(self, stage: Stage) -> BiasedData:
        """The data a stage trains on."""
        if stage.source == "meta":
            return meta_as_training(self.ctx.data)
        return self.ctx.data

    # --- a meta set selected from the training set (--meta_source=selected) ---------------
    ranked_by = "classifier"  # what `ranking_model` is, for results.json

    def reads_meta(self, stage: Stage) -> bool:
        """Whether the stage's epochs read the meta set (meta batches beside the training
        batches, or the meta set as their training data): a selected meta set is chosen again
        at the start of each of them."""
        return self.meta_batches(stage) or stage.source == "meta"

    def reads_meta_at_end(self, stage: Stage) -> bool:
        """Whether `end_stage(stage)` reads the meta set (GLC's corruption matrix): a selected
        meta set is chosen again just before it."""
        return False

    def ranking_model(self) -> keras.Model:
        """The model whose losses rank the training samples for a selected meta set: the
        classifier being trained, in inference mode, as the previous epoch left it."""
        return self.ctx.classifier

    # --- state -----------------------------------------------------------------------------
    def trackables(self) -> dict[str, Any]:
        return {}

    def eval_model(self) -> keras.Model:
        return self.ctx.classifier

    def weight_of(self, losses: np.ndarray) -> np.ndarray | None:
        """The method's weight of a sample at each loss [N] (for the run's figures), or None
        for a method without a weight function of the loss."""
        return None

    def group_weights_of(self, losses: np.ndarray) -> dict[str, np.ndarray] | None:
        """A weight function of the loss per class group (CMW-Net), {label: weights [N]},
        for the run's figures beside `weight_of`; None for a method with one function."""
        return None

    def sample_weights(self, x: tf.Tensor, y: tf.Tensor, losses: np.ndarray) -> np.ndarray | None:
        """The method's weights [N] of the samples `x` (normalized images) with training labels
        `y` and losses `losses` [N], for the run's figures (the tracked samples each epoch), or
        None for a method that gives no weights. The default is `weight_of(losses)`; a method
        whose weights are not a function of the loss alone (L2RW) computes them here."""
        return self.weight_of(losses)

    # --- hooks (eager) ---------------------------------------------------------------------
    def begin_epoch(self, stage: Stage, epoch: int) -> None:
        """Called before epoch `epoch` (0-based within the stage)."""

    def end_stage(self, stage: Stage) -> None:
        """Called after the last epoch of a stage, before its checkpoint is written."""

    def results(self) -> dict:
        """Extra entries of results.json."""
        return {}

    def export(self, workdir: str) -> None:
        """Writes the method's artifacts into the run folder (chief only)."""

    # --- the step ---------------------------------------------------------------------------
    def replica_step(self, stage: Stage) -> Callable:
        raise NotImplementedError

    # --- label issues (label_issues.csv) --------------------------------------------------
    def label_scores(self, losses: np.ndarray, probabilities: np.ndarray,
                     labels: np.ndarray) -> dict[str, np.ndarray | None]:
        """How suspect the label of each training sample is, for `label_issues.csv`.

        The arrays cover the training set `self.ctx.data` in its order: `losses` [N] the
        cross-entropy of the evaluated classifier (eval mode) against the training labels,
        `probabilities` [N, C] its softmax, `labels` [N] the training labels. Returns:

        - "suspicion": float [N], higher = more likely a wrong label (the ranking; equal
          suspicions are ranked by loss);
        - "weight": float [N], the method's weight of each sample, or None;
        - "flagged" (optional): bool [N], the method's own verdict on each label;
        - any other key: an extra column, float or bool [N].

        The default: suspicion = the loss, no weight."""
        return {"suspicion": np.asarray(losses, np.float64), "weight": None}


# --- helpers shared by methods ---------------------------------------------------------------

def split_run(config, first: str, first_epochs: int, second: str) -> list[Stage]:
    """The run's epochs as two stages, `first_epochs` of stage `first`, the rest `second`
    (one stage `second` when `first_epochs` is 0), on the run's one learning-rate schedule:
    the second stage starts at the rate the first ended with and decays where the run would."""
    decays = tuple(config.lr_decay_epochs)
    if first_epochs == 0:
        return [Stage(second, config.epochs, decays)]
    lr = config.lr * config.lr_decay_factor ** sum(1 for d in decays if d <= first_epochs)
    return [Stage(first, first_epochs, tuple(d for d in decays if d < first_epochs)),
            Stage(second, config.epochs - first_epochs,
                  tuple(d - first_epochs for d in decays if d > first_epochs), lr=lr)]


def meta_as_training(data: BiasedData) -> BiasedData:
    """The meta set in the place of the training set: a trusted one's labels taken as clean
    (none corrupted); a selected one's true labels where known (`BiasedData.meta_true_y`)."""
    clean = data.meta_y if data.meta_true_y is None else data.meta_true_y
    return dataclasses.replace(data, train_x=data.meta_x, train_y=data.meta_y,
                               train_clean_y=clean, train_index=data.meta_index)


def training_subset(data: BiasedData, rows: np.ndarray) -> BiasedData:
    """The training set restricted to `rows` (indices into `data.train_y`)."""
    rows = np.asarray(rows, np.int64)
    return dataclasses.replace(data, train_x=data.train_x[rows], train_y=data.train_y[rows],
                               train_clean_y=data.train_clean_y[rows],
                               train_index=data.train_index[rows])


def predict_probabilities(model: keras.Model, data: BiasedData, x: np.ndarray,
                          batch_size: int = 500) -> np.ndarray:
    """Softmax outputs [N, C] (float64) of `model` in eval mode on uint8 images `x` (or, for
    data read from files, on their paths: decoded and center-cropped as the test set)."""
    out = []
    batches = (eval_images(data, x, batch_size) if data.from_files else
               (x[i:i + batch_size] for i in range(0, len(x), batch_size)))
    for images in batches:
        logits = model(normalize(images, data.mean, data.std), training=False)
        out.append(tf.nn.softmax(tf.cast(logits, tf.float64)).numpy())
    if not out:
        return np.zeros((0, data.num_classes))
    return np.concatenate(out)


def reinitialize(model: keras.Model, fresh: keras.Model) -> None:
    """Copies the initial weights of `fresh` (same architecture) into `model`."""
    for var, value in zip(model.weights, fresh.weights):
        var.assign(value)


def reset_optimizer(optimizer: keras.optimizers.Optimizer) -> None:
    """Zeroes an optimizer's slots and step count (its learning rate is left alone; inside a
    `LossScaleOptimizer`, the inner optimizer's, the loss scale kept)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    lr = getattr(optimizer, "_learning_rate", None)
    for var in optimizer.variables:
        if var is not lr:
            var.assign(tf.zeros_like(var))
