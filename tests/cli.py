"""Running the real command line from tests (shared by the test modules)."""

import json
import os
import select
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CliSession:
    """`python -m mwnet_tf.train ARGS` (or `python -m MODULE ARGS`), one command line after
    another, through one TensorFlow import (`tests/cli_runner.py`: a forked child per command
    line). `run` returns a `subprocess.CompletedProcess` as `subprocess.run` would; a child
    killed by a signal has the negative return code a killed process has. Each command line
    gets the session's environment with `MWNET_TF_FAULT` removed, plus the keyword arguments
    (None removes)."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "cli_runner.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), start_new_session=True)

    def run(self, *args, cwd=REPO, timeout=300, module="mwnet_tf.train", **env):
        case = {"argv": list(args), "cwd": str(cwd), "env": {"MWNET_TF_FAULT": None, **env},
                "module": module}
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:  # the runner and the hung child with it
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise subprocess.TimeoutExpired(args, timeout)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tests/cli_runner.py ended (status {self.proc.wait()})")
        out = json.loads(line)
        return subprocess.CompletedProcess([module, *args], out["code"],
                                           out["stdout"], out["stderr"])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def train_in_child(argv, *, two_cpus=False, mock_tfds=None, timeout=600):
    """`mwnet_tf.train` on `argv` (its first item the program's name) in a Python process of
    its own: the CPU split into two logical devices (`two_cpus`, MirroredStrategy's replicas),
    or inside `tfds.testing.mock_data(num_examples=mock_tfds)`, a mock living in the process
    that loads the data. Returns the `subprocess.CompletedProcess`."""
    lines = ["import sys"]
    if two_cpus:
        lines += ["import tensorflow as tf",
                  "cpu = tf.config.list_physical_devices('CPU')[0]",
                  "tf.config.set_logical_device_configuration(",
                  "    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)"]
    run = [f"sys.argv = {list(argv)!r}", "train.run()"]
    if mock_tfds is not None:
        lines += ["import tensorflow_datasets as tfds",
                  "tfds.core.DatasetBuilder.is_prepared = lambda self: True"]
        run = [f"with tfds.testing.mock_data(num_examples={int(mock_tfds)}):",
               *("    " + line for line in run)]
    code = "\n".join([*lines, "from mwnet_tf import train", *run]) + "\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=timeout)
