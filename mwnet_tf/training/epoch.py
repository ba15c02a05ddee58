"""One epoch of a stage: its learning rate, data, compiled loop, progress lines and metrics.

`Epochs.run(epoch, ...)` trains the run's 0-based epoch `epoch`: it finds the method's stage
and the epoch within it, selects the meta set again where it is chosen from the training set
and the stage reads it (`mwnet_tf.training.meta_set`), starts a fresh classifier where the
stage asks for one, sets the learning rate, builds the stage's data pipeline (positioned
after the steps already done when resuming inside the epoch) and runs `train_epoch`, which
calls the compiled training loop and hands the position to the checkpointer after every call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import faults
from mwnet_tf.config import Config
from mwnet_tf.data import BiasedData, DataUnavailableError
from mwnet_tf.data.pipeline import make_train_dataset, name_unreadable
from mwnet_tf.errors import ImageError, TrainingError
from mwnet_tf.methods import steps as steps_lib
from mwnet_tf.methods.base import Stage, reinitialize, reset_optimizer


def epoch_lr(base_lr: float, decay_epochs, factor: float, epoch: int) -> float:
    """The learning rate of epoch `epoch` (0-based) of a stage: `base_lr` times `factor` once
    for each decay epoch already completed, so `decay_epochs=(5,)` trains epochs 1-5 at
    `base_lr` and epoch 6 from its first step at `base_lr * factor`."""
    return base_lr * factor ** sum(1 for d in decay_epochs if d <= epoch)


def stage_at(stages, epoch: int) -> tuple[int, int]:
    """(stage index, epoch within the stage) of a run's 0-based epoch."""
    start = 0
    for i, stage in enumerate(stages):
        if epoch < start + stage.epochs:
            return i, epoch - start
        start += stage.epochs
    raise IndexError(epoch)


def _image_error(text: str, kind: str, name: Callable[[], str | None] | None = None) -> str:
    """What a TensorFlow decoding error says about the image it failed on; when it does not
    name the file, `name()` (`pipeline.name_unreadable`) looks for it."""
    named = re.search(r"\[not a JPEG file:\] \[(.*?)\]", text)
    if named:
        return f"{named.group(1)}: not a JPEG file"
    found = name() if name is not None else None
    if found:
        return found
    line = next((t for t in text.splitlines() if t.strip()), kind)
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()[:200]
    return (f"an image of the data set could not be decoded ({line}); TensorFlow's "
            "decoder does not name the file")


@contextlib.contextmanager
def reading_images(data: BiasedData, started: bool,
                   last_checkpoint: Callable[[], str | None] = lambda: None,
                   name: Callable[[], str | None] | None = None) -> Iterator[None]:
    """For data read from files: a file TensorFlow cannot decode ends the run with one line
    (`DataUnavailableError` before the run has started, `ImageError` after). A file that is
    not a JPEG is named (the pipeline's check); an image damaged inside is named by `name()`
    (`pipeline.name_unreadable`, which decodes the likely files again) when given, since
    TensorFlow's decoder does not say which file it was reading."""
    if not data.from_files:
        yield
        return
    if name is None:  # not while training: the meta and test sets, then the training set
        def name() -> str | None:
            return name_unreadable(data, seed=0, epoch=0, batch_size=1, step=0,
                                   lookahead_steps=0)
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        what = _image_error(str(getattr(e, "message", e)), type(e).__name__, name)
        if not started:
            raise DataUnavailableError(what) from None
        kept = last_checkpoint()
        raise ImageError(f"{what}; " + (f"the last checkpoint {kept} is kept" if kept else
                                        "no checkpoint yet") + ": replace the file, then rerun "
                         "the same command to resume") from None


class Progress:
    """A throttled step counter: one line every `seconds`; with `bar` (a terminal), Keras'
    `Progbar` instead, redrawn after every call with the rate and the time left."""

    def __init__(self, log, seconds: float, total: int, epoch: int, epochs: int,
                 bar: bool = False):
        self.log, self.seconds, self.total = log, seconds, total
        self.prefix = f"epoch {epoch}/{epochs}"
        self.start = self.last = time.time()
        self.bar = None
        if bar:
            log(self.prefix)
            self.bar = keras.utils.Progbar(total, stateful_metrics=["loss", "meta_loss"],
                                           unit_name="step")

    def update(self, step: int, sums: dict) -> None:
        if self.bar is not None:
            values = [("loss", sums["loss_sum"] / sums["count"])]
            if "meta_loss" in sums:
                values.append(("meta_loss", sums["meta_loss"] / max(
                    sums.get("meta_steps", sums["steps"]), 1e-12)))
            self.bar.update(step, values=values, finalize=step >= self.total)
            return
        now = time.time()
        if now - self.last >= self.seconds:
            self.last = now
            n = sums["count"]
            self.log(f"  {self.prefix} step {step}/{self.total}  loss {sums['loss_sum'] / n:.4f}"
                     f"  {step / (now - self.start):.2f} steps/s")


