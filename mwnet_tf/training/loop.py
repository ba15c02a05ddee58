"""Training loop: a run from its data and models to its results, epoch by epoch.

`train_and_evaluate(config, workdir)` is the whole run; the absl entry point only turns flags
into a `Config`. The parts it runs are modules of their own: the run folder and its one
atomic writer (`run_folder`), checkpoints and resuming (`checkpointer`), one epoch of a stage
(`epoch`), evaluation and summaries (`evaluation`), results and exports (`results`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable

import keras
import tensorflow as tf

from mwnet_tf import files, methods
from mwnet_tf.config import AUTO_MODEL, Config, is_model_file, is_own_dataset
from mwnet_tf.data import BiasedData, DataUnavailableError, content, load_dataset, make_biased_data
from mwnet_tf.data.class_names import default_class_names
from mwnet_tf.data.clothing1m import CROP, load_clothing1m
from mwnet_tf.data.custom.biased import OwnData, make_own_biased_data
from mwnet_tf.data.custom.load import load_own_data
from mwnet_tf.data.data_dir import data_root
from mwnet_tf.data.data_dir import problem as data_dir_problem
from mwnet_tf.data.human_noise import load_human_labels
from mwnet_tf.data.pipeline import check_meta_batch
from mwnet_tf.errors import Interrupted, TrainingError
from mwnet_tf.files import DATA, write_json
from mwnet_tf.methods import optim, precision, steps
from mwnet_tf.models import build_classifier, keras_file
from mwnet_tf.models.pretrained import check_file, load_pretrained
from mwnet_tf.outputs import finish
from mwnet_tf.training import meta_set, tracking
from mwnet_tf.training import results as results_lib
from mwnet_tf.training.checkpointer import Checkpointer
from mwnet_tf.training.epoch import Epochs, epoch_lr, reading_images, train_epoch
from mwnet_tf.training.evaluation import Evaluation, epoch_line
from mwnet_tf.training.run_folder import check_same_data, remove_leftovers

# the training wing's entry points
__all__ = ["Interrupted", "TrainingError", "epoch_lr", "load_data", "make_optimizer",
           "make_strategy", "train_and_evaluate", "train_epoch"]


def make_strategy(name: str, cluster_resolver=None) -> tf.distribute.Strategy:
    """"auto": MirroredStrategy over all GPUs if there are several, else the default;
    "multi_worker" from `TF_CONFIG`, or from `cluster_resolver` when given (Slurm)."""
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(config: Config, kind: str = "classifier") -> keras.optimizers.Optimizer:
    """An optimizer with `torch.optim`'s rules (`mwnet_tf.methods.optim`), coupled L2 included.

    kind "classifier": SGD with momentum (`--lr`, set per epoch by the trainer); "meta": the
    weight net's Adam or SGD (`--meta_optimizer`, fixed `--meta_lr`).
    """
    if kind == "classifier":
        opt = optim.TorchSGD(config.lr, momentum=config.momentum, nesterov=config.nesterov,
                             weight_decay=config.weight_decay)
    elif kind != "meta":
        raise ValueError(f"unknown optimizer kind {kind!r}")
    elif config.meta_optimizer == "adam":
        opt = optim.TorchAdam(config.meta_lr, weight_decay=config.meta_weight_decay,
                              amsgrad=config.meta_amsgrad)
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


def load_own(config: Config) -> OwnData:
    """Own data (`--dataset=folder|csv|npz|tfds:NAME`) as loaded, before the run's choices."""
    return load_own_data(config.dataset, config.data_dir, image_size=config.image_size,
                         augment=config.augment, test_fraction=config.test_fraction,
                         split_seed=config.split_seed, verify=config.verify_images,
                         image_key=config.image_key, label_key=config.label_key,
                         need_trusted=config.meta_source == "trusted")


