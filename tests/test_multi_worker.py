"""Multi-worker training on loopback: TF_CONFIG checks, two worker processes against one
process, and a run that loses a worker and resumes from the chief's checkpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mwnet_tf import launch
from mwnet_tf.training import cluster

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Three epochs of MW-Net on digits with the tiny model; deterministic, so runs compare exactly.
ARGS = ["--flagfile=flags/smoke.cfg", "--model=tiny", "--epochs=3", "--lr_decay_epochs=2",
        "--deterministic", "--progress_seconds=0", "--notensorboard_images"]
# The stop-and-resume mechanics with plain cross-entropy: the same checkpoints, collectives
# and signals at a third less start-up (no meta step to trace); MW-Net's own two-worker
# state (weight net, its optimizer) is checked against one process in the test before it.
CE_ARGS = [*ARGS, "--method=ce"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               **extra)
    return env


def _train(args, env, cpu=None):
    cpus = sorted(os.sched_getaffinity(0))
    pin = (lambda: os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})) if cpu is not None else None
    return subprocess.Popen([sys.executable, "-m", "mwnet_tf.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=pin)


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def _assert_same_run(a, b):
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-9)
    assert a["train"].keys() == b["train"].keys()
    for k in a["train"]:  # loss, accuracy (and MW-Net's meta_loss, weight_clean, ...)
        assert a["train"][k] == pytest.approx(b["train"][k], rel=1e-5), k
    assert a.get("weight_curve", {}).keys() == b.get("weight_curve", {}).keys()
    for loss, weight in a.get("weight_curve", {}).items():
        assert weight == pytest.approx(b["weight_curve"][loss], abs=1e-5), loss


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{cluster", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster" object'),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task type 'ps'"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', '"host:port"'),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "address twice"),
    ('{"cluster": {"worker": ["a:1"]}}', 'needs a "task" object'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "'chief' is not in its cluster"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "index 2 is out of range"),
])
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        cluster.parse_tf_config(text)


def test_chief_is_the_chief_task_or_worker_0():
    two = {"worker": ["a:1", "b:2"]}
    tasks = [cluster.parse_tf_config(json.dumps({"cluster": two, "task": {
        "type": "worker", "index": i}})) for i in (0, 1)]
    assert [t.is_chief for t in tasks] == [True, False]
    assert tasks[1].num_workers == 2
    with_chief = {"chief": ["c:3"], **two}
    chief, worker0 = (cluster.parse_tf_config(json.dumps({"cluster": with_chief, "task": t}))
                      for t in ({"type": "chief", "index": 0}, {"type": "worker", "index": 0}))
    assert chief.is_chief and not worker0.is_chief and chief.num_workers == 3


def test_loopback_configs_name_every_worker_once():
    configs = [json.loads(c) for c in launch.tf_configs(launch.free_ports(3))]
    assert [c["task"]["index"] for c in configs] == [0, 1, 2]
    assert len(set(configs[0]["cluster"]["worker"])) == 3
    assert all(cluster.parse_tf_config(json.dumps(c)).num_workers == 3 for c in configs)


def test_launcher_blames_the_killed_worker_not_its_peers_or_those_it_stopped():
    assert launch._first_failure([0, 0], set()) == 0
    assert launch._first_failure([1, -9], set()) == -9  # worker 0's error followed worker 1
    assert launch._first_failure([-9, 2], {0}) == 2  # the launcher stopped worker 0
    assert launch._first_failure([2, 1], set()) == 2


# A bad TF_CONFIG through the real command line (one line, exit 2, nothing created): the
# catalogue, tests/test_catalogue.py.


def _one_process_run(tmp_path_factory, args):
    run = tmp_path_factory.mktemp("single") / "run"
    proc = _train([*args, f"--workdir={run}"], _env())
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return _results(run)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    return _one_process_run(tmp_path_factory, ARGS)


def test_two_workers_equal_one_process_and_only_the_chief_writes(tmp_path, one_process_run):
    chief_dir, worker_dir = tmp_path / "chief" / "run", tmp_path / "worker" / "run"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    configs = launch.tf_configs(launch.free_ports(2))
    procs = [_train([*ARGS, "--strategy=multi_worker", f"--workdir={d}"],
                    _env(TF_CONFIG=c, TMPDIR=str(scratch)), cpu=i)
             for i, (c, d) in enumerate(zip(configs, (chief_dir, worker_dir)))]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "on 2 replica(s)" in outs[0] and "on 2 replica(s)" in outs[1]
    _assert_same_run(_results(chief_dir), one_process_run)
    assert sorted(os.listdir(chief_dir)) == [
        "checkpoints", "classes.json", "classifier.json", "classifier.keras",
        "classifier_serving", "data.json", "flags.cfg", "history.json", "label_issues.csv",
        "results.json", "test", "train", "weight_fn"]
    assert not worker_dir.parent.exists()  # the other worker wrote nothing
    assert os.listdir(scratch) == []  # and removed its temporary checkpoints

    # Started again, the chief finds its checkpoint of epoch 3 (step 33) and the other worker (whose
    # run folder is elsewhere, as on a machine without the shared filesystem) none: both stop.
    procs = [_train([*ARGS, "--strategy=multi_worker", f"--workdir={d}"],
                    _env(TF_CONFIG=c, TMPDIR=str(scratch)), cpu=i)
             for i, (c, d) in enumerate(zip(launch.tf_configs(launch.free_ports(2)),
                                            (chief_dir, worker_dir)))]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs
    for out in outs:
        assert out.splitlines()[-1].startswith(
            "error: the workers would resume from different checkpoints (steps 0 to 33)"), out


def _free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (a Slurm node's two tasks take both)."""
    for _ in range(50):
        (port,) = launch.free_ports(1)
        if port < 65535 and _is_free(port) and _is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# FaMUS's learned layer sampler every other step: its samplers are mirrored variables too