def epoch_metrics(sums: dict, corruption_known: bool = True) -> dict[str, float]:
    """An epoch's training metrics from its sums: mean loss, accuracy (%), the weight net's
    meta loss, and the mean weight of all, corrupted and clean samples when the step gives
    them (without corrupted samples no `weight_corrupted`: results.json stays strict JSON;
    neither when the truth of the labels is unknown, `BiasedData.corruption_known`)."""
    n = sums["count"]
    m = {"loss": sums["loss_sum"] / n, "accuracy": 100.0 * sums["correct"] / n}
    meta_steps = sums.get("meta_steps", sums.get("steps"))
    if "meta_loss" in sums and meta_steps:  # an epoch without a meta step has no meta loss
        m["meta_loss"] = sums["meta_loss"] / meta_steps
        if "meta_layers" in sums:  # --meta_scope=last|sampled: variables carrying it, mean
            m["meta_layers"] = sums["meta_layers"] / meta_steps
    if "weight_sum" in sums:
        m["weight_mean"] = sums["weight_sum"] / n
        if "count_corrupted" in sums and corruption_known:
            bad = sums["count_corrupted"]  # a mean over no samples is left out, not NaN
            if bad:
                m["weight_corrupted"] = sums["weight_sum_corrupted"] / bad
            if n > bad:
                m["weight_clean"] = (sums["weight_sum"] - sums["weight_sum_corrupted"]) / (n - bad)
    return m


def _check_finite(out: dict, epoch: int, step: int, n: int, last_checkpoint) -> None:
    """A NaN/inf loss of the call that ended at `step` (`n` steps) is a `TrainingError`."""
    if np.isfinite(out["loss_sum"]) and np.isfinite(out.get("meta_loss", 0.0)):
        return
    where = f"step {step}" if n == 1 else f"steps {step - n + 1}-{step}"
    kept = last_checkpoint() if last_checkpoint is not None else None
    raise TrainingError(
        f"loss became NaN/inf at epoch {epoch + 1} {where}; "
        + (f"the last checkpoint ({kept}) is kept" if kept else "no checkpoint yet")
        + ": lower --lr or --meta_lr and rerun")


def train_epoch(train_loop, dataset, *, steps: int, steps_per_call: int, batch_size: int,
                epoch: int = 0, progress=None, start_step: int = 0,
                sums: dict[str, float] | None = None, checkpoint_every_steps: int = 0,
                after_call=None, last_checkpoint=None) -> dict[str, float]:
    """Runs steps `start_step`..`steps` of an epoch with `train_loop` (`steps.compile_loop`)
    over `dataset` (positioned at `start_step`), one host synchronization per call; returns
    the metric sums (float64, continuing `sums`) with `count` (examples) and `steps`.

    Calls end at multiples of `steps_per_call` and of `checkpoint_every_steps`, so a run
    resumed at any checkpoint makes the same calls, and sums the same numbers, as one that was
    never stopped. A NaN/inf loss raises `TrainingError`; `progress(step, sums)` and
    `after_call(step, sums)` (checkpoints, stop requests) are called after each call."""
    sums = dict(sums or {})
    iterator, step = iter(dataset), start_step
    while step < steps:
        n = min(steps_per_call - step % steps_per_call, steps - step)
        if checkpoint_every_steps:
            n = min(n, checkpoint_every_steps - step % checkpoint_every_steps)
        out = {k: float(v) for k, v in train_loop(iterator, tf.constant(n)).items()}
        step += n
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v
        _check_finite(out, epoch, step, n, last_checkpoint)
        sums["count"] = step * batch_size
        sums["steps"] = step
        if progress is not None:
            progress(step, sums)
        faults.hit("after_call")
        if after_call is not None:
            after_call(step, sums)
    return sums


@dataclasses.dataclass
class EpochResult:
    """What an epoch gives the rest of the loop."""
    stage: Stage
    stage_epoch: int  # the epoch within the stage, 0-based
    lr: float
    steps: int  # steps per epoch
    train: dict  # `epoch_metrics`