def _load_data(config: Config, log=None,
               hasher: content.Hasher | None = None) -> tuple[BiasedData, OwnData | None]:
    """The run's data, and own data as loaded (None for the built-in data sets); own data
    whose trusted set is mostly training images is refused (`content.check_overlap`)."""
    if is_own_dataset(config.dataset):
        own = load_own(config)
        if log is not None:
            log(own.describe())
        content.check_overlap(own, log, hasher)
        data = make_own_biased_data(own, noise=config.noise, rate=config.rate,
                                    imbalance=config.imbalance,
                                    meta_per_class=config.meta_per_class, seed=config.seed,
                                    meta_seed=config.part_seed("meta"),
                                    noise_seed=config.part_seed("noise"))
        return data, own
    if config.dataset == "clothing1m":
        if config.data_dir is None:
            raise DataUnavailableError(data_dir_problem(config.dataset, None))
        return load_clothing1m(config.data_dir, config.image_size or CROP), None
    ds = load_dataset(config.dataset, config.data_dir)
    human = (load_human_labels(config.noise_labels, config.noise_label_set, ds)
             if config.noise == "human" else None)
    return make_biased_data(ds, noise=config.noise, rate=config.rate,
                            imbalance=config.imbalance, meta_per_class=config.meta_per_class,
                            seed=config.seed, meta_seed=config.part_seed("meta"),
                            noise_seed=config.part_seed("noise"), human_labels=human), None


def load_data(config: Config) -> BiasedData:
    """The run's data: Clothing1M's files as they are, own data, or a data set biased as
    configured."""
    return _load_data(config)[0]


def auto_model(data: BiasedData) -> str:
    """`--model=auto`: mlp for feature vectors [N, D], cnn for images."""
    return "mlp" if len(data.input_shape) == 1 else "cnn"


def load_model_file(path: str, data: BiasedData) -> keras.Model:
    """`--model=PATH.keras`: the model, its config checked as data first and then loaded in
    safe mode (`keras_file.load_keras_file`), checked against the data: one input, of the
    data's shape, and one output, one logit per class. Every problem is a one-line
    `ValueError`."""
    what = f"--model={path}"
    model = keras_file.load_keras_file(path, what)
    keras_file.check_single_io(model, what)
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    want = tuple(data.input_shape)
    if shape is None or len(shape) != len(want) or any(
            d is not None and d != w for d, w in zip(shape, want)):
        raise ValueError(f"--model={path}: its input shape {shape} does not fit the data's "
                         f"{want}")
    out = tuple(model.outputs[0].shape)
    if out[-1] != data.num_classes or len(out) != 2:
        raise ValueError(f"--model={path}: its output shape {out} is not one logit per class "
                         f"(None, {data.num_classes})")
    return model


def _seeded_clone(model: keras.Model, seed: int) -> keras.Model:
    """`model`'s architecture with fresh weights drawn from its initializers, seeded."""
    counter = iter(range(1 << 30))

    def clone_layer(layer):
        config = layer.get_config()
        for key, value in config.items():
            if (key.endswith("_initializer") and isinstance(value, dict)
                    and "seed" in value.get("config", {})):
                value["config"]["seed"] = seed * 1000 + next(counter)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)


def _new_classifier(config: Config, data: BiasedData, replicas: int, seed: int) -> keras.Model:
    """A classifier as configured; every fresh one starts from the same pretrained backbone.
    `--model=PATH.keras`: the file's model with its weights for the run's seed, a seeded
    re-initialized clone for any other (the fresh or second classifiers some methods need)."""
    if is_model_file(config.model):
        with precision.policy(config.mixed_precision):
            model = load_model_file(config.model, data)
            return model if seed == config.part_seed("init") else _seeded_clone(model, seed)
    with precision.policy(config.mixed_precision):
        model = build_classifier(config.model, data.num_classes, data.input_shape,
                                 synchronized_bn=replicas > 1, seed=seed)
    if config.pretrained:
        load_pretrained(model, config.pretrained)
    return model


