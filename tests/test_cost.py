"""The accuracy-against-cost table (`cost:TABLE`) and figure (`mwnet_tf.plot --cost`)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from test_report import rows_of, write_run

from mwnet_tf import report
from mwnet_tf.reporting import cost, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (extra config, accuracy per seed, wall seconds per seed); ce's walls 100, 110, 90
RUNS = {
    "ce": ({"method": "ce"}, (80.0, 81.0, 82.0), (100, 110, 90)),
    "mwnet": ({}, (85.0, 86.0, 87.0), (300, 330, 270)),
    "every10": ({"meta_interval": 10}, (85.6, 85.5, 86.5), (120, 132, 108)),  # 85.87: -0.13
    "head": ({"meta_scope": "head"}, (84.0, 85.0, 86.0), (102, 112, 92)),  # -1.00: not level
    "head10": ({"meta_scope": "head", "meta_interval": 10}, (85.8, 85.4, 86.2),
               (105, 115.5, 94.5)),  # 85.80 (-0.20) at 1.05x: the goal
}


@pytest.fixture
def table(tmp_path):
    folder = tmp_path / "reference" / "cost"
    for name, (extra, accs, walls) in RUNS.items():
        for seed, (acc, wall) in enumerate(zip(accs, walls)):
            write_run(folder / f"f-{name}-s{seed}", acc, wall=wall, seed=seed, noise="flip",
                      **({"method": "mwnet"} | extra))
    return folder


def test_relative_wall_is_per_seed_against_cross_entropy_and_the_goal_is_marked(table):
    text = cost.cost(tables.load_table(str(table)))
    rows = rows_of(text.split("**", 2)[2])
    assert rows["ce"] == ["3", "81.00 ± 1.00", "-5.00", "1.00x ± 0.00", "–", "–"]
    assert rows["mwnet"] == ["3", "86.00 ± 1.00", "–", "3.00x ± 0.00", "–", "–"]
    assert rows["mwnet (meta_interval=10)"][2:] == ["-0.13", "1.20x ± 0.00", "–", "no"]
    assert rows["mwnet (meta_scope=head)"][2:] == ["-1.00", "1.02x ± 0.00", "–", "no"]
    assert rows["mwnet (meta_scope=head, meta_interval=10)"][2:] == [
        "-0.20", "1.05x ± 0.00", "–", "yes"]
    assert ("the cheapest MW-Net variant within 0.5 points of the exact step is mwnet "
            "(meta_scope=head, meta_interval=10): 85.80 against 86.00, at 1.05x") in " ".join(
                text.split())
    assert "within the goal of 1.1x" in " ".join(text.split())


def test_a_cheapest_variant_above_the_goal_says_so_and_cpu_time_is_its_own_ratio(tmp_path):
    folder = tmp_path / "c"
    for seed in (0, 1):
        for name, acc, wall, cpu, extra in (
                ("ce", 80.0, 100, 90, {"method": "ce"}), ("mw", 86.0, 300, 270, {}),
                ("i", 85.6 + seed * 0.2, 150, 117, {"meta_interval": 5})):
            path = write_run(folder / f"{name}-s{seed}", acc, wall=wall, seed=seed, **extra)
            with open(os.path.join(path, "results.json")) as f:
                r = json.load(f)
            r["cpu_seconds_this_session"] = cpu
            with open(os.path.join(path, "results.json"), "w") as f:
                json.dump(r, f)
    text = cost.cost(tables.load_table(str(folder)))
    assert rows_of(text.split("**", 2)[2])["mwnet (meta_interval=5)"][3:5] == [
        "1.50x ± 0.00", "1.30x"]
    text = " ".join(text.split())
    assert "is mwnet (meta_interval=5): 85.70 against 86.00, at 1.50x" in text
    assert "above the goal of 1.1x" in text


def test_missing_cross_entropy_seed_or_rows_are_one_line_errors(table, tmp_path, capsys):
    shutil.rmtree(table / "f-ce-s2")
    with pytest.raises(tables.ReportError, match="no cross-entropy run of seed 2"):
        cost.cost(tables.load_table(str(table)))
    lone = tmp_path / "lone"
    write_run(lone / "mw-s0", 86.0, seed=0)
    with pytest.raises(tables.ReportError, match=r"needs a cross-entropy \(ce\) and an exact"):
        cost.cost(tables.load_table(str(lone)))
    rc = report.main(["--reference", str(tmp_path), "--render", "cost:lone"])
    assert rc == 1 and "needs a cross-entropy" in capsys.readouterr().err


def test_report_renders_the_block(table, capsys):
    assert report.main(["--reference", str(table.parent), "--render", "cost:cost"]) == 0
    assert "wall vs ce" in capsys.readouterr().out


@pytest.mark.e2e
def test_plot_cost_writes_the_figure_and_refuses_an_incomplete_set(table, tmp_path):
    out = tmp_path / "figs"
    runs = sorted(str(table / d) for d in os.listdir(table))
    cmd = [sys.executable, "-m", "mwnet_tf.plot", "--cost", f"--out={out}"]
    proc = subprocess.run([*cmd, *runs], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out / "accuracy_vs_cost.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    no_ce = [r for r in runs if "-ce-" not in r]
    proc = subprocess.run([*cmd, *no_ce], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: flip 0.4: a cost table needs a cross-entropy (ce) and an exact MW-Net (mwnet) "
        "row; it has mwnet, mwnet (meta_interval=10), mwnet (meta_scope=head), mwnet "
        "(meta_scope=head, meta_interval=10)"]
