"""Train a classifier with Meta-Weight-Net (or plain cross-entropy) from the command line.

    python -m mwnet_tf.train --dataset=cifar100 --noise=flip --rate=0.4
    python -m mwnet_tf.train --flagfile=flags/quickstart.cfg

Flags left unset take the paper's value for the chosen setting (`config.paper_defaults`);
any flag given overrides it. The run folder receives `flags.cfg`, which repeats the run with
`--flagfile`. This is the only module that reads absl flags.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2 unless TF_CPP_MIN_LOG_LEVEL < 2: TensorFlow's C++ start-up
    lines (CUDA probing at import, device discovery) would otherwise bury our one-line errors.
    Python exceptions still reach the caller."""
    if int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) < 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_stderr():  # imports TensorFlow; its devices start only with the strategy (main)
    import tensorflow
    # Probes the GPU platform (CUDA's start-up lines) now, quietly. TensorFlow's own absl
    # callback (distribute/combinations.py) lists physical GPUs when `app.run` starts; a
    # physical listing leaves the runtime uninitialized, so the multi-worker strategy can
    # still configure its collective ops in `main`.
    tensorflow.config.list_physical_devices("GPU")

from absl import app, flags, logging  # noqa: E402

from mwnet_tf import config as config_lib  # noqa: E402
from mwnet_tf import methods  # noqa: E402
from mwnet_tf.data import DATASETS, LABEL_NOISES, human_noise  # noqa: E402
from mwnet_tf.models import MODELS  # noqa: E402
from mwnet_tf.steps import WEIGHT_NORMS  # noqa: E402
from mwnet_tf.training import cluster, run_folder, runlock  # noqa: E402

FLAGS = flags.FLAGS
# Flags that may change when a run is resumed in the same folder.
RESUMABLE = ("workdir", "epochs", "lr_decay_epochs", "keep_checkpoints", "progress_seconds",
             "tensorboard_images",
             "data_dir", "noise_labels", "pretrained",
             "strategy", "jit_compile", "steps_per_call", "checkpoint_every_steps",
             "checkpoint_every_minutes")


