"""Training loop: strategy, models and optimizers, epochs, evaluation, summaries, checkpoints.

`train_and_evaluate(config, workdir)` is the whole run; the absl entry point only turns flags
into a `Config`. Everything written to `workdir` is written atomically.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import export, meta
from mwnet_tf.config import Config
from mwnet_tf.data import BiasedData, load_dataset, make_biased_data
from mwnet_tf.data.pipeline import make_test_dataset, make_train_dataset
from mwnet_tf.models import build_classifier, build_weight_net


class TrainingError(RuntimeError):
    """A run that cannot go on (NaN loss, unreadable checkpoint); the message is one line."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """"auto": MirroredStrategy over all GPUs if there are several, else the default."""
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def lr_schedule(config: Config, steps_per_epoch: int):
    """Step decay: lr times `lr_decay_factor` after each of `lr_decay_epochs` (per iteration).

    Step k (0-based, the value of `optimizer.iterations` when it is taken) uses the rate of
    epoch `k // steps_per_epoch + 1`: with `lr_decay_epochs=(5,)` epochs 1-5 train at `lr` and
    epoch 6 from its first step at `lr * lr_decay_factor`. `PiecewiseConstantDecay` keeps the
    old value while `step <= boundary`, hence the boundaries one step before each epoch.
    """
    if not config.lr_decay_epochs:
        return config.lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [e * steps_per_epoch - 1 for e in config.lr_decay_epochs],
        [config.lr * config.lr_decay_factor ** k for k in range(len(config.lr_decay_epochs) + 1)])


