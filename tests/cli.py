"""Running the real command line from tests (shared by the test modules)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_cli(*args, cwd=REPO, timeout=300, **env):
    """`python -m mwnet_tf.train ARGS` in a fresh process (TensorFlow's C++ logging off)."""
    return subprocess.run([sys.executable, "-m", "mwnet_tf.train", *args], cwd=cwd,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
                          capture_output=True, text=True, timeout=timeout)


def train_cli_many(cases: list[dict], timeout=900) -> list[dict]:
    """Many command lines through one TensorFlow import (`tests/cli_runner.py`: a forked
    child per case, the same entry point as `python -m mwnet_tf.train`). A case is
    {"argv": [...], "env": {...}}; each result {"code", "stdout", "stderr"}."""
    import json
    cases = [{"cwd": REPO, **c, "env": {"MWNET_TF_FAULT": None, **c.get("env", {})}}
             for c in cases]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "cli_runner.py")],
                          input=json.dumps(cases), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