def define_flags() -> None:
    """Defines the flags (called by `run`, not at import)."""
    d = config_lib.Config()
    flags.DEFINE_enum("dataset", "digits", DATASETS, "Dataset.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir, or a folder holding "
                        "CIFAR's Python folder (cifar-10-batches-py, cifar-100-python) or "
                        "Fashion-MNIST's IDX files; for clothing1m the data set's folder "
                        "(annotation files and images/).")
    flags.DEFINE_integer("image_size", None, "clothing1m: side of the square crops (default "
                         "224, after a resize to 256x256; smaller sizes scale both).",
                         lower_bound=32)
    flags.DEFINE_string("pretrained", None, "--model=resnet50: a local HDF5 file of ImageNet "
                        "weights for the backbone (Keras' resnet50_weights_tf_dim_ordering_tf_"
                        "kernels_notop.h5, or a Keras 3 .weights.h5 of the backbone); the head "
                        "stays randomly initialized.")
    flags.DEFINE_enum("noise", "uniform", LABEL_NOISES, "Label noise: a transition matrix "
                      "type, instance (instance-dependent, Xia et al. 2020, mean flip rate "
                      "--rate), or human (the labels of --noise_labels: CIFAR-10N/100N).")
    flags.DEFINE_float("rate", 0.4, "Noise rate p of the transition matrix (not with "
                       "--noise=human).", lower_bound=0, upper_bound=1)
    flags.DEFINE_string("noise_labels", None, "--noise=human: CIFAR-10_human.pt / "
                        "CIFAR-100_human.pt (github.com/UCSC-REAL/cifar-10-100n), or a .npy / "
                        ".csv of one label per training image in the original order.")
    flags.DEFINE_enum("noise_label_set", None, human_noise.ALL_LABEL_SETS,
                      "--noise=human with a CIFAR-N .pt: the label set (CIFAR-10N: aggregate, "
                      "random1-3, worst (default); CIFAR-100N: noisy_fine (default)).")
    flags.DEFINE_float("imbalance", 1.0, "Long-tail imbalance factor (1 = balanced).",
                       lower_bound=1)
    flags.DEFINE_integer("meta_per_class", None, "Clean meta images per class.", lower_bound=1)
    flags.DEFINE_enum("method", "mwnet", config_lib.METHODS, "Training method.")
    flags.DEFINE_enum("model", None, MODELS, "Classifier.")
    flags.DEFINE_integer("epochs", None, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", None, "Global training batch size.", lower_bound=1)
    flags.DEFINE_integer("meta_batch_size", None, "Global meta batch size.", lower_bound=1)
    flags.DEFINE_integer("eval_batch_size", d.eval_batch_size, "Test batch size.",
                         lower_bound=1)
    flags.DEFINE_float("lr", None, "Classifier learning rate (also the virtual step's).",
                       lower_bound=0)
    flags.DEFINE_list("lr_decay_epochs", None, "Epochs after which lr is multiplied by "
                      "--lr_decay_factor (comma-separated; empty for none).")
    flags.DEFINE_float("lr_decay_factor", d.lr_decay_factor, "Step-decay factor.")
    flags.DEFINE_float("weight_decay", None, "Coupled L2 on the classifier.", lower_bound=0)
    flags.DEFINE_float("momentum", None, "Classifier SGD momentum.", lower_bound=0)
    flags.DEFINE_bool("nesterov", None, "Nesterov momentum for the classifier.")
    flags.DEFINE_float("meta_lr", None, "Weight-net learning rate (fixed).", lower_bound=0)
    flags.DEFINE_enum("meta_optimizer", None, config_lib.META_OPTIMIZERS,
                      "Weight-net optimizer.")
    flags.DEFINE_float("meta_momentum", None, "Weight-net SGD momentum.", lower_bound=0)
    flags.DEFINE_bool("meta_nesterov", None, "Nesterov momentum for the weight net (SGD).")
    flags.DEFINE_float("meta_weight_decay", None, "Coupled L2 on the weight net.",
                       lower_bound=0)
    flags.DEFINE_enum("weight_norm", None, WEIGHT_NORMS,
                      "none: sum(v*l)/n; batch: sum(v/sum(v)*l).")
    flags.DEFINE_integer("seed", d.seed, "Seed of noise, meta split, shuffling and init.")
    flags.DEFINE_bool("deterministic", d.deterministic, "Deterministic ops (same seed, same run).")
    flags.DEFINE_string("workdir", None, "Run folder (default: runs/<setting>).")
    flags.DEFINE_enum("strategy", d.strategy, config_lib.STRATEGIES,
                      "auto: MirroredStrategy when several GPUs, else one device.")
    flags.DEFINE_bool("jit_compile", d.jit_compile, "XLA-compile the training step.")
    flags.DEFINE_enum("mixed_precision", d.mixed_precision, config_lib.MIXED_PRECISION,
                      "Classifier compute dtype: bfloat16 (CPU, no loss scaling) or float16 "
                      "(GPU, dynamic loss scaling); losses and the weight net stay float32.")
    flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Checkpoints kept.",
                         lower_bound=1)
    flags.DEFINE_float("progress_seconds", d.progress_seconds,
                       "Seconds between progress lines within an epoch.", lower_bound=0)
    flags.DEFINE_bool("tensorboard_images", d.tensorboard_images,
                      "Render each epoch's figures (weight function, weight histograms, "
                      "confusion matrix) as TensorBoard images with matplotlib; "
                      "--notensorboard_images keeps the scalars and histograms only.")
    flags.DEFINE_integer("steps_per_call", d.steps_per_call,
                         "Training steps per tf.function call (metrics stay on the device "
                         "between calls; the same steps whatever the value).", lower_bound=1)
    flags.DEFINE_integer("checkpoint_every_steps", d.checkpoint_every_steps,
                         "Also checkpoint inside an epoch every N steps (0: off).",
                         lower_bound=0)
    flags.DEFINE_float("checkpoint_every_minutes", d.checkpoint_every_minutes,
                       "Also checkpoint inside an epoch every M minutes (0: off).",
                       lower_bound=0)
    flags.DEFINE_bool("dry_run", False, "Print the resolved settings as a flagfile and exit.")
    for name, (method, p) in methods.all_params().items():
        if p.choices is not None:
            flags.DEFINE_enum(name, p.default, p.choices, f"[{method}] {p.help}")
            continue
        if p.kind is str:
            flags.DEFINE_string(name, p.default, f"[{method}] {p.help}")
            continue
        define = flags.DEFINE_integer if p.kind is int else flags.DEFINE_float
        define(name, p.default, f"[{method}] {p.help}", lower_bound=p.lower,
               upper_bound=p.upper)


