"""Start a multi-worker run on this machine: one process per worker, `TF_CONFIG` for each.

    python -m mwnet_tf.launch --workers=2 -- --flagfile=flags/smoke.cfg --workdir=runs/mw

Everything after `--` goes to every `python -m mwnet_tf.train` process, with
`--strategy=multi_worker` added. Worker i listens on 127.0.0.1 (a free port each), is pinned
to CPU i mod (CPUs) when `--pin_cpus` (default) and has `--threads` TensorFlow threads. Its
output lines are printed with a `[worker i]` prefix. When a worker fails or is killed, the
others are stopped (a collective op would otherwise wait for the lost peer) and the launcher
exits with that worker's status; run the same command again to resume from the chief's last
checkpoint. On several machines, start `python -m mwnet_tf.train --strategy=multi_worker`
on each with its own `TF_CONFIG` instead (docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from mwnet_tf.cli import commandline

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("workers", 2, "Worker processes.", lower_bound=1)
    flags.DEFINE_integer("threads", 1, "TensorFlow intra-op threads per worker.", lower_bound=1)
    flags.DEFINE_bool("pin_cpus", True, "Pin worker i to CPU i mod (CPUs available).")


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 at the time of the call."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(ports: list[int]) -> list[str]:
    """The `TF_CONFIG` of each worker of a loopback cluster (worker 0 is the chief)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            for i in range(len(ports))]


def _pipe(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()


def launch(train_args: list[str], workers: int, threads: int = 1, pin_cpus: bool = True) -> int:
    """Runs the workers to the end; returns 0, or the status of the first worker that failed
    (-N for a signal N), after stopping the others."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    procs = []
    for i, tf_config in enumerate(tf_configs(free_ports(workers))):
        env = dict(os.environ, TF_CONFIG=tf_config, TF_NUM_INTRAOP_THREADS=str(threads),
                   TF_NUM_INTEROP_THREADS=str(threads), PYTHONUNBUFFERED="1")
        cpu = cpus[i % len(cpus)] if pin_cpus and cpus else None
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "mwnet_tf.train", "--strategy=multi_worker", *train_args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=(lambda c=cpu: os.sched_setaffinity(0, {c})) if cpu is not None
            else None))
        print(f"[launch] worker {i}: pid {procs[-1].pid}" + (f", CPU {cpu}" if cpu is not None
                                                              else ""), flush=True)
    pipes = [threading.Thread(target=_pipe, args=(p, f"[worker {i}] "), daemon=True)
             for i, p in enumerate(procs)]
    for t in pipes:
        t.start()
    interrupted = False
    try:
        while all(p.poll() in (None, 0) for p in procs) and any(p.poll() is None for p in procs):
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
    stopped = set()
    for i, p in enumerate(procs):
        if p.poll() is None:
            p.kill()
            stopped.add(i)
    for p in procs:
        p.wait()
    for t in pipes:
        t.join(timeout=5)
    if interrupted:
        return -signal.SIGINT
    return _first_failure([p.returncode for p in procs], stopped)


def _first_failure(statuses: list[int], stopped: set[int]) -> int:
    """0 if every worker succeeded, else the status of the failure that caused the others: a
    worker killed by a signal comes before one that stopped with an error (its peers'
    lost-connection errors follow from it); workers this launcher stopped do not count."""
    failed = [(i, s) for i, s in enumerate(statuses) if s != 0 and i not in stopped]
    if not failed:
        return 0
    i, status = min(failed, key=lambda f: f[1] >= 0)
    print(f"[launch] worker {i} ended with status {status}; the others were stopped (run the "
          "same command again to resume)", flush=True)
    return status


def main(argv: list[str]) -> None:
    status = launch(argv[1:], FLAGS.workers, FLAGS.threads, FLAGS.pin_cpus)
    # exit statuses are 0-255: a worker killed by signal N gives 128 + N, as a shell does
    sys.exit(status if status >= 0 else 128 - status)


def run() -> None:
    """The entry point of `python -m mwnet_tf.launch` and of the `mwnet-launch` script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
