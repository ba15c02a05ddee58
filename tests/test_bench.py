"""The benchmark command: bare steps, the trainer's loop, memory probes (logic, not speed)."""

import json
import os
import subprocess
import sys

from mwnet_tf import bench

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_times_both_steps_and_the_loop_at_each_steps_per_call():
    r = bench.benchmark("tiny", 20, 10, (8, 8, 1), runs=1, warmup=1, rounds=1,
                        jit_compile=False, loop_steps_per_call=(1, 3), loop_steps=4)
    assert r["plain_step_s"] > 0 and r["mwnet_step_s"] > 0
    assert r["ratio"] == r["mwnet_step_s"] / r["plain_step_s"]
    assert {(row["method"], row["steps_per_call"]) for row in r["loop"]} == {
        ("ce", 1), ("ce", 3), ("mwnet", 1), ("mwnet", 3)}
    for row in r["loop"]:
        bare = r["plain_step_s"] if row["method"] == "ce" else r["mwnet_step_s"]
        assert row["vs_bare_step"] == row["step_s"] / bare > 0


def test_memory_probe_sees_the_step_allocate():
    m = bench.memory_probe("mwnet", "tiny", 20, 10, (8, 8, 1), steps=1)
    assert 0 < m["peak_rss_before_steps"] <= m["peak_rss"]


def test_command_writes_loop_and_memory_to_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mwnet_tf.bench", "--model=tiny", "--batch_size=20", "--runs=1",
         "--rounds=1", "--warmup=1", "--loop", "--steps_per_call=2", "--loop_steps=2",
         "--memory", f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert [row["steps_per_call"] for row in r["loop"]] == [2, 2]
    assert r["memory"]["rss_ratio"] > 0 and r["memory"]["mwnet"]["method"] == "mwnet"
    assert "memory ratio MW-Net / plain" in proc.stdout
