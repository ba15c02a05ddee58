"""Two replicas under MirroredStrategy (2 logical CPUs, float64) train exactly like one device
with the same global batch: MW-Net's step (exact, head, interval, FaMUS's sampler), CMW-Net's
class-aware step, CMW-Net-SL's steps, L2RW's step and the torch optimizer rules. All checks run
in one process (`tests/mirrored_check.py`), since the logical devices must be set before
TensorFlow starts."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def checks():
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py")], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {c["check"]: c for c in out}


def _check(checks, name, tolerance):
    c = checks[name]
    assert "error" not in c, c.get("error")
    assert c["worst"] < tolerance, c
    return c


@pytest.mark.parametrize("variant", ["exact", "head", "interval", "sampled", "cmwnet"])
def test_two_replica_mwnet_step_matches_one_device(checks, variant):
    # classifier, its batch-norm statistics and the weight net; the weight net did learn
    assert _check(checks, variant, 1e-9)["weight_net_moved"] > 1e-6


def test_two_replica_cmwnet_sl_steps_match_one_device_mixing_each_half(checks):
    """CMW-Net-SL's pseudo-labels, mixup (within each replica's part of the batch), objective
    and EMA update: two replicas train like one device that mixes each half of its batch."""
    c = _check(checks, "cmwnet_sl", 1e-9)
    assert c["weight_net_moved"] > 1e-6 and c["ema_moved"] > 1e-6


def test_two_replica_l2rw_step_matches_one_device(checks):
    """The meta-gradient crosses the all-reduced virtual step and the weights are normalized
    over the global batch: two replicas of 4 samples must train exactly like one of 8."""
    assert _check(checks, "l2rw", 1e-9)["weight_sum_corrupted"] > 0


def test_two_replica_torch_optimizers_match_torch_rule_on_summed_gradients(checks):
    errors = _check(checks, "optimizers", 1e-12)["errors"]
    assert set(errors) == {"TorchSGD", "TorchAdam"}
