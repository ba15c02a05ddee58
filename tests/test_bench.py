"""The benchmark command: bare steps, the trainer's loop, memory probes (logic, not speed)."""

import json
import os
import subprocess
import sys

import pytest

from mwnet_tf.benchmarking import steps as bench  # the logic of mwnet_tf.bench

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.e2e
def test_benchmark_times_each_variant_and_the_loop_at_each_steps_per_call(tmp_path):
    variants = ("ce", "mwnet", "mwnet_head", "mwnet_last", "mwnet_sampled", "mwnet_interval",
                "mwnet_head_interval", "l2rw")
    r = bench.benchmark("tiny", 20, 10, (8, 8, 1), runs=1, warmup=1, rounds=1,
                        jit_compile=False, variants=variants, meta_interval=2,
                        loop_steps_per_call=(2,), loop_steps=2, profile=str(tmp_path),
                        profile_steps=1)
    rows = {row["variant"]: row for row in r["steps"]}
    assert list(rows) == list(variants)
    assert rows["ce"]["vs_first"] == 1.0
    for row in rows.values():
        assert row["step_s"] > 0 and row["vs_first"] == row["step_s"] / rows["ce"]["step_s"]
    # mwnet_interval is timed over whole blocks of K steps: one exact step and K - 1 weighted
    assert rows["mwnet_interval"]["meta_interval"] == 2
    assert rows["mwnet_head_interval"]["meta_interval"] == 2
    assert "meta_interval" not in rows["mwnet_sampled"]
    assert r["ratio"] == rows["mwnet"]["step_s"] / rows["ce"]["step_s"]
    assert {(row["method"], row["steps_per_call"]) for row in r["loop"]} == {
        (v, 2) for v in variants}
    for row in r["loop"]:
        assert row["vs_bare_step"] == row["step_s"] / rows[row["method"]]["step_s"] > 0
    # the profile: a second-order pass in the exact step and L2RW's, none in the plain step
    prof = r["profile"]
    assert prof["ce"]["phases"]["second-order backward"]["seconds"] == 0
    for v in ("mwnet", "mwnet_sampled", "l2rw"):
        assert prof[v]["phases"]["second-order backward"]["seconds"] > 0
        assert abs(sum(p["share"] for p in prof[v]["phases"].values()) - 1) < 1e-9
        assert prof[v]["op_types"][0]["seconds"] > 0


def test_the_variants_are_the_trainers_steps():
    """Bench builds each variant through the methods registry, as the trainer does."""
    from mwnet_tf.methods import optim
    b = bench.Bench("mwnet_interval", "tiny", 20, 10, (8, 8, 1), meta_interval=4)
    assert b.method.hp["meta_interval"] == 4 and b.unit == 4
    assert isinstance(b.method.ctx.optimizer, optim.TorchSGD)
    assert b.method.ctx.optimizer.coupled_weight_decay == 5e-4
    assert bench.Bench("mwnet_head", "tiny", 20, 10, (8, 8, 1)).method.head is not None
    assert bench.Bench("mwnet_sampled", "tiny", 20, 10, (8, 8, 1)).method.gates.sampled
    b = bench.Bench("mwnet_head_interval", "tiny", 20, 10, (8, 8, 1), meta_interval=3)
    assert b.method.head is not None and b.unit == 3
    assert not bench.Bench("ce", "tiny", 20, 10, (8, 8, 1)).with_meta
    assert bench.Bench("l2rw", "tiny", 20, 10, (8, 8, 1)).with_meta


def test_memory_probe_reads_the_resident_set_before_and_at_its_peak():
    m = bench.memory_probe("mwnet", "tiny", 20, 10, (8, 8, 1), steps=1)
    # VmHWM is updated lazily by the kernel (per-CPU RSS counters): it may trail the VmRSS
    # read before the steps by a few pages when a tiny step allocates nothing new
    assert 0 < m["peak_rss_before_steps"] <= m["peak_rss"] + 4 * 2 ** 20


@pytest.mark.e2e
def test_command_writes_loop_and_memory_to_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mwnet_tf.bench", "--model=tiny", "--batch_size=20", "--runs=1",
         "--rounds=1", "--warmup=1", "--loop", "--steps_per_call=2", "--loop_steps=2",
         "--memory", f"--json={out}"], cwd=REPO,
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["mixed_precision"] == "none"
    assert [row["steps_per_call"] for row in r["loop"]] == [2, 2]
    assert r["memory"]["rss_ratio"]["ce"] == 1.0
    assert r["memory"]["probes"]["mwnet"]["method"] == "mwnet"
    assert "MW-Net, exact" in proc.stdout and "the peak of ce" in proc.stdout


def test_unknown_variant_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "mwnet_tf.bench", "--variants=ce,fast"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 1 and "--variants takes" in proc.stderr
    assert "Traceback" not in proc.stderr
