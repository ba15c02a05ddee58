"""Train a classifier with Meta-Weight-Net (or another method) from the command line.

    python -m mwnet_tf.train --dataset=cifar100 --noise=flip --rate=0.4
    python -m mwnet_tf.train --flagfile=quickstart      # a flagfile shipped with the package
    python -m mwnet_tf.train --flagfile=flags/quickstart.cfg
    mwnet-train --flagfile=smoke --workdir=runs/smoke   # the installed console script

Flags left unset take the paper's value for the chosen setting (`protocols.paper_defaults`);
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

from mwnet_tf import config as config_lib
from mwnet_tf import files, protocols
from mwnet_tf.cli import commandline
from mwnet_tf.cli.commandline import fail
from mwnet_tf.cli.train_flags import (
    config_from_flags,
    config_to_flagfile,
    define_flags,
)
from mwnet_tf.data import data_dir as data_dir_check
from mwnet_tf.errors import DataUnavailableError, Interrupted, TrainingError
from mwnet_tf.training import cluster, runlock

FLAGS = flags.FLAGS
# Flags that may change when a run is resumed in the same folder.
RESUMABLE = (*config_lib.RESUMABLE, "workdir")


def prepare_workdir(config: config_lib.Config, workdir: str) -> str:
    """Creates the run folder; refuses a folder holding a different run. Returns the text of
    its flags.cfg, written by `write_flagfile` once the run has started."""
    path = os.path.join(workdir, files.FLAGS)
    new = config_to_flagfile(config, workdir)
    if os.path.exists(path) and os.path.isdir(os.path.join(workdir, files.CHECKPOINTS)):
        with open(path) as f:
            old = protocols.given_flags(f.read())
        # a field added after the run started: its flags.cfg ran with the field's old value
        added = {k: str(v) for k, v in config_lib.ADDED_FIELDS.items() if v is not None}
        changed = sorted(k for k, v in protocols.given_flags(new).items()
                         if k not in RESUMABLE and old.get(k, added.get(k)) != v)
        if changed:
            raise ValueError(f"{workdir} holds a run with other settings ({', '.join(changed)}); "
                             "pass another --workdir or repeat it with --flagfile=" + path)
    os.makedirs(workdir, exist_ok=True)
    return new


def write_flagfile(workdir: str, text: str) -> None:
    """flags.cfg, atomically (an equal file is left untouched)."""
    files.write_text(os.path.join(workdir, files.FLAGS), text, keep_equal=True)


def _remove_fresh_workdir(workdir: str) -> None:
    """Removes a run folder this command created, with all that its start wrote (flags.cfg,
    classes.json, empty TensorBoard logs), unless it holds a checkpoint."""
    ckpts = os.path.join(workdir, files.CHECKPOINTS)
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
    """TensorFlow and the training loop, imported only once the flags are valid, quietly."""
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
    workdir = FLAGS.workdir or protocols.default_workdir(config)
    if FLAGS.dry_run:
        for note in notes:  # stdout is the flagfile
            print(note, file=sys.stderr)
        print(config_to_flagfile(config, workdir), end="")
        return
    _check_paths(config, workdir)
    task, resolver = _cluster_task(config)
    folder = _RunFolder(workdir, chief=task is None or task.is_chief)
    folder.claim(config)
    tf, loop = load_training()
    with commandline.quiet_stderr():
        # The strategy comes before anything else touches TensorFlow's devices: a
        # MultiWorkerMirroredStrategy can configure its collective ops only then.
        strategy = loop.make_strategy(config.strategy, resolver)
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
              f"--flagfile={os.path.join(workdir, files.FLAGS)}", file=sys.stderr, flush=True)
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


def _cluster_task(config: config_lib.Config):
    """(this process's `cluster.Task`, the Slurm cluster resolver or None); (None, None) for a
    run of one process. A bad layout is a one-line error, exit 2, before anything is written."""
    if config.strategy != "multi_worker":
        return None, None
    try:
        if config.cluster == "slurm":
            with commandline.quiet_stderr():
                resolver, task = cluster.slurm_task(config.slurm_port_base)
            return task, resolver
        return cluster.current_task(), None
    except ValueError as e:
        fail(str(e), 2)


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
    if "test_accuracy" in results:
        print(f"test accuracy {results['test_accuracy']:.2f}% (best "
              f"{results['best_test_accuracy']:.2f}%); {where}", flush=True)
    else:  # no test split: a part of the training set held out with its given labels
        print(f"held-out accuracy against the given (possibly wrong) labels "
              f"{results['heldout_noisy_accuracy']:.2f}% (best "
              f"{results['best_heldout_noisy_accuracy']:.2f}%), not a test accuracy; {where}",
              flush=True)
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
