"""Checkpoints of a run: what is saved, when, and how a run resumes from them.

A checkpoint holds the models and optimizers, the method's and the tracker's state, and the
run's position (epochs done, steps into the current epoch, steps of the whole run, which
number the checkpoints, and the best test accuracy). Beside each one the chief writes a
progress file with the metric sums of the epoch it stopped inside, so a resumed run sums
the same numbers as one that was never stopped.

Checkpoints are saved after each epoch and inside it every `checkpoint_every_steps` steps
and `checkpoint_every_minutes` minutes, and when a stop signal arrives. Under multi-worker
training a save is collective: every worker takes the same decision (`Checkpointer.agreed`)
and the workers other than the chief save to a temporary folder of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator

import tensorflow as tf

from mwnet_tf import faults, files
from mwnet_tf.config import Config
from mwnet_tf.errors import Interrupted, TrainingError, WriteError
from mwnet_tf.training import run_folder


@contextlib.contextmanager
def writing(what: str, last_checkpoint: Callable[[], str | None]) -> Iterator[None]:
    """Turns a failed write of `what` into a one-line `WriteError` naming what is kept."""
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else str(getattr(e, "message", e)).strip().splitlines()[0][:160])
        kept = last_checkpoint()
        raise WriteError(
            f"could not write {what} ({reason}); "
            + (f"the last complete checkpoint {kept} is kept" if kept else "no checkpoint yet")
            + " with everything written before: free space or fix the folder's permissions, "
            "then rerun the same command to resume") from None


def check_checkpoint_list(ckpt_dir: str) -> None:
    """Checkpoints whose list (the `checkpoint` file) cannot be read: an error, not a fresh
    start that would overwrite them."""
    if not os.path.isdir(ckpt_dir):
        return
    if not any(n.startswith("ckpt-") and n.endswith(".index") for n in os.listdir(ckpt_dir)):
        return
    try:
        latest = tf.train.latest_checkpoint(ckpt_dir)
    except (tf.errors.OpError, ValueError):
        latest = None
    if latest is None:
        raise TrainingError(
            f"cannot read {os.path.join(ckpt_dir, 'checkpoint')}, the list of the checkpoints "
            "beside it; move the checkpoints folder away or pick another --workdir to start "
            "afresh")


def worker_scratch(workdir: str, task_id: int) -> str:
    """An empty temporary folder for a non-chief worker's checkpoints, removed at exit; named
    after the run folder, so a killed worker's leftovers are cleared when it starts again."""
    key = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"mwnet_tf-worker{task_id}-{key}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def check_same_checkpoint(strategy: tf.distribute.Strategy, latest: str | None) -> None:
    """All workers must resume from the same checkpoint (the chief's latest; its number is
    the run's step count), else the collective restore would fail on a half-restored state."""
    number = run_folder.checkpoint_number(latest) if latest else 0
    value = strategy.run(lambda: tf.constant([number], tf.int64))
    numbers = strategy.gather(value, axis=0).numpy()
    low, high = int(numbers.min()), int(numbers.max())
    if low != high:
        raise TrainingError(
            f"the workers would resume from different checkpoints (steps {low} to {high}): "
            "the run "
            "folder's checkpoints/ must be on a filesystem every worker reads")


def restore_checkpoint(latest: str | None, checkpoint: tf.train.Checkpoint, log) -> None:
    """Restores `checkpoint` from `latest` (if any); a checkpoint that cannot be read is a
    `TrainingError` telling how to start afresh."""
    if not latest:
        return
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except Exception as e:  # a corrupt file fails in many ways (OpError, IndexError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(
            f"cannot restore checkpoint {latest} ({first}); move the checkpoints folder "
            "away or pick another --workdir to start afresh") from None
    log(f"resumed from {latest} at epoch {int(checkpoint.epoch.numpy())} step "
        f"{int(checkpoint.step_in_epoch.numpy())}")