def _prepare(config: Config, strategy: tf.distribute.Strategy | None) -> tf.distribute.Strategy:
    """Seeds and determinism, the strategy, and the checks that need no data."""
    if config.deterministic:
        keras.utils.set_random_seed(config.part_seed("init"))
        tf.config.experimental.enable_op_determinism()
    strategy = strategy or make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas or config.meta_batch_size % replicas:
        raise ValueError(f"batch sizes must be divisible by the {replicas} replicas")
    if config.pretrained:
        check_file(config.pretrained)  # before reading the data, which may take a while
    return strategy


def _load(config: Config, data: BiasedData | None, replicas: int, log, hasher=None):
    """The run's data (loaded unless given), own data as loaded (or None), the config with
    --model=auto resolved, and the method class, checked and described."""
    method_cls = methods.get(config.method)
    if config.meta_source == "selected":
        _check_selected(config, method_cls)
    own = None
    if data is None:
        data, own = _load_data(config, log, hasher)
    if config.model == AUTO_MODEL:
        config = config.replace(model=auto_model(data))
        log(f"--model=auto: {config.model} for inputs of shape {tuple(data.input_shape)}")
    if is_model_file(config.model):
        load_model_file(config.model, data)  # its problems before anything is built
    if len(data.train_y) < config.batch_size:
        raise ValueError(f"the training set ({len(data.train_y)} images) is smaller than one "
                         f"batch ({config.batch_size})")
    rate = data.realized_noise_rate
    noise = ("labels as given, their noise unknown" if rate != rate
             else f"{100 * rate:.1f}% labels corrupted")
    selected = config.meta_source == "selected"
    if selected:  # a class with too few samples, before anything is built
        meta_set.first_selection(data, config.select_per_class,
                                 own.class_names if own is not None else None)
    meta = (f"{config.select_per_class * data.num_classes} meta selected" if selected
            else f"{len(data.meta_y)} meta")
    test = ("held out with their given labels" if data.test_name == "heldout_noisy"
            else "test")
    log(f"{config.dataset}: {len(data.train_y)} training images "
        f"({noise}), {meta}, {len(data.test_y)} {test}; {config.method} with {config.model} "
        f"on {replicas} replica(s)")
    if own is not None:
        log(f"classes: {', '.join(own.class_names)}")
    if selected:
        log(f"meta set: selected from the training set at each epoch that reads it, the "
            f"{config.select_per_class} lowest-loss samples of every class by the "
            f"{method_cls.ranked_by}'s loss against their given labels (a subset chosen by the "
            "method, not a trusted set, not held out"
            + ("; the trusted meta set is not used)" if len(data.meta_y) else ")"))
    if data.test_name == "heldout_noisy":
        log(f"evaluation: {len(data.test_y)} training samples held out (stratified, "
            f"--split_seed={config.split_seed}) with their given labels: its accuracy "
            "(heldout_noisy_accuracy) is against labels that may be wrong, not a test accuracy")
    return config, data, own, method_cls


def _check_selected(config: Config, method_cls) -> None:
    """--meta_source=selected goes with a method that reads a meta set."""
    if method_cls.uses_meta:
        return
    readers = [m for m in methods.METHODS if methods.get(m).uses_meta]
    raise ValueError(f"--meta_source=selected chooses the meta set of a method that reads one "
                     f"({', '.join(readers)}); --method={config.method} reads none")


def check_start(config: Config, data: BiasedData, method: methods.Method) -> None:
    """The check of the meta batches that the first epoch of a stage would otherwise make
    only once the run folder has changed: a `ValueError` before anything is written."""
    if any(method.meta_batches(stage) for stage in method.stages()):
        check_meta_batch(len(data.meta_y), config.meta_batch_size,
                         "select_per_class" if config.meta_source == "selected"
                         else "meta_per_class")


