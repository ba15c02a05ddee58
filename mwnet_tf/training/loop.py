"""Training loop: strategy, models and optimizers, epochs, evaluation, summaries, checkpoints.

`train_and_evaluate(config, workdir)` is the whole run; the absl entry point only turns flags
into a `Config`. Everything written to `workdir` is written atomically.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import methods, optim, precision, steps
from mwnet_tf.config import Config
from mwnet_tf.data import BiasedData, DataUnavailableError, load_dataset, make_biased_data
from mwnet_tf.data.clothing1m import CROP, load_clothing1m
from mwnet_tf.data.human_noise import load_human_labels
from mwnet_tf.data.pipeline import make_test_dataset, make_train_dataset
from mwnet_tf.errors import ImageError, Interrupted, TrainingError, WriteError
from mwnet_tf.methods.base import reinitialize, reset_optimizer
from mwnet_tf.models import build_classifier
from mwnet_tf.models.pretrained import check_file, load_pretrained
from mwnet_tf.training import faults, tracking
from mwnet_tf.training.run_folder import remove_leftovers, write_json


def make_strategy(name: str) -> tf.distribute.Strategy:
    """"auto": MirroredStrategy over all GPUs if there are several, else the default."""
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def epoch_lr(base_lr: float, decay_epochs, factor: float, epoch: int) -> float:
    """The learning rate of epoch `epoch` (0-based) of a stage: `base_lr` times `factor` once
    for each decay epoch already completed, so `decay_epochs=(5,)` trains epochs 1-5 at
    `base_lr` and epoch 6 from its first step at `base_lr * factor`."""
    return base_lr * factor ** sum(1 for d in decay_epochs if d <= epoch)


def make_optimizer(config: Config, kind: str = "classifier") -> keras.optimizers.Optimizer:
    """An optimizer with `torch.optim`'s rules (`mwnet_tf.optim`), coupled L2 included.

    kind "classifier": SGD with momentum (`--lr`, set per epoch by the trainer); "meta": the
    weight net's Adam or SGD (`--meta_optimizer`, fixed `--meta_lr`).
    """
    if kind == "classifier":
        opt = optim.TorchSGD(config.lr, momentum=config.momentum, nesterov=config.nesterov,
                             weight_decay=config.weight_decay)
    elif kind != "meta":
        raise ValueError(f"unknown optimizer kind {kind!r}")
    elif config.meta_optimizer == "adam":
        opt = optim.TorchAdam(config.meta_lr, weight_decay=config.meta_weight_decay)
    else:
        opt = optim.TorchSGD(config.meta_lr, momentum=config.meta_momentum,
                             nesterov=config.meta_nesterov, weight_decay=config.meta_weight_decay)
    return precision.wrap(opt, config.mixed_precision)  # loss scaling for float16


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


@contextlib.contextmanager
def _writing(what: str, last_checkpoint: Callable[[], str | None]) -> Iterator[None]:
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


class _Progress:
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


def _epoch_metrics(sums: dict) -> dict[str, float]:
    n = sums["count"]
    m = {"loss": sums["loss_sum"] / n, "accuracy": 100.0 * sums["correct"] / n}
    if "meta_loss" in sums:
        m["meta_loss"] = sums["meta_loss"] / sums.get("meta_steps", sums["steps"])
    if "weight_sum" in sums:
        m["weight_mean"] = sums["weight_sum"] / n
        if "count_corrupted" in sums:
            bad = sums["count_corrupted"]
            m["weight_corrupted"] = sums["weight_sum_corrupted"] / bad if bad else float("nan")
            m["weight_clean"] = ((sums["weight_sum"] - sums["weight_sum_corrupted"]) / (n - bad)
                                 if n > bad else float("nan"))
    return m


def _evaluate(eval_step, dataset) -> dict:
    """Test loss and accuracy (%), and per-class accuracy (%) when the step gives it."""
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


def _restore(latest: str | None, checkpoint: tf.train.Checkpoint, log) -> None:
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


def _progress_path(ckpt_dir: str, number: int) -> str:
    return os.path.join(ckpt_dir, f"progress-{number}.json")


def _read_progress(ckpt_dir: str, latest: str | None) -> dict:
    """The partial metric sums of the epoch the checkpoint `latest` stopped inside."""
    if not latest:
        return {}
    path = _progress_path(ckpt_dir, int(latest.rsplit("-", 1)[1]))
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return dict(json.load(f)["sums"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainingError(f"cannot read {path}; move the checkpoints folder away or pick "
                            "another --workdir to start afresh") from None


def _check_checkpoint_list(ckpt_dir: str) -> None:
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


def _prune_progress(ckpt_dir: str, kept: list[str]) -> None:
    """Removes the progress files of checkpoints the manager no longer keeps."""
    keep = {os.path.basename(_progress_path(ckpt_dir, int(p.rsplit("-", 1)[1]))) for p in kept}
    for name in os.listdir(ckpt_dir):
        if name.startswith("progress-") and name.endswith(".json") and name not in keep:
            os.remove(os.path.join(ckpt_dir, name))


def _worker_scratch(workdir: str, task_id: int) -> str:
    """An empty temporary folder for a non-chief worker's checkpoints, removed at exit; named
    after the run folder, so a killed worker's leftovers are cleared when it starts again."""
    key = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"mwnet_tf-worker{task_id}-{key}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


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
        if not np.isfinite(out["loss_sum"]) or not np.isfinite(out.get("meta_loss", 0.0)):
            where = f"step {step}" if n == 1 else f"steps {step - n + 1}-{step}"
            kept = last_checkpoint() if last_checkpoint is not None else None
            raise TrainingError(
                f"loss became NaN/inf at epoch {epoch + 1} {where}; "
                + (f"the last checkpoint ({kept}) is kept" if kept else "no checkpoint yet")
                + ": lower --lr or --meta_lr and rerun")
        sums["count"] = step * batch_size
        sums["steps"] = step
        if progress is not None:
            progress(step, sums)
        faults.hit("after_call")
        if after_call is not None:
            after_call(step, sums)
    return sums