SAMPLED_ARGS = [*ARGS, "--meta_scope=sampled", "--meta_interval=2"]


def test_two_slurm_tasks_equal_one_process_and_only_task_0_writes(tmp_path, tmp_path_factory):
    """The variables `srun --ntasks=2` sets on one node (`localhost`), read by TensorFlow's
    SlurmClusterResolver: the same run as one process, written by task 0 alone; the run is
    MW-Net with FaMUS's sampled scope every other step (SAMPLED_ARGS)."""
    dirs = [tmp_path / "task0" / "run", tmp_path / "task1" / "run"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = _free_port_pair()
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "localhost",
             "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "17"}
    procs = [_train([*SAMPLED_ARGS, "--strategy=multi_worker", "--cluster=slurm",
                     f"--slurm_port_base={port}", f"--workdir={d}"],
                    _env(SLURM_PROCID=str(i), TMPDIR=str(scratch), **slurm), cpu=i)
             for i, d in enumerate(dirs)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "on 2 replica(s)" in outs[0] and "on 2 replica(s)" in outs[1]
    chief = _results(dirs[0])
    assert chief["config"]["meta_scope"] == "sampled" and "meta_layers" in chief["train"]
    _assert_same_run(chief, _one_process_run(tmp_path_factory, SAMPLED_ARGS))
    assert not dirs[1].parent.exists()  # task 1 wrote nothing
    assert "worker 1: the chief writes the run folder" in outs[1]


def test_two_workers_on_image_files_equal_one_process(tmp_path, tmp_path_factory):
    """Own image files (augmented) under two workers, with CMW-Net (its class groups and
    class-aware weight net): each worker's pipeline decodes only its shard of every global
    batch, and the run ends where one process ends."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_own_data import make_folder
    folder = make_folder(tmp_path / "folder", {"train": 8, "meta": 4, "test": 2})
    args = ["--dataset=folder", f"--data_dir={folder}", "--method=cmwnet", "--image_size=16",
            "--augment", "--batch_size=4", "--meta_batch_size=4", "--epochs=2",
            "--lr_decay_epochs=", "--deterministic", "--progress_seconds=0",
            "--notensorboard_images"]
    single = _one_process_run(tmp_path_factory, args)
    chief_dir = tmp_path / "chief" / "run"
    procs = [_train([*args, "--strategy=multi_worker", f"--workdir={d}"], _env(TF_CONFIG=c),
                    cpu=i)
             for i, (c, d) in enumerate(zip(launch.tf_configs(launch.free_ports(2)),
                                            (chief_dir, tmp_path / "worker" / "run")))]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "on 2 replica(s)" in outs[0]
    chief = _results(chief_dir)
    assert chief["own_data"] == single["own_data"]
    assert chief["config"]["method"] == "cmwnet"
    assert chief["class_groups"] == single["class_groups"]
    assert chief["weight_curves"].keys() == single["weight_curves"].keys()
    for group, curve in single["weight_curves"].items():  # each class group's learned function
        assert chief["weight_curves"][group] == pytest.approx(curve, abs=1e-5), group
    _assert_same_run(chief, single)


def _reader(proc, lines):
    thread = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    thread.start()
    return thread


def _wait(what, procs, lines, timeout=240):
    deadline = time.time() + timeout
    while not what():
        assert time.time() < deadline and all(p.poll() is None for p in procs), lines
        time.sleep(0.05)


def test_a_signal_or_a_lost_worker_stops_the_run_and_it_resumes_to_the_same_end(
        tmp_path, tmp_path_factory):
    """One run (cross-entropy, CE_ARGS), stopped twice and resumed each time:
    1. SIGTERM to worker 1 alone: the workers agree after the current call (an all-reduce of
       the stop request), take the same collective checkpoint and both exit 143;
    2. resumed by the launcher, worker 1 is killed (SIGKILL) after the checkpoint of epoch 2:
       the launcher stops worker 0, blames worker 1 and exits 137, no results written;
    3. the launcher's command again: both workers resume from the chief's checkpoint and the
       run ends as the uninterrupted one-process run."""
    run = tmp_path / "run"
    procs = [_train([*CE_ARGS, "--strategy=multi_worker", f"--workdir={run}"], _env(TF_CONFIG=c),
                    cpu=i) for i, c in enumerate(launch.tf_configs(launch.free_ports(2)))]
    lines = [[], []]
    readers = [_reader(p, out) for p, out in zip(procs, lines)]
    _wait(lambda: any(line.startswith("epoch 1/3") for line in list(lines[0])), procs, lines)
    procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=120) for p in procs]
    for r in readers:
        r.join(timeout=10)
    assert codes == [128 + signal.SIGTERM] * 2, lines
    stops = [next(line for line in out if line.startswith("stopped: ")) for out in lines]
    assert all("stopped by signal 15" in s for s in stops), stops
    # the same position on both workers ("at epoch E step S" or "after epoch E")
    where = {s.split("stopped by signal 15 ", 1)[1].split(";")[0] for s in stops}
    assert len(where) == 1, stops
    checkpoint = stops[0].split("checkpoint ", 1)[1].split(";", 1)[0]
    assert os.path.exists(checkpoint + ".index")
    assert int(checkpoint.rsplit("ckpt-", 1)[1]) < 22, stops  # inside epoch 2 at the latest

    cmd = [sys.executable, "-m", "mwnet_tf.launch", "--workers=2", "--",
           *CE_ARGS, f"--workdir={run}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = _reader(proc, lines)
    second = run / "checkpoints" / "ckpt-22.index"  # after epoch 2 (11 steps an epoch)
    _wait(second.exists, [proc], lines)
    assert any("resumed from" in line for line in lines), "".join(lines)
    pid = next(int(line.split("pid ")[1].split(",")[0]) for line in list(lines)
               if line.startswith("[launch] worker 1: pid"))
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    assert proc.returncode == 128 + signal.SIGKILL, "".join(lines)
    assert any("worker 1 ended with status -9" in line for line in lines), "".join(lines)
    assert not (run / "results.json").exists()

    again = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    for worker in (0, 1):
        assert f"[worker {worker}] resumed from {run}/checkpoints/ckpt-" in again.stdout
    result = _results(run)
    assert result["config"]["method"] == "ce"
    _assert_same_run(result, _one_process_run(tmp_path_factory, CE_ARGS))