def config_from_flags(fv: flags.FlagValues) -> config_lib.Config:
    """Paper defaults for the setting, overridden by every flag given explicitly."""
    values = config_lib.paper_defaults(fv.dataset, fv.noise, fv.imbalance)
    for name in config_lib.Config.__dataclass_fields__:
        if name not in fv:
            continue
        if fv[name].present or name not in values:  # given, or no setting default
            value = fv[name].value
            if value is not None or name == "data_dir":
                values[name] = value
    for name, (owner, _) in methods.all_params().items():
        if fv[name].present and owner != values["method"]:
            raise ValueError(f"--{name} is a hyperparameter of --method={owner}, not of "
                             f"--method={values['method']}")
    if values["dataset"] == "clothing1m":
        given = [f"--{n}" for n in ("noise", "rate", "imbalance", "meta_per_class",
                                    "noise_labels", "noise_label_set") if fv[n].present]
        if given:
            verb = "does" if len(given) == 1 else "do"
            raise ValueError(f"{', '.join(given)} {verb} not apply to --dataset=clothing1m: its "
                             "noise is its own labels, its meta set the clean validation images")
    values["method_params"] = {p.name: fv[p.name].value
                               for p in methods.get(values["method"]).params
                               if fv[p.name].value is not None}
    if values.get("noise") == "none":
        values["rate"] = 0.0
    if values.get("noise") == "human":
        if fv["rate"].present:
            raise ValueError("--rate does not apply to --noise=human: its noise is the label "
                             "file's (the realized rate is reported)")
        values["rate"] = 0.0
        if values.get("noise_label_set") is None:
            values["noise_label_set"] = human_noise.default_label_set(
                values["dataset"], values.get("noise_labels"))
    decay = values.get("lr_decay_epochs") or ()
    try:
        values["lr_decay_epochs"] = tuple(int(e) for e in decay if str(e).strip())
    except ValueError:
        raise ValueError("lr_decay_epochs must be a comma-separated list of integers") from None
    return config_lib.Config(**values)


def config_to_flagfile(config: config_lib.Config, workdir: str) -> str:
    lines = []
    for name, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, list):
            lines.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{name}={value}")
    lines.append(f"--workdir={workdir}")
    return "\n".join(lines) + "\n"