def _check_same_checkpoint(strategy: tf.distribute.Strategy, latest: str | None) -> None:
    """All workers must resume from the same checkpoint (the chief's latest; its number is
    the run's step count), else the collective restore would fail on a half-restored state."""
    number = int(latest.rsplit("-", 1)[1]) if latest else 0
    value = strategy.run(lambda: tf.constant([number], tf.int64))
    numbers = strategy.gather(value, axis=0).numpy()
    low, high = int(numbers.min()), int(numbers.max())
    if low != high:
        raise TrainingError(
            f"the workers would resume from different checkpoints (steps {low} to {high}): "
            "the run "
            "folder's checkpoints/ must be on a filesystem every worker reads")


def _stage_at(stages, epoch: int):
    """(stage index, epoch within the stage) of a run's 0-based epoch."""
    start = 0
    for i, stage in enumerate(stages):
        if epoch < start + stage.epochs:
            return i, epoch - start
        start += stage.epochs
    raise IndexError(epoch)


def load_data(config: Config) -> BiasedData:
    """The run's data: Clothing1M's files as they are, or a data set biased as configured."""
    if config.dataset == "clothing1m":
        if config.data_dir is None:
            raise DataUnavailableError(
                "--dataset=clothing1m needs --data_dir=DIR, the folder holding Clothing1M's "
                "annotation files and images/ (this program never downloads)")
        return load_clothing1m(config.data_dir, config.image_size or CROP)
    ds = load_dataset(config.dataset, config.data_dir)
    human = (load_human_labels(config.noise_labels, config.noise_label_set, ds)
             if config.noise == "human" else None)
    return make_biased_data(ds, noise=config.noise, rate=config.rate,
                            imbalance=config.imbalance, meta_per_class=config.meta_per_class,
                            seed=config.seed, human_labels=human)


