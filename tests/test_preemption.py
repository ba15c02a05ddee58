"""Preemption-safe runs: killed anywhere and rerun, a run ends bitwise where an uninterrupted one
ends; SIGTERM/SIGINT save and stop; one process per run folder."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mwnet_tf import files
from mwnet_tf.training import runlock

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 3 epochs of 11 steps, calls of 2 steps, a checkpoint every 3 steps and after each epoch.
ARGS = ["--flagfile=flags/smoke.cfg", "--model=tiny", "--epochs=3", "--lr_decay_epochs=2",
        "--deterministic", "--progress_seconds=0", "--notensorboard_images", "--steps_per_call=2",
        "--checkpoint_every_steps=3"]
VOLATILE = ("wall_seconds_this_session", "cpu_seconds_this_session",
            "figure_seconds_this_session")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "MWNET_TF_FAULT"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _run(cli, workdir, *extra, fault=None):
    """The command line, run to its end (`cli`: one TensorFlow import for the module's runs,
    a forked child per command line; a fault's SIGKILL ends that child alone)."""
    return cli.run(*ARGS, *extra, f"--workdir={workdir}",
                   **({"MWNET_TF_FAULT": fault} if fault else {}))


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        r = json.load(f)
    for k in VOLATILE:
        r.pop(k)
    r["config"].pop("workdir", None)
    return r


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cli):
    work = tmp_path_factory.mktemp("full") / "run"
    proc = _run(cli, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _results(work)


def test_killed_at_many_moments_and_rerun_it_ends_bitwise_equal(tmp_path, uninterrupted, cli):
    work = tmp_path / "run"
    # SIGKILL mid-epoch, during evaluation, just before and just after a checkpoint is
    # written, while the weight function is exported, before results.json: each time the
    # same command is run again in the same folder.
    faults = ["after_call:3", "eval:2", "checkpoint_before:2", "checkpoint_after:2",
              "export:1", "results:1"]
    for fault in faults:
        proc = _run(cli, work, fault=fault)
        assert proc.returncode == -signal.SIGKILL, (fault, proc.stderr[-2000:])
        assert not (work / "results.json").exists()
    proc = _run(cli, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    assert _results(work) == uninterrupted
    assert not (work / ".lock").exists()
    assert _leftovers(work) == []  # the killed writes' temporary files are gone


def _leftovers(work):
    return sorted(str(p.relative_to(work)) for p in work.rglob("*")
                  if ".tmp-" in p.name or ".old-" in p.name or p.name.startswith(".weight_fn-"))


def _one_error_line(proc, *texts):
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for text in texts:
        assert text in errors[0], errors[0]
    return errors[0]


def test_a_full_disk_or_unwritable_folder_while_writing_loses_nothing(tmp_path, uninterrupted,
                                                                      cli):
    """ENOSPC / EACCES injected inside the writers (`mwnet_tf.faults`): a checkpoint, the
    weight function, results.json. Each ends in one line naming what is kept; what was
    written before stays readable; the same command then resumes and ends as if nothing
    happened."""
    import tensorflow as tf

    from mwnet_tf.models import weight_function
    work = tmp_path / "run"
    ckpts = work / "checkpoints"
    # the second checkpoint (step 6, inside epoch 1) cannot be written
    proc = _run(cli, work, fault="checkpoint_before:2:enospc")
    line = _one_error_line(proc, "could not write checkpoint 6", "No space left on device",
                           "ckpt-3 is kept")
    latest = tf.train.latest_checkpoint(str(ckpts))
    assert latest.endswith("ckpt-3") and latest in line
    assert tf.train.load_checkpoint(latest).get_variable_to_shape_map()  # readable
    assert (ckpts / "progress-3.json").exists() and not (ckpts / "progress-6.json").exists()
    flags_cfg = (work / "flags.cfg").read_bytes()
    # resumed: the weight function cannot be written at the end (an unwritable folder)
    proc = _run(cli, work, fault="export:1:eacces")
    _one_error_line(proc, "could not write the exports", "Permission denied", "is kept")
    assert not (work / "weight_fn").exists() and not (work / "results.json").exists()
    assert _leftovers(work) == []
    # resumed again: results.json cannot be written; the weight function written before it is
    proc = _run(cli, work, fault="results:1:enospc")
    _one_error_line(proc, "could not write", "results.json", "No space left on device")
    assert not (work / "results.json").exists() and _leftovers(work) == []
    weight_function.read_weight_net(str(work / "weight_fn"))  # complete and readable
    assert (work / "flags.cfg").read_bytes() == flags_cfg
    proc = _run(cli, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _results(work) == uninterrupted and not (work / ".lock").exists()


def _start(workdir, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "mwnet_tf.train", *ARGS, *extra,
                             f"--workdir={workdir}"], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def _wait_for(lines, proc, text, timeout=240):
    deadline = time.time() + timeout
    while not any(text in line for line in list(lines)):
        assert proc.poll() is None and time.time() < deadline, "".join(lines)
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_stops_with_128_plus_its_number(tmp_path, signum,
                                                                        uninterrupted, cli):
    work = tmp_path / "run"
    proc, lines = _start(work, "--epochs=60", "--lr_decay_epochs=2")
    _wait_for(lines, proc, "epoch 1/60")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped: stopped by signal {int(signum)} ") and (
        f"resume with: python -m mwnet_tf.train --flagfile={work}/flags.cfg") in last, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    checkpoint = last.split("checkpoint ", 1)[1].split(";", 1)[0]
    assert os.path.exists(checkpoint + ".index")
    assert not (work / ".lock").exists()
    if signum == signal.SIGTERM:  # resumed with 3 epochs, it ends as the uninterrupted run
        again = _run(cli, work)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed from" in again.stdout
        assert _results(work) == uninterrupted


def test_a_live_run_folder_is_refused_and_a_dead_owners_lock_taken_over(tmp_path, cli):
    work = tmp_path / "run"
    proc, lines = _start(work, "--epochs=200", "--lr_decay_epochs=2")
    _wait_for(lines, proc, "epoch 1/200  lr")  # the end of epoch 1: checkpoints written
    flags_before = (work / "flags.cfg").read_bytes()
    second = _run(cli, work, "--epochs=200", "--lr_decay_epochs=2")
    errors = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and len(errors) == 1, second.stderr
    assert f"is in use by process {proc.pid}" in errors[0]
    assert (work / "flags.cfg").read_bytes() == flags_before  # nothing changed
    proc.kill()  # a crash: the lock stays behind
    proc.wait()
    assert (work / ".lock").exists()
    third = _run(cli, work, "--epochs=2", "--lr_decay_epochs=1")  # takes the lock over, resumes
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resumed from" in third.stdout
    assert not (work / ".lock").exists()


def test_lock_of_another_host_is_refused_with_the_way_out(tmp_path):
    (tmp_path / files.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(runlock.LockError, match="on elsewhere; if that run is gone, remove"):
        runlock.RunLock(str(tmp_path)).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / files.LOCK).write_text(json.dumps({"pid": dead.pid,
                                                     "host": socket.gethostname()}))
    lock = runlock.RunLock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / files.LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / files.LOCK).exists()