def _flag_values(text: str) -> dict[str, str]:
    """`--name=value` lines as a dict (`--noname` as "False")."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("--"):
            key, _, value = line[2:].partition("=")
            fields = config_lib.Config.__dataclass_fields__
            if not value and key.startswith("no") and key[2:] in fields:
                key, value = key[2:], "False"
            out[key] = value or "True"
    return out


def prepare_workdir(config: config_lib.Config, workdir: str) -> str:
    """Creates the run folder; refuses a folder holding a different run. Returns the text of
    its flags.cfg, written by `write_flagfile` once the run has started."""
    path = os.path.join(workdir, "flags.cfg")
    new = config_to_flagfile(config, workdir)
    if os.path.exists(path) and os.path.isdir(os.path.join(workdir, "checkpoints")):
        with open(path) as f:
            old = _flag_values(f.read())
        changed = sorted(k for k, v in _flag_values(new).items()
                         if k not in RESUMABLE and old.get(k) != v)
        if changed:
            raise ValueError(f"{workdir} holds a run with other settings ({', '.join(changed)}); "
                             "pass another --workdir or repeat it with --flagfile=" + path)
    os.makedirs(workdir, exist_ok=True)
    return new


def write_flagfile(workdir: str, text: str) -> None:
    """flags.cfg, atomically (an equal file is left untouched)."""
    run_folder.write_text(os.path.join(workdir, "flags.cfg"), text, keep_equal=True)


def _remove_fresh_workdir(workdir: str) -> None:
    """Removes a run folder this run created, if it holds nothing but its flags.cfg."""
    names = os.listdir(workdir)
    if set(names) <= {"flags.cfg"}:
        for name in names:
            os.remove(os.path.join(workdir, name))
        os.rmdir(workdir)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str]) -> None:
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # library warnings (tfds) off unless asked for
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    try:
        config = config_from_flags(FLAGS)
    except ValueError as e:
        _fail(str(e), 2)
    workdir = FLAGS.workdir or config_lib.default_workdir(config)
    if FLAGS.dry_run:
        print(config_to_flagfile(config, workdir), end="")
        return
    task = None
    if config.strategy == "multi_worker":
        try:
            task = cluster.current_task()
        except ValueError as e:
            _fail(str(e), 2)
    chief = task is None or task.is_chief
    new_folder = not os.path.exists(workdir)
    lock = None

    def abandon() -> None:
        """After a failed start: the lock released, a folder this command created removed
        if it holds nothing but its flags.cfg."""
        if lock is not None:
            lock.release()
        if chief and new_folder and os.path.isdir(workdir):
            _remove_fresh_workdir(workdir)

    if chief:  # the other workers of a cluster write nothing into the run folder
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            _fail(f"--workdir={workdir} is a file, not a folder", 2)
        try:
            os.makedirs(workdir, exist_ok=True)
            lock = runlock.RunLock(workdir).acquire()
            atexit.register(lock.release)
            flagfile = prepare_workdir(config, workdir)
        except OSError as e:
            abandon()
            _fail(f"cannot write the run folder {workdir} ({e.strerror or e})", 2)
        except ValueError as e:  # LockError included
            abandon()
            _fail(str(e), 2)

    with _quiet_stderr():  # heavy imports only once the flags are valid
        from mwnet_tf.data import DataUnavailableError
        from mwnet_tf.training import loop
        # The strategy comes before anything else touches TensorFlow's devices: a
        # MultiWorkerMirroredStrategy can configure its collective ops only then.
        strategy = loop.make_strategy(config.strategy)

    print(f"run folder: {workdir}", flush=True)
    requested: list[int] = []

    def on_signal(signum, frame) -> None:
        if not requested:
            print(f"signal {signum}: stopping after the current call, saving a checkpoint",
                  flush=True)
        requested.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        results = loop.train_and_evaluate(
            config, workdir, strategy=strategy, log=lambda s: print(s, flush=True),
            stop_requested=lambda: requested[0] if requested else None,
            on_start=(lambda: write_flagfile(workdir, flagfile)) if chief else None,
            progress_bar=sys.stdout.isatty())
    except DataUnavailableError as e:
        abandon()  # the data is read before anything else: only flags.cfg is there
        _fail(str(e), 1)
    except loop.Interrupted as e:
        if lock is not None:
            lock.release()
        print(f"stopped: {e}; resume with: python -m mwnet_tf.train "
              f"--flagfile={os.path.join(workdir, 'flags.cfg')}", file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except loop.TrainingError as e:
        _fail(str(e), 1)
    except (tensorflow.errors.UnavailableError, tensorflow.errors.DeadlineExceededError) as e:
        if task is None:
            raise
        first = str(e).strip().splitlines()[0][:200]
        _fail(f"worker {task.task_id} lost contact with the cluster ({first}); start every "
              "worker again with the same command to resume from the last checkpoint", 1)
    except ValueError as e:  # a bad value found once the data and models exist
        abandon()
        _fail(str(e), 2)
    if lock is not None:
        lock.release()
    where = (f"results in {workdir}/results.json" if chief else
             f"worker {task.task_id}: the chief writes the run folder")
    print(f"test accuracy {results['test_accuracy']:.2f}% (best "
          f"{results['best_test_accuracy']:.2f}%); {where}", flush=True)
    if "weight_curve" in results:
        curve = "  ".join(f"{k}:{v:.3f}" for k, v in results["weight_curve"].items())
        print(f"learned weight function (loss:weight) {curve}", flush=True)


def _parse(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as e:
        message = str(e).splitlines()[0]
        _fail(message.removeprefix("ERROR:: ").replace("Unable to open flagfile",
                                                         "cannot read the flagfile"), 2)


def run() -> None:
    define_flags()
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