def make_optimizers(config: Config, steps_per_epoch: int):
    """The classifier's SGD-momentum and the weight net's Adam or SGD (coupled L2 is added
    to the gradients by the step, not here: Keras' `weight_decay=` is decoupled)."""
    opt = keras.optimizers.SGD(lr_schedule(config, steps_per_epoch), momentum=config.momentum,
                               nesterov=config.nesterov)
    if config.meta_optimizer == "adam":
        meta_opt = keras.optimizers.Adam(config.meta_lr)
    else:
        meta_opt = keras.optimizers.SGD(config.meta_lr, momentum=config.meta_momentum,
                                        nesterov=config.meta_nesterov)
    return opt, meta_opt


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def write_json(path: str, obj) -> None:
    """Writes JSON atomically (a temporary file moved into place)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class _Progress:
    """A throttled step counter: one line every `seconds`."""

    def __init__(self, log, seconds: float, total: int, epoch: int, epochs: int):
        self.log, self.seconds, self.total = log, seconds, total
        self.prefix = f"epoch {epoch}/{epochs}"
        self.start = self.last = time.time()

    def update(self, step: int, sums: dict) -> None:
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
        m["meta_loss"] = sums["meta_loss"] / sums["steps"]
        m["weight_mean"] = sums["weight_sum"] / n
        if "count_corrupted" in sums:
            bad = sums["count_corrupted"]
            m["weight_corrupted"] = sums["weight_sum_corrupted"] / bad if bad else float("nan")
            m["weight_clean"] = ((sums["weight_sum"] - sums["weight_sum_corrupted"]) / (n - bad)
                                 if n > bad else float("nan"))
    return m


def _evaluate(eval_step, dataset) -> dict[str, float]:
    sums = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for batch in dataset:
        for k, v in eval_step(batch).items():
            sums[k] += float(v)
    return {"loss": sums["loss_sum"] / sums["count"],
            "accuracy": 100.0 * sums["correct"] / sums["count"]}


def _restore(manager: tf.train.CheckpointManager, checkpoint: tf.train.Checkpoint, log) -> None:
    latest = manager.latest_checkpoint
    if not latest:
        return
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except Exception as e:  # a corrupt file fails in many ways (OpError, IndexError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(
            f"cannot restore checkpoint {latest} ({first}); move the checkpoints folder "
            "away or pick another --workdir to start afresh") from None
    log(f"resumed from {latest} at epoch {int(checkpoint.epoch.numpy())}")


def train_and_evaluate(config: Config, workdir: str, *, data: BiasedData | None = None,
                       log=print) -> dict:
    """Trains `config.method` on the biased data and evaluates every epoch.

    Writes into `workdir`: TensorBoard events (`train/`, `test/`), `checkpoints/` (resumed
    from when present), `weight_fn/` (MW-Net only) and `results.json`. Returns the results.
    """
    if config.deterministic:
        keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas or config.meta_batch_size % replicas:
        raise ValueError(f"batch sizes must be divisible by the {replicas} replicas")
    if data is None:
        data = make_biased_data(load_dataset(config.dataset, config.data_dir), noise=config.noise,
                                rate=config.rate, imbalance=config.imbalance,
                                meta_per_class=config.meta_per_class, seed=config.seed)
    steps_per_epoch = len(data.train_y) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(data.train_y)} images) is smaller than one "
                         f"batch ({config.batch_size})")
    log(f"{config.dataset}: {len(data.train_y)} training images "
        f"({100 * data.realized_noise_rate:.1f}% labels corrupted), {len(data.meta_y)} meta, "
        f"{len(data.test_y)} test; {config.method} with {config.model} on {replicas} replica(s)")

    distributed = replicas > 1 or config.strategy in ("mirrored", "multi_worker")
    chief = _is_chief(strategy)
    os.makedirs(workdir, exist_ok=True)
    with strategy.scope():
        classifier = build_classifier(config.model, data.num_classes, data.train_x.shape[1:],
                                      synchronized_bn=replicas > 1, seed=config.seed)
        weight_net = build_weight_net(seed=config.seed + 1)
        optimizer, meta_optimizer = make_optimizers(config, steps_per_epoch)
        optimizer.build(classifier.trainable_variables)
        meta_optimizer.build(weight_net.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="best_accuracy")
        checkpoint = tf.train.Checkpoint(classifier=classifier, weight_net=weight_net,
                                         optimizer=optimizer, meta_optimizer=meta_optimizer,
                                         epoch=epoch_var, best_accuracy=best_var)
        ckpt_dir = os.path.join(workdir, "checkpoints")
        if not chief:
            ckpt_dir = os.path.join(workdir, f".worker-{strategy.cluster_resolver.task_id}")
        manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                             max_to_keep=config.keep_checkpoints)
        _restore(manager, checkpoint, log)

    options = meta.StepOptions(config.batch_size, config.meta_batch_size, config.weight_decay,
                               config.meta_weight_decay, config.weight_norm)
    train_step = meta.make_train_step(
        config.method, classifier, optimizer, options, weight_net=weight_net,
        meta_optimizer=meta_optimizer,
        strategy=strategy if distributed else None, jit_compile=config.jit_compile)
    eval_step = meta.make_eval_step(classifier, strategy if distributed else None)
    test_ds = make_test_dataset(data, batch_size=config.eval_batch_size)
    if distributed:
        test_ds = strategy.experimental_distribute_dataset(test_ds)

    writers = {k: tf.summary.create_file_writer(os.path.join(workdir, k) if chief else
                                                os.path.join(ckpt_dir, k))
               for k in ("train", "test")}
    start_time = time.time()
    test = {"accuracy": float("nan"), "loss": float("nan")}
    train = {}
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        t0 = time.time()
        lr = float(optimizer.learning_rate)
        train_ds = make_train_dataset(data, batch_size=config.batch_size,
                                      meta_batch_size=config.meta_batch_size, seed=config.seed,
                                      epoch=epoch)
        if distributed:
            train_ds = strategy.experimental_distribute_dataset(train_ds)
        sums: dict[str, float] = {}
        progress = _Progress(log, config.progress_seconds, steps_per_epoch, epoch + 1,
                             config.epochs)
        for step, (batch, meta_batch) in enumerate(train_ds, 1):
            out = train_step(batch, meta_batch)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if not np.isfinite(float(out["loss_sum"])) or not np.isfinite(
                    float(out.get("meta_loss", 0.0))):
                raise TrainingError(
                    f"loss became NaN/inf at epoch {epoch + 1} step {step}; the last "
                    f"checkpoint (epoch {int(epoch_var.numpy())}) is kept: lower --lr or "
                    "--meta_lr and rerun")
            sums["count"] = step * config.batch_size
            sums["steps"] = step
            progress.update(step, sums)
        train = _epoch_metrics(sums)
        test = _evaluate(eval_step, test_ds)
        best_var.assign(max(float(best_var.numpy()), test["accuracy"]))
        epoch_var.assign(epoch + 1)
        with writers["train"].as_default(step=epoch + 1):
            for k, v in train.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", lr)
        with writers["test"].as_default(step=epoch + 1):
            for k, v in test.items():
                tf.summary.scalar(k, v)
        manager.save(checkpoint_number=epoch + 1)
        extra = "".join(f"  {k} {train[k]:.3f}" for k in
                        ("meta_loss", "weight_clean", "weight_corrupted") if k in train)
        log(f"epoch {epoch + 1}/{config.epochs}  lr {lr:g}  train loss {train['loss']:.4f} "
            f"acc {train['accuracy']:.2f}%{extra}  test loss {test['loss']:.4f} "
            f"acc {test['accuracy']:.2f}%  {time.time() - t0:.1f}s")
    for w in writers.values():
        w.flush()

    results = {
        "test_accuracy": test["accuracy"] if train else _evaluate(eval_step, test_ds)["accuracy"],
        "best_test_accuracy": float(best_var.numpy()),
        "realized_noise_rate": float(data.realized_noise_rate),
        "epochs": config.epochs,
        "train": train,
        "wall_seconds_this_session": round(time.time() - start_time, 1),
        "config": config.to_dict(),
    }
    if config.method == "mwnet":
        results["weight_curve"] = export.weight_curve(weight_net)
        if chief:
            export.export_weight_fn(weight_net, os.path.join(workdir, "weight_fn"))
    if chief:
        write_json(os.path.join(workdir, "results.json"), results)
    return results
