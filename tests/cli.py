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