@dataclasses.dataclass
class _Parts:
    """The run's models and the objects that keep its state, built by `_build`."""
    classifier: keras.Model
    optimizer: keras.optimizers.Optimizer
    new_classifier: Callable[[int], keras.Model]  # a fresh classifier from a seed
    method: methods.Method
    tracker: tracking.Tracker
    ckpt: Checkpointer
    selection: meta_set.SelectedMeta | None  # --meta_source=selected


def _build(config: Config, data: BiasedData, method_cls, strategy: tf.distribute.Strategy,
           workdir: str, chief: bool, log, stop_requested, class_names=None) -> _Parts:
    """In the strategy's scope: the classifier, its optimizer, the selected meta set
    (`--meta_source=selected`), the method, the tracker and the checkpointer, restored from
    the latest checkpoint if there is one."""
    replicas = strategy.num_replicas_in_sync
    options = steps.StepOptions(config.batch_size, config.meta_batch_size, config.weight_norm)
    with strategy.scope():
        new_classifier = functools.partial(_new_classifier, config, data, replicas)
        classifier = new_classifier(config.part_seed("init"))
        if config.pretrained:
            log(f"backbone weights from {config.pretrained}; new head randomly initialized")
        optimizer = make_optimizer(config, "classifier")
        optimizer.build(classifier.trainable_variables)
        selection = (meta_set.SelectedMeta(data, config.select_per_class,
                                           batch_size=config.eval_batch_size,
                                           class_names=class_names)
                     if config.meta_source == "selected" else None)
        method = method_cls(methods.Context(
            config=config, data=selection.data() if selection else data,
            classifier=classifier, optimizer=optimizer,
            options=options, new_classifier=new_classifier,
            new_optimizer=functools.partial(make_optimizer, config), num_replicas=replicas))
        with reading_images(data, started=False):
            tracker = tracking.Tracker(data, method, seed=config.seed,
                                       batch_size=config.eval_batch_size, workdir=workdir,
                                       chief=chief, write=write_json,
                                       images=config.tensorboard_images)
        ckpt = Checkpointer(strategy, workdir, config, chief=chief,
                            models={"classifier": classifier, "optimizer": optimizer},
                            extra={**tracker.trackables(), **method.trackables(),
                                   **(selection.trackables() if selection else {})},
                            stop_requested=stop_requested)
        ckpt.restore(log)
        if selection is not None:  # as the checkpoint left it (a run with nothing left too)
            method.ctx.data = selection.data()
    return _Parts(classifier, optimizer, new_classifier, method, tracker, ckpt, selection)


def _run_epoch(epoch: int, start_step: int, epochs: Epochs, evaluation: Evaluation,
               tracker: tracking.Tracker, ckpt: Checkpointer, workdir: str,
               log) -> tuple[dict, dict]:
    """Trains and evaluates one epoch, writes its summaries and history, saves its
    checkpoint and logs its line. Returns its training and test metrics."""
    t0 = time.time()
    ckpt.begin_epoch(epoch, start_step)
    done = epochs.run(epoch, start_step, ckpt)
    test = evaluation.test(ckpt.last)
    epochs.end(done, ckpt)
    ckpt.end_epoch(done.steps, test["accuracy"] if done.stage.reported else None)
    evaluation.summaries(epoch + 1, done.lr, done.train, test)
    with ckpt.writing(f"the epoch's history and summaries in {workdir}"):
        tracker.end_epoch(epoch + 1, done.lr, done.train, test, evaluation.writers,
                          extra=epochs.meta_record)
    path = ckpt.save()
    log(epoch_line(epoch + 1, epochs.total, done.stage.name if len(epochs.stages) > 1 else None,
                   done.lr, done.train, test, time.time() - t0, epochs.meta_record,
                   evaluation.name))
    ckpt.stop_after_epoch(epochs.total, path)
    return done.train, test