class Epochs:
    """The epochs of a run's stages (`method.stages()`), one `run` at a time; compiles each
    stage's training loop once. `new_classifier(seed)` builds the fresh classifier a stage
    may ask for; `strategy` is None when training is not distributed."""

    def __init__(self, config: Config, data: BiasedData, method, *, classifier, optimizer,
                 new_classifier, strategy: tf.distribute.Strategy,
                 distributed: bool, log, progress_bar: bool, selection=None):
        self.config, self.data, self.method, self.log = config, data, method, log
        self.classifier, self.optimizer, self.new_classifier = (classifier, optimizer,
                                                                new_classifier)
        self.strategy, self.distributed, self.progress_bar = strategy, distributed, progress_bar
        self.stages = method.stages()
        self.total = sum(s.epochs for s in self.stages)
        self.loops: dict[int, object] = {}
        # --meta_source=selected: the `meta_set.SelectedMeta`, and the current epoch's record
        # of the set it read (`meta_clean_fraction`; empty for an epoch that read none)
        self.selection = selection
        self.meta_record: dict[str, float] = {}

    def _select_meta(self, rank: bool) -> None:
        """The selected meta set into the method's data: ranked again (`rank`), or as the
        checkpoint holds it (a run resumed inside the epoch)."""
        if rank:
            self.selection.select(self.method.ranking_model())
        self.method.ctx.data = self.selection.data()
        self.meta_record = self.selection.record()

    def _refresh_meta(self, epoch: int, start_step: int, ckpt) -> None:
        """At the start of an epoch whose stage reads the meta set, a selected one is chosen
        again by the model as the previous epoch left it (before a fresh stage starts anew)."""
        self.meta_record = {}
        stage = self.stages[stage_at(self.stages, epoch)[0]]
        if self.selection is None or not self.method.reads_meta(stage):
            return
        with reading_images(self.data, True, ckpt.last):
            self._select_meta(rank=start_step == 0)

    def _start(self, epoch: int, start_step: int) -> tuple[int, Stage, int, float]:
        """Finds the epoch's stage, gives it fresh weights if it asks for them at its start,
        sets the learning rate and tells the method the epoch begins."""
        index, stage_epoch = stage_at(self.stages, epoch)
        stage = self.stages[index]
        if stage_epoch == 0 and stage.fresh and start_step == 0:
            with self.strategy.scope():
                seed = self.config.part_seed("init") + 1000 * index
                reinitialize(self.classifier, self.new_classifier(seed))
                reset_optimizer(self.optimizer)
        c = self.config
        lr = epoch_lr(stage.lr if stage.lr is not None else c.lr, stage.lr_decay_epochs,
                      c.lr_decay_factor, stage_epoch)
        self.optimizer.learning_rate = lr
        self.method.begin_epoch(stage, stage_epoch)
        return index, stage, stage_epoch, lr

    def _dataset(self, stage: Stage, stage_data: BiasedData, epoch: int, start_step: int):
        """The stage's shuffled batches of epoch `epoch`, from batch `start_step` on."""
        c = self.config
        with_meta = self.method.meta_batches(stage)
        if self.distributed:
            # each input pipeline reads only its part of every global batch (the files of
            # data read from files), positioned after the steps done by batch index
            return self.strategy.distribute_datasets_from_function(
                lambda ctx: make_train_dataset(
                    stage_data, batch_size=c.batch_size, meta_batch_size=c.meta_batch_size,
                    seed=c.part_seed("order"), epoch=epoch, with_meta=with_meta, input_context=ctx,
                    skip_steps=start_step))
        # resumed inside the epoch: the same batches from the next one on
        return make_train_dataset(stage_data, batch_size=c.batch_size,
                                  meta_batch_size=c.meta_batch_size, seed=c.part_seed("order"),
                                  epoch=epoch, with_meta=with_meta, skip_steps=start_step)

    def _loop(self, index: int, stage: Stage):
        if index not in self.loops:
            self.loops[index] = steps_lib.compile_loop(
                self.method.replica_step(stage), self.strategy if self.distributed else None,
                self.config.jit_compile)
        return self.loops[index]

    def run(self, epoch: int, start_step: int, ckpt) -> EpochResult:
        """Trains epoch `epoch` from step `start_step` (continuing `ckpt.partial`'s sums when
        resuming inside it), reporting each call to `ckpt.after_call`."""
        c = self.config
        self._refresh_meta(epoch, start_step, ckpt)
        index, stage, stage_epoch, lr = self._start(epoch, start_step)
        stage_data = self.method.stage_data(stage)
        steps = len(stage_data.train_y) // c.batch_size
        if steps < 1:
            raise ValueError(f"stage {stage.name!r} has {len(stage_data.train_y)} images, fewer "
                             f"than one batch ({c.batch_size}): lower --batch_size")
        train_loop = self._loop(index, stage)
        ds = self._dataset(stage, stage_data, epoch, start_step)
        progress = Progress(self.log, c.progress_seconds, steps, epoch + 1, self.total,
                            bar=self.progress_bar)
        at = [start_step]  # the last step done, where to look for an unreadable file

        def report(step, sums):
            at[0] = step
            progress.update(step, sums)

        def name() -> str | None:
            return name_unreadable(stage_data, seed=c.part_seed("order"), epoch=epoch,
                                   batch_size=c.batch_size, step=at[0])

        with reading_images(self.data, True, ckpt.last, name):
            sums = train_epoch(train_loop, ds, steps=steps, steps_per_call=c.steps_per_call,
                               batch_size=c.batch_size, epoch=epoch, progress=report,
                               start_step=start_step,
                               sums=ckpt.partial if start_step else None,
                               checkpoint_every_steps=c.checkpoint_every_steps,
                               after_call=ckpt.after_call, last_checkpoint=ckpt.last)
        return EpochResult(stage, stage_epoch, lr, steps,
                           epoch_metrics(sums, self.data.corruption_known))

    def end(self, result: EpochResult, ckpt) -> None:
        """After the epoch's evaluation: ends the stage if this was its last epoch."""
        if result.stage_epoch == result.stage.epochs - 1:
            with reading_images(self.data, True, ckpt.last):
                if self.selection is not None and self.method.reads_meta_at_end(result.stage):
                    self._select_meta(rank=True)
                self.method.end_stage(result.stage)
