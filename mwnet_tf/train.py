"""Train a classifier with Meta-Weight-Net (or another method) from the command line.

    python -m mwnet_tf.train --dataset=cifar100 --noise=flip --rate=0.4
    python -m mwnet_tf.train --flagfile=quickstart      # a flagfile shipped with the package
    python -m mwnet_tf.train --flagfile=flags/quickstart.cfg
    mwnet-train --flagfile=smoke --workdir=runs/smoke   # the installed console script

Flags left unset take the paper's value for the chosen setting (`config.paper_defaults`);
any flag given overrides it. `--epochs` given without `--lr_decay_epochs` scales the
setting's (or the flagfile's) decay epochs to the same fractions of the run (none under 3
epochs); the log says so. `--flagfile=NAME` (a bare name) reads the flagfile NAME.cfg shipped
in the package (mwnet_tf/flagfiles/). The run folder receives `flags.cfg`, which repeats the run
with `--flagfile`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys

from absl import flags

from mwnet_tf import commandline
from mwnet_tf import config as config_lib
from mwnet_tf.commandline import fail
from mwnet_tf.data import data_dir as data_dir_check
from mwnet_tf.data import human_noise
from mwnet_tf.errors import DataUnavailableError, Interrupted, TrainingError
from mwnet_tf.methods import registry
from mwnet_tf.training import cluster, run_folder, runlock

FLAGS = flags.FLAGS
# Flags that may change when a run is resumed in the same folder.
RESUMABLE = (*config_lib.RESUMABLE, "workdir")


def define_flags() -> None:
    """One flag per Config field (help, choices and bounds from its metadata; a field the
    setting decides has no default of its own), the run folder, --dry_run, and one flag per
    method hyperparameter. Called by `run`, not at import."""
    for f in config_lib.flag_fields():
        m = f.metadata
        _define(f.name, config_lib.field_type(f), None if m["by_setting"] else f.default,
                m["help"], m["choices"], m["lower"], m["upper"])
    flags.DEFINE_string("workdir", None, "Run folder (default: runs/<setting>).")
    flags.DEFINE_bool("dry_run", False, "Print the resolved settings as a flagfile and exit.")
    for name, (method, p) in registry.all_params().items():
        _define(name, p.kind, p.default, f"[{method}] {p.help}", p.choices, p.lower, p.upper)


def _define(name, kind, default, help, choices=None, lower=None, upper=None) -> None:
    if choices is not None:
        flags.DEFINE_enum(name, default, choices, help)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help)
    elif kind is str:
        flags.DEFINE_string(name, default, help)
    elif kind is tuple:
        flags.DEFINE_list(name, default, help)
    else:
        define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
        define(name, default, help, lower_bound=lower, upper_bound=upper)


def config_from_flags(fv: flags.FlagValues, sources: list[dict[str, str]] | None = None,
                      notes: list[str] | None = None) -> config_lib.Config:
    """Paper defaults for the setting, overridden by every flag given explicitly; the rules
    are `config.validate`'s, but for those below that only a flag's presence can tell.

    sources: where each flag was set (`commandline.flag_sources`; None: every flag given on
        the command line), for the learning-rate schedule (`_decay_schedule`).
    notes: receives one line per default derived from the flags (the log prints them).
    """
    values = config_lib.paper_defaults(fv.dataset, fv.noise, fv.imbalance)
    for name in (f.name for f in config_lib.flag_fields()):
        if fv[name].present or name not in values:  # given, or no setting default
            value = fv[name].value
            if value is not None or name == "data_dir":
                values[name] = value
    # Every Config has a meta_per_class, which Clothing1M ignores (its meta set is its clean
    # validation images): only the flag given says the user meant one.
    if values["dataset"] == "clothing1m" and fv["meta_per_class"].present:
        raise ValueError(config_lib.not_for_clothing1m(["--meta_per_class"]))
    # The flag --rate always has a value: without noise (none, human) only a given one counts.
    if values.get("noise") in ("none", "human") and not fv["rate"].present:
        values["rate"] = 0.0
    if values.get("noise") == "human" and values.get("noise_label_set") is None:
        values["noise_label_set"] = human_noise.default_label_set(
            values["dataset"], values.get("noise_labels"))
    # The method's hyperparameters, and another method's when given (Config rejects those).
    values["method_params"] = {
        name: fv[name].value for name, (owner, _) in registry.all_params().items()
        if fv[name].present or (owner == values["method"] and fv[name].value is not None)}
    decay = values.get("lr_decay_epochs") or ()
    try:
        values["lr_decay_epochs"] = tuple(int(e) for e in decay if str(e).strip())
    except ValueError:
        raise ValueError("lr_decay_epochs must be a comma-separated list of integers") from None
    note = _decay_schedule(fv, values, sources)
    if note and notes is not None:
        notes.append(note)
    return config_lib.Config(**values)


def _decay_schedule(fv: flags.FlagValues, values: dict, sources) -> str | None:
    """--epochs given without a schedule of its own: the schedule it would have run with (the
    setting's default, or a flagfile's written for its own --epochs) moves to the same
    fractions of the new run (`config.scaled_schedule`), in `values`. A schedule given with or
    after --epochs is the user's and stays as given. Returns the line saying what was done."""
    if not fv["epochs"].present:
        return None
    if sources is None:
        sources = [{"epochs": str(fv.epochs),
                    **({"lr_decay_epochs": ""} if fv["lr_decay_epochs"].present else {})}]
    named = [i for i, s in enumerate(sources) if "epochs" in s]
    decay_at = [i for i, s in enumerate(sources) if "lr_decay_epochs" in s]
    if not named:
        return None
    if decay_at and (decay_at[-1] >= named[-1] or "epochs" not in sources[decay_at[-1]]):
        return None  # given with the epochs, or after them
    epochs = values["epochs"]
    if decay_at:
        base_epochs, decay = int(sources[decay_at[-1]]["epochs"]), values["lr_decay_epochs"]
        whose = "the flagfile's"
    else:
        paper = config_lib.paper_defaults(values["dataset"], values["noise"], values["imbalance"])
        base_epochs, decay = paper["epochs"], tuple(paper.get("lr_decay_epochs", ()))
        whose = "the setting's"
    if not decay or base_epochs == epochs:
        return None
    values["lr_decay_epochs"] = new = config_lib.scaled_schedule(decay, base_epochs, epochs)
    was = f"{whose} decay after epochs {','.join(map(str, decay))} of {base_epochs}"
    if not new:
        return (f"lr schedule: constant lr (--epochs={epochs} leaves no room for {was}; "
                "--lr_decay_epochs sets one)")
    return (f"lr schedule: decay after epochs {','.join(map(str, new))} ({was}, scaled to "
            f"--epochs={epochs}; --lr_decay_epochs sets another)")


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
    """Removes a run folder this command created, with all that its start wrote (flags.cfg,
    classes.json, empty TensorBoard logs), unless it holds a checkpoint."""
    ckpts = os.path.join(workdir, run_folder.CHECKPOINTS)
    if os.path.isdir(ckpts) and os.listdir(ckpts):
        return
    shutil.rmtree(workdir, ignore_errors=True)