@contextlib.contextmanager
def _reading_images(data: BiasedData, started: bool,
                    last_checkpoint: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """For data read from files: a file TensorFlow cannot decode ends the run with one line
    (`DataUnavailableError` before the run has started, `ImageError` after). A file that is
    not a JPEG is named (the pipeline's check); a JPEG damaged inside is not, since
    TensorFlow's decoder does not say which file it was reading."""
    if not data.from_files:
        yield
        return
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        text = str(getattr(e, "message", e))
        named = re.search(r"\[not a JPEG file:\] \[(.*?)\]", text)
        if named:
            what = f"{named.group(1)}: not a JPEG file"
        else:
            line = next((t for t in text.splitlines() if t.strip()), type(e).__name__)
            line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()[:200]
            what = (f"an image of the data set could not be decoded ({line}); TensorFlow's "
                    "decoder does not name the file")
        if not started:
            raise DataUnavailableError(what) from None
        kept = last_checkpoint()
        raise ImageError(f"{what}; " + (f"the last checkpoint {kept} is kept" if kept else
                                        "no checkpoint yet") + ": replace the file, then rerun "
                         "the same command to resume") from None


def train_and_evaluate(config: Config, workdir: str, *, data: BiasedData | None = None,
                       strategy: tf.distribute.Strategy | None = None, log=print,
                       stop_requested=None, on_start: Callable[[], None] | None = None,
                       progress_bar: bool = False) -> dict:
    """Trains `config.method` on the biased data and evaluates every epoch.

    The method (`mwnet_tf.methods`) gives the run's stages and steps; this loop runs them in
    order. Writes into `workdir`: TensorBoard events (`train/`, `test/`), `checkpoints/`
    (resumed from when present), the method's artifacts (MW-Net: `weight_fn/`) and
    `results.json`. Returns the results.

    Checkpoints: after each epoch, and inside it every `config.checkpoint_every_steps` steps
    and `config.checkpoint_every_minutes` minutes; a resumed run continues at the next batch.
    `progress_bar`: Keras' progress bar inside each epoch (for a terminal) instead of the
    throttled lines every `config.progress_seconds`.
    `on_start()` is called (on the chief) once the data is loaded and the checkpoint, if any,
    restored: the first moment the run folder is changed, so a start that fails before it
    leaves an existing folder as it was.
    `stop_requested()`, polled after each call of the training loop, returns a signal number
    to stop at: the run then saves a checkpoint and raises `Interrupted`.

    `strategy` defaults to `make_strategy(config.strategy)`; under multi-worker training pass
    one made at program start. Only the chief writes `workdir`: the other workers restore
    from its `checkpoints/` (so the run folder must be on a filesystem they share to resume)
    and save their own copies to a temporary folder they remove.
    """
    if config.deterministic:
        keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
    strategy = strategy or make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas or config.meta_batch_size % replicas:
        raise ValueError(f"batch sizes must be divisible by the {replicas} replicas")
    if config.pretrained:
        check_file(config.pretrained)  # before reading the data, which may take a while
    if data is None:
        data = load_data(config)
    method_cls = methods.get(config.method)
    if len(data.train_y) < config.batch_size:
        raise ValueError(f"the training set ({len(data.train_y)} images) is smaller than one "
                         f"batch ({config.batch_size})")
    log(f"{config.dataset}: {len(data.train_y)} training images "
        f"({100 * data.realized_noise_rate:.1f}% labels corrupted), {len(data.meta_y)} meta, "
        f"{len(data.test_y)} test; {config.method} with {config.model} on {replicas} replica(s)")

    distributed = replicas > 1 or config.strategy in ("mirrored", "multi_worker")
    chief = _is_chief(strategy)
    options = steps.StepOptions(config.batch_size, config.meta_batch_size, config.weight_norm)
    if chief:
        os.makedirs(workdir, exist_ok=True)
    with strategy.scope():
        def new_classifier(seed: int) -> keras.Model:
            with precision.policy(config.mixed_precision):
                model = build_classifier(config.model, data.num_classes, data.input_shape,
                                         synchronized_bn=replicas > 1, seed=seed)
            if config.pretrained:  # every fresh classifier starts from the same backbone
                load_pretrained(model, config.pretrained)
            return model

        def new_optimizer(kind: str) -> keras.optimizers.Optimizer:
            return make_optimizer(config, kind)

        classifier = new_classifier(config.seed)
        if config.pretrained:
            log(f"backbone weights from {config.pretrained}; new head randomly initialized")
        optimizer = new_optimizer("classifier")
        optimizer.build(classifier.trainable_variables)
        method = method_cls(methods.Context(
            config=config, data=data, classifier=classifier, optimizer=optimizer,
            options=options, new_classifier=new_classifier, new_optimizer=new_optimizer,
            num_replicas=replicas))
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="best_accuracy")
        # the position inside the epoch and the steps of the whole run (checkpoint numbers)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        global_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        with _reading_images(data, started=False):
            tracker = tracking.Tracker(data, method, seed=config.seed,
                                       batch_size=config.eval_batch_size, workdir=workdir,
                                       chief=chief, write=write_json,
                                       images=config.tensorboard_images)
        checkpoint = tf.train.Checkpoint(classifier=classifier, optimizer=optimizer,
                                         epoch=epoch_var, best_accuracy=best_var,
                                         step_in_epoch=step_var, global_step=global_var,
                                         **tracker.trackables(), **method.trackables())
        ckpt_dir = os.path.join(workdir, "checkpoints")
        _check_checkpoint_list(ckpt_dir)
        if chief:
            manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                                 max_to_keep=config.keep_checkpoints)
        else:  # every worker takes part in a save; the others' copies go to a temporary folder
            scratch = _worker_scratch(workdir, strategy.cluster_resolver.task_id)
            manager = tf.train.CheckpointManager(checkpoint, scratch, max_to_keep=1)
        latest = tf.train.latest_checkpoint(ckpt_dir)
        if config.strategy == "multi_worker":  # restoring is collective: agree on it first
            _check_same_checkpoint(strategy, latest)
        _restore(latest, checkpoint, log)
    partial = _read_progress(ckpt_dir, latest) if chief else {}
    if chief:
        remove_leftovers(workdir)
        if on_start is not None:
            on_start()

    def last_checkpoint() -> str | None:
        return tf.train.latest_checkpoint(ckpt_dir) if chief else None

    def save() -> str | None:
        """A checkpoint of the current position (the chief writes the epoch's partial metric
        sums beside it first, named after it). A failed write removes that progress file and
        leaves the last complete checkpoint the latest."""
        number = int(global_var.numpy())
        progress_file = _progress_path(ckpt_dir, number)
        try:
            with _writing(f"checkpoint {number} in {ckpt_dir}", last_checkpoint):
                if chief:
                    os.makedirs(ckpt_dir, exist_ok=True)
                    write_json(progress_file, {"epoch": int(epoch_var.numpy()),
                                               "step": int(step_var.numpy()), "sums": partial})
                faults.hit("checkpoint_before", ckpt_dir)
                path = manager.save(checkpoint_number=number)
        except WriteError:
            if chief and not os.path.exists(os.path.join(ckpt_dir, f"ckpt-{number}.index")):
                with contextlib.suppress(OSError):
                    os.remove(progress_file)
            raise
        faults.hit("checkpoint_after")
        if chief:
            _prune_progress(ckpt_dir, manager.checkpoints)
        return path

    stages = method.stages()
    total_epochs = sum(s.epochs for s in stages)
    strategy_or_none = strategy if distributed else None
    loops: dict[int, object] = {}
    eval_step = steps.make_eval_step(method.eval_model(), strategy_or_none, data.num_classes)
    test_ds = make_test_dataset(data, batch_size=config.eval_batch_size)
    if distributed:
        test_ds = strategy.experimental_distribute_dataset(test_ds)

    writers = {k: tf.summary.create_file_writer(os.path.join(workdir, k)) if chief else
               tf.summary.create_noop_writer() for k in ("train", "test")}
    tracker.start(int(epoch_var.numpy()))
    start_time = time.time()
    test: dict = {}
    train = {}
    first_epoch, last_save = int(epoch_var.numpy()), time.time()

    def agreed(due: bool, signum: int | None) -> tuple[bool, int | None]:
        """Under multi-worker training every worker must take the same decision (a save is a
        collective operation): a checkpoint due on any worker's clock, or a signal received by
        any worker, counts for all (one small all-reduce per call)."""
        if config.strategy != "multi_worker":
            return due, signum
        local = tf.constant([[int(bool(due)), int(signum or 0)]], tf.int64)
        every = strategy.gather(strategy.run(lambda: local), axis=0).numpy()  # [replicas, 2]
        return bool(every[:, 0].max()), int(every[:, 1].max()) or None

    def after_call(step: int, sums: dict) -> None:
        """Records the position; saves when a checkpoint is due or a stop was requested."""
        nonlocal last_save
        global_var.assign(epoch_base + step)
        step_var.assign(step)
        partial.clear()
        partial.update(sums)
        signum = stop_requested() if stop_requested else None
        due = ((config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0)
               or (config.checkpoint_every_minutes
                   and time.time() - last_save >= 60 * config.checkpoint_every_minutes))
        due, signum = agreed(due, signum)
        if due or signum:
            path = save()
            last_save = time.time()
            if signum:
                raise Interrupted(f"stopped by signal {signum} at epoch {epoch + 1} step "
                                  f"{step}; checkpoint {path}", signum)

    for epoch in range(first_epoch, total_epochs):
        t0 = time.time()
        start_step = int(step_var.numpy()) if epoch == first_epoch else 0
        epoch_base = int(global_var.numpy()) - start_step
        index, stage_epoch = _stage_at(stages, epoch)
        stage = stages[index]
        if stage_epoch == 0 and stage.fresh and start_step == 0:
            with strategy.scope():
                reinitialize(classifier, new_classifier(config.seed + 1000 * index))
                reset_optimizer(optimizer)
        lr = epoch_lr(stage.lr if stage.lr is not None else config.lr, stage.lr_decay_epochs,
                      config.lr_decay_factor, stage_epoch)
        optimizer.learning_rate = lr
        method.begin_epoch(stage, stage_epoch)
        stage_data = method.stage_data(stage)
        steps_per_epoch = len(stage_data.train_y) // config.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"stage {stage.name!r} has {len(stage_data.train_y)} images, fewer "
                             f"than one batch ({config.batch_size}): lower --batch_size")
        if index not in loops:
            loops[index] = steps.compile_loop(method.replica_step(stage), strategy_or_none,
                                             config.jit_compile)
        train_loop = loops[index]
        train_ds = make_train_dataset(stage_data, batch_size=config.batch_size,
                                      meta_batch_size=config.meta_batch_size, seed=config.seed,
                                      epoch=epoch,
                                      with_meta=method.meta_batches(stage))
        if start_step:  # resumed inside the epoch: the same batches from the next one on
            train_ds = train_ds.skip(start_step)
        if distributed:
            train_ds = strategy.experimental_distribute_dataset(train_ds)
        progress = _Progress(log, config.progress_seconds, steps_per_epoch, epoch + 1,
                             total_epochs, bar=progress_bar and chief)
        with _reading_images(data, True, last_checkpoint):
            sums = train_epoch(train_loop, train_ds, steps=steps_per_epoch,
                               steps_per_call=config.steps_per_call,
                               batch_size=config.batch_size, epoch=epoch,
                               progress=progress.update, start_step=start_step,
                               sums=partial if start_step else None,
                               checkpoint_every_steps=config.checkpoint_every_steps,
                               after_call=after_call, last_checkpoint=last_checkpoint)
            train = _epoch_metrics(sums)
            test = _evaluate(eval_step, test_ds)
        if stage.reported:
            best_var.assign(max(float(best_var.numpy()), test["accuracy"]))
        if stage_epoch == stage.epochs - 1:
            with _reading_images(data, True, last_checkpoint):
                method.end_stage(stage)
        epoch_var.assign(epoch + 1)
        step_var.assign(0)
        global_var.assign(epoch_base + steps_per_epoch)
        partial.clear()
        with writers["train"].as_default(step=epoch + 1):
            for k, v in train.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", lr)
        with writers["test"].as_default(step=epoch + 1):
            tf.summary.scalar("loss", test["loss"])
            tf.summary.scalar("accuracy", test["accuracy"])
            for c, acc in enumerate(test.get("per_class_accuracy", [])):
                tf.summary.scalar(f"class_accuracy/{c:03d}", acc)
        with _writing(f"the epoch's history and summaries in {workdir}", last_checkpoint):
            tracker.end_epoch(epoch + 1, lr, train, test, writers)
        path = save()
        last_save = time.time()
        extra = "".join(f"  {k} {train[k]:.3f}" for k in
                        ("meta_loss", "weight_clean", "weight_corrupted") if k in train)
        where = f" ({stage.name})" if len(stages) > 1 else ""
        log(f"epoch {epoch + 1}/{total_epochs}{where}  lr {lr:g}  train loss "
            f"{train['loss']:.4f} acc {train['accuracy']:.2f}%{extra}  test loss "
            f"{test['loss']:.4f} acc {test['accuracy']:.2f}%  {time.time() - t0:.1f}s")
        _, signum = agreed(False, stop_requested() if stop_requested else None)
        if signum and epoch + 1 < total_epochs:
            raise Interrupted(f"stopped by signal {signum} after epoch {epoch + 1}; "
                              f"checkpoint {path}", signum)
    for w in writers.values():
        w.flush()

    if not test:  # nothing left to train: a finished run asked again, or killed at the end
        with _reading_images(data, True, last_checkpoint):
            test = _evaluate(eval_step, test_ds)
        train = tracker.final(test)
    results = {
        "test_accuracy": test["accuracy"],
        "best_test_accuracy": float(best_var.numpy()),
        "per_class_test_accuracy": test.get("per_class_accuracy"),
        "realized_noise_rate": float(data.realized_noise_rate),
        "epochs": total_epochs,
        "stages": [dataclasses.asdict(s) for s in stages],
        "train": train,
        "wall_seconds_this_session": round(time.time() - start_time, 1),
        "config": config.to_dict(),
        **tracker.results(),
        **method.results(),
    }
    if chief:
        with _writing(f"the exports in {workdir}", last_checkpoint):
            method.export(workdir)
        with _writing(os.path.join(workdir, "results.json"), last_checkpoint):
            write_json(os.path.join(workdir, "results.json"), results, fault="results")
    return results