class Checkpointer:
    """The run's checkpoints and position. Create it inside the strategy's scope with the
    state to save (`models`: classifier and optimizer; `extra`: the tracker's and the
    method's trackables); `restore` it, then tell it where the run is (`begin_epoch`,
    `after_call` after each call of the training loop, `end_epoch`) and it saves when due.

    `stop_requested()` (or None), polled after each call and each epoch, returns a signal
    number to stop at: the run then saves a checkpoint and raises `Interrupted`."""

    def __init__(self, strategy: tf.distribute.Strategy, workdir: str, config: Config, *,
                 chief: bool, models: dict, extra: dict, stop_requested=None):
        self.strategy, self.chief, self.stop_requested = strategy, chief, stop_requested
        self.every_steps = config.checkpoint_every_steps
        self.every_minutes = config.checkpoint_every_minutes
        self.multi_worker = config.strategy == "multi_worker"
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_var = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                    name="best_accuracy")
        # the position inside the epoch and the steps of the whole run (checkpoint numbers)
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.global_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.checkpoint = tf.train.Checkpoint(
            **models, epoch=self.epoch_var, best_accuracy=self.best_var,
            step_in_epoch=self.step_var, global_step=self.global_var, **extra)
        self.dir = os.path.join(workdir, files.CHECKPOINTS)
        check_checkpoint_list(self.dir)
        if chief:
            self.manager = tf.train.CheckpointManager(self.checkpoint, self.dir,
                                                      max_to_keep=config.keep_checkpoints)
        else:  # every worker takes part in a save; the others' copies go to a temporary folder
            scratch = worker_scratch(workdir, strategy.cluster_resolver.task_id)
            self.manager = tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1)
        self.partial: dict = {}  # the metric sums of the epoch so far, saved beside it
        self.epoch_index = self.epoch_base = 0
        self.last_save = time.time()

    def restore(self, log) -> None:
        """Restores the latest checkpoint, if any (inside the strategy's scope), and on the
        chief the partial sums of the epoch it stopped inside."""
        latest = tf.train.latest_checkpoint(self.dir)
        if self.multi_worker:  # restoring is collective: agree on it first
            check_same_checkpoint(self.strategy, latest)
        restore_checkpoint(latest, self.checkpoint, log)
        self.partial = run_folder.read_progress(self.dir, latest) if self.chief else {}
        self.last_save = time.time()

    @property
    def epochs_done(self) -> int:
        return int(self.epoch_var.numpy())

    @property
    def step_in_epoch(self) -> int:
        return int(self.step_var.numpy())

    @property
    def best_accuracy(self) -> float:
        return float(self.best_var.numpy())

    def last(self) -> str | None:
        """The latest complete checkpoint in the run folder (None on the other workers)."""
        return tf.train.latest_checkpoint(self.dir) if self.chief else None

    def writing(self, what: str):
        """`writing(what, self.last)`: a failed write names the checkpoint kept."""
        return writing(what, self.last)

    def save(self) -> str | None:
        """A checkpoint of the current position (the chief writes the epoch's partial metric
        sums beside it first, named after it). A failed write removes that progress file and
        leaves the last complete checkpoint the latest."""
        number = int(self.global_var.numpy())
        progress_file = run_folder.progress_path(self.dir, number)
        try:
            with self.writing(f"checkpoint {number} in {self.dir}"):
                if self.chief:
                    os.makedirs(self.dir, exist_ok=True)
                    files.write_json(progress_file, {
                        "epoch": self.epochs_done, "step": self.step_in_epoch,
                        "sums": self.partial})
                faults.hit("checkpoint_before", self.dir)
                path = self.manager.save(checkpoint_number=number)
        except WriteError:
            if self.chief and not os.path.exists(os.path.join(self.dir,
                                                              f"ckpt-{number}.index")):
                with contextlib.suppress(OSError):
                    os.remove(progress_file)
            raise
        faults.hit("checkpoint_after")
        if self.chief:
            run_folder.prune_progress(self.dir, self.manager.checkpoints)
        self.last_save = time.time()
        return path

    def agreed(self, due: bool, signum: int | None) -> tuple[bool, int | None]:
        """Under multi-worker training every worker must take the same decision (a save is a
        collective operation): a checkpoint due on any worker's clock, or a signal received by
        any worker, counts for all (one small all-reduce per call)."""
        if not self.multi_worker:
            return due, signum
        local = tf.constant([[int(bool(due)), int(signum or 0)]], tf.int64)
        every = self.strategy.gather(self.strategy.run(lambda: local), axis=0).numpy()
        return bool(every[:, 0].max()), int(every[:, 1].max()) or None

    def _signal(self) -> int | None:
        return self.stop_requested() if self.stop_requested else None

    def begin_epoch(self, epoch: int, start_step: int) -> None:
        """Epoch `epoch` (0-based) starts, or resumes after `start_step` steps."""
        self.epoch_index = epoch
        self.epoch_base = int(self.global_var.numpy()) - start_step

    def after_call(self, step: int, sums: dict) -> None:
        """Records the position `step` steps into the epoch, with the epoch's metric sums so
        far; saves when a checkpoint is due or a stop was requested (then raises
        `Interrupted`)."""
        self.global_var.assign(self.epoch_base + step)
        self.step_var.assign(step)
        self.partial.clear()
        self.partial.update(sums)
        signum = self._signal()
        due = ((self.every_steps and step % self.every_steps == 0)
               or (self.every_minutes
                   and time.time() - self.last_save >= 60 * self.every_minutes))
        due, signum = self.agreed(due, signum)
        if due or signum:
            path = self.save()
            if signum:
                raise Interrupted(f"stopped by signal {signum} at epoch {self.epoch_index + 1} "
                                  f"step {step}; checkpoint {path}", signum)

    def end_epoch(self, steps: int, test_accuracy: float | None) -> None:
        """The epoch is complete after `steps` steps; `test_accuracy`, of an epoch whose stage
        is reported, updates the best one. Does not save: `save` once the epoch's files are
        written."""
        if test_accuracy is not None:
            self.best_var.assign(max(self.best_accuracy, test_accuracy))
        self.epoch_var.assign(self.epoch_index + 1)
        self.step_var.assign(0)
        self.global_var.assign(self.epoch_base + steps)
        self.partial.clear()

    def stop_after_epoch(self, total_epochs: int, path: str | None) -> None:
        """Raises `Interrupted` if a stop was requested and epochs remain (the epoch's
        checkpoint `path` is saved)."""
        _, signum = self.agreed(False, self._signal())
        epoch = self.epoch_index + 1
        if signum and epoch < total_epochs:
            raise Interrupted(f"stopped by signal {signum} after epoch {epoch}; "
                              f"checkpoint {path}", signum)