class _RunFolder:
    """The run folder of this command: created and locked by the chief with its flags.cfg
    prepared (`claim`); `abandon` undoes a start that failed before training."""

    def __init__(self, workdir: str, chief: bool):
        self.workdir, self.chief = workdir, chief
        self.new = not os.path.exists(workdir)
        self.lock = None
        self.flagfile = ""

    def claim(self, config: config_lib.Config) -> None:
        if not self.chief:  # the other workers of a cluster write nothing into the run folder
            return
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            fail(f"--workdir={self.workdir} is a file, not a folder", 2)
        try:
            os.makedirs(self.workdir, exist_ok=True)
            self.lock = runlock.RunLock(self.workdir).acquire()
            atexit.register(self.lock.release)
            self.flagfile = prepare_workdir(config, self.workdir)
        except OSError as e:
            self.abandon()
            fail(f"cannot write the run folder {self.workdir} ({e.strerror or e})", 2)
        except ValueError as e:  # LockError included
            self.abandon()
            fail(str(e), 2)

    def abandon(self) -> None:
        """The lock released, a folder this command created removed if it holds no
        checkpoint (a folder that existed before is left to `on_start`: nothing is written
        into it before the run has started)."""
        self.release()
        if self.chief and self.new and os.path.isdir(self.workdir):
            _remove_fresh_workdir(self.workdir)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def load_training():
    """TensorFlow and the training loop, imported only once the flags are valid, quietly.
    (tests/cli_runner.py imports them once for all its command lines.)"""
    with commandline.quiet_stderr():
        import tensorflow as tf

        # Probes the GPU platform (CUDA's start-up lines) now, quietly. A physical listing
        # leaves the runtime uninitialized, so the multi-worker strategy can still configure
        # its collective ops.
        tf.config.list_physical_devices("GPU")
        from mwnet_tf.training import loop
    return tf, loop


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    notes: list[str] = []
    try:
        config = config_from_flags(FLAGS, commandline.flag_sources(sys.argv), notes)
    except ValueError as e:
        fail(str(e), 2)
    workdir = FLAGS.workdir or config_lib.default_workdir(config)
    if FLAGS.dry_run:
        for note in notes:  # stdout is the flagfile
            print(note, file=sys.stderr)
        print(config_to_flagfile(config, workdir), end="")
        return
    _check_paths(config, workdir)
    task = None
    if config.strategy == "multi_worker":
        try:
            task = cluster.current_task()
        except ValueError as e:
            fail(str(e), 2)
    folder = _RunFolder(workdir, chief=task is None or task.is_chief)
    folder.claim(config)
    tf, loop = load_training()
    with commandline.quiet_stderr():
        # The strategy comes before anything else touches TensorFlow's devices: a
        # MultiWorkerMirroredStrategy can configure its collective ops only then.
        strategy = loop.make_strategy(config.strategy)
    print(f"run folder: {workdir}", flush=True)
    for note in notes:
        print(note, flush=True)
    requested = _stop_on_signals()
    try:
        results = loop.train_and_evaluate(
            config, workdir, strategy=strategy, log=lambda s: print(s, flush=True),
            stop_requested=lambda: requested[0] if requested else None,
            on_start=(lambda: write_flagfile(workdir, folder.flagfile)) if folder.chief else None,
            progress_bar=sys.stdout.isatty())
    except DataUnavailableError as e:
        folder.abandon()  # the data is read before anything else: only flags.cfg is there
        fail(str(e), 1)
    except Interrupted as e:
        folder.release()
        print(f"stopped: {e}; resume with: python -m mwnet_tf.train "
              f"--flagfile={os.path.join(workdir, 'flags.cfg')}", file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except TrainingError as e:
        fail(str(e), 1)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
        if task is None:
            raise
        first = str(e).strip().splitlines()[0][:200]
        fail(f"worker {task.task_id} lost contact with the cluster ({first}); start every "
             "worker again with the same command to resume from the last checkpoint", 1)
    except ValueError as e:  # a bad value found once the data and models exist
        folder.abandon()
        fail(str(e), 2)
    folder.release()
    _print_results(results, workdir, task)


def _check_paths(config: config_lib.Config, workdir: str) -> None:
    """--data_dir, and a run folder inside it, before TensorFlow loads and before the run
    folder is made: a wrong path answers at once."""
    missing = data_dir_check.problem(config.dataset, config.data_dir)
    if missing:
        fail(missing, 1)
    inside = data_dir_check.workdir_problem(config.dataset, config.data_dir, workdir)
    if inside:
        fail(inside, 2)


def _stop_on_signals() -> list[int]:
    """SIGTERM and SIGINT ask the run to stop after the current call (with a checkpoint);
    returns the list the signals received are appended to."""
    requested: list[int] = []

    def on_signal(signum, frame) -> None:
        if not requested:
            print(f"signal {signum}: stopping after the current call, saving a checkpoint",
                  flush=True)
        requested.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return requested


def _print_results(results: dict, workdir: str, task) -> None:
    where = (f"results in {workdir}/results.json" if task is None or task.is_chief else
             f"worker {task.task_id}: the chief writes the run folder")
    print(f"test accuracy {results['test_accuracy']:.2f}% (best "
          f"{results['best_test_accuracy']:.2f}%); {where}", flush=True)
    if "weight_curve" in results:
        curve = "  ".join(f"{k}:{v:.3f}" for k, v in results["weight_curve"].items())
        print(f"learned weight function (loss:weight) {curve}", flush=True)
    if results.get("weight_function_decreasing") is False:
        wf = results["weight_function"]
        print(f"warning: the learned weight function {results['weight_function_trend']} over "
              f"the training losses ({wf['weights'][0]:.3f} at loss 0, "
              f"{wf['weights'][-1]:.3f} at loss {wf['losses'][-1]:.3g}) instead of falling: "
              f"its weights do not single out wrong labels (label_issues.csv is in loss order)",
              flush=True)


def run() -> None:
    """The entry point of `python -m mwnet_tf.train` and of the `mwnet-train` script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