def _train(epochs: Epochs, evaluation: Evaluation, tracker: tracking.Tracker,
           ckpt: Checkpointer, workdir: str, log) -> tuple[dict, dict]:
    """The epochs left to train, from where the checkpoint stopped. Returns the last epoch's
    training and test metrics (of a run with nothing left to train: the test metrics now
    and the training metrics of its history)."""
    first_epoch = ckpt.epochs_done
    tracker.start(first_epoch)
    train: dict = {}
    test: dict = {}
    for epoch in range(first_epoch, epochs.total):
        start_step = ckpt.step_in_epoch if epoch == first_epoch else 0
        train, test = _run_epoch(epoch, start_step, epochs, evaluation, tracker, ckpt,
                                 workdir, log)
    evaluation.flush()
    if not test:  # nothing left to train: a finished run asked again, or killed at the end
        test = evaluation.test(ckpt.last)
        train = tracker.final(test)
    return train, test


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
    strategy = _prepare(config, strategy)
    hasher = content.Hasher()
    config, data, own, method_cls = _load(config, data, strategy.num_replicas_in_sync, log,
                                          hasher)
    class_names = (list(own.class_names) if own is not None
                   else default_class_names(config.dataset, data.num_classes))
    chief = _is_chief(strategy)
    if chief:
        prints = content.fingerprint(data, contents=own is not None, hasher=hasher)
        check_same_data(workdir, prints)  # a resumed run: the data it started on
        os.makedirs(workdir, exist_ok=True)
    parts = _build(config, data, method_cls, strategy, workdir, chief, log, stop_requested,
                   class_names)
    check_start(config, parts.method.ctx.data, parts.method)
    if chief:  # the run has started: the run folder may change from here on
        remove_leftovers(workdir)
        if on_start is not None:
            on_start()
        write_json(os.path.join(workdir, files.CLASSES), class_names)
        write_json(os.path.join(workdir, DATA), prints)
    distributed = (strategy.num_replicas_in_sync > 1
                   or config.strategy in ("mirrored", "multi_worker"))
    epochs = Epochs(config, data, parts.method, classifier=parts.classifier,
                    optimizer=parts.optimizer, new_classifier=parts.new_classifier,
                    strategy=strategy, distributed=distributed, log=log,
                    progress_bar=progress_bar and chief, selection=parts.selection)
    evaluation = Evaluation(data, parts.method, batch_size=config.eval_batch_size,
                            workdir=workdir, chief=chief,
                            strategy=strategy if distributed else None)
    start_time, start_cpu = time.time(), time.process_time()
    train, test = _train(epochs, evaluation, parts.tracker, parts.ckpt, workdir, log)
    results = results_lib.collect(
        config, data, epochs.stages, test=test, train=train,
        best_accuracy=parts.ckpt.best_accuracy, seconds=time.time() - start_time,
        tracker=parts.tracker, method=parts.method,
        cpu_seconds=time.process_time() - start_cpu)
    if own is not None:
        results["own_data"] = own.summary()
    results["classes"] = class_names
    results["meta_source"] = config.meta_source
    if parts.selection is not None:
        results["meta_selection"] = parts.selection.summary(parts.method.ranked_by)
    if data.test_name == "heldout_noisy":  # the set evaluated on: training samples held out
        results["heldout_noisy"] = {"size": int(len(data.test_y)),
                                    "fraction": own.test_held_out if own else None,
                                    "labels": "given (possibly wrong)"}
    if chief:
        def take_home() -> dict:  # label_issues.csv and the classifier to take home
            with reading_images(data, True, parts.ckpt.last):
                return finish.finish_run(parts.method, data, workdir,
                                           batch_size=config.eval_batch_size,
                                           dataset=config.dataset, class_names=class_names,
                                           log=log, data_root=data_root(config.dataset,
                                                                        config.data_dir))
        results_lib.write(workdir, results, parts.method, parts.ckpt, finish=take_home)
    return results
