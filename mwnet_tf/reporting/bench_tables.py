"""Tables of the benchmark results kept in `runs/reference/bench/*.json` (the JSON of
`python -m mwnet_tf.bench --json=...`, of the PyTorch anchor and of
`python -m mwnet_tf.bench_jit --json=...`), for `mwnet_tf.report`'s blocks
`bench:steps:NAME`, `bench:pairs`, `bench:loop`, `bench:profile:NAME` and `bench:jit`."""

from __future__ import annotations

import glob
import json
import os

from mwnet_tf.reporting.tables import ReportError, _table, _wrap

# The goals, beside the figures: step time and peak memory as multiples of the plain
# step's (None: no goal).
TIME_GOALS = {"mwnet": 2.5, "mwnet_head": 1.3, "mwnet_interval": 1.3}
MEMORY_GOALS = {"mwnet": 2.0}
MIB = 2.0 ** 20


def _load(folder: str, name: str | None = None) -> list[tuple[str, dict]]:
    paths = ([os.path.join(folder, f"{name}.json")] if name
             else sorted(glob.glob(os.path.join(folder, "*.json"))))
    out = []
    for path in paths:
        try:
            with open(path) as f:
                out.append((os.path.basename(path)[:-5], json.load(f)))
        except (OSError, ValueError) as e:
            raise ReportError(f"cannot read {path} ({e})") from None
    if not out:
        raise ReportError(f"no benchmark results in {folder}")
    return out


def _goal(value: float, goal: float | None) -> str:
    if goal is None:
        return "–"
    return f"≤ {goal:g}x: " + ("met" if value <= goal else f"missed by {value / goal - 1:.0%}")


def _caption(r: dict) -> str:
    env = " ".join(f"{k}={v}" for k, v in r.get("environment", {}).items())
    return (f"{r['model']} ({r['parameters']:,} parameters), batch {r['batch_size']}, TF "
            f"{r['tensorflow']} / Keras {r['keras']} on {r['cpu_count']} CPU cores, "
            f"{r.get('date', '')}: `{(env + ' ') if env else ''}{r.get('command', '')}`")


def steps(folder: str, name: str) -> str:
    """Time and memory of each variant of one bench run, beside the goals."""
    (_, r), = _load(folder, name)
    memory = r.get("memory", {})
    rows = []
    for row in r["steps"]:
        v = row["variant"]
        label = row["label"] + (f"={row['meta_interval']}" if "meta_interval" in row else "")
        mem = ["–", "–", "–"]
        if v in memory.get("probes", {}):
            p = memory["probes"][v]
            mem = [f"{p['peak_rss'] / MIB:.0f} MiB", f"{memory['rss_ratio'][v]:.2f}x",
                   f"{memory['step_rss_ratio'][v]:.2f}x"]
        rows.append([label, f"{row['step_s']:.3f} s", f"{row['vs_first']:.2f}x",
                     _goal(row["vs_first"], TIME_GOALS.get(v)), *mem,
                     _goal(memory["rss_ratio"][v], MEMORY_GOALS.get(v))
                     if v in memory.get("probes", {}) else "–"])
    return "\n".join([
        _wrap(f"Median time per step over alternating rounds, and peak resident memory of a "
              f"few steps in a fresh process (its own: the peak above the built models); "
              f"{_caption(r)}"), "",
        _table(["step", "time", "x plain", "time goal", "peak memory", "x plain (peak)",
                "x plain (its own)", "memory goal"], rows)])


def _pair_label(name: str, r: dict) -> str:
    if r.get("implementation") == "torch_anchor":
        return f"PyTorch anchor ({name})"
    parts = ["mwnet_tf"]
    if r.get("jit_compile"):
        parts.append("--jit_compile")
    if r.get("mixed_precision", "none") != "none":
        parts.append(f"--mixed_precision={r['mixed_precision']}")
    parts += [f"{k}={v}" for k, v in r.get("environment", {}).items()]
    return " ".join(parts) + f" ({name})"


def pairs(folder: str) -> str:
    """The plain and the MW-Net step of every ResNet-32 run and of the PyTorch anchor."""
    rows = []
    for name, r in _load(folder):
        if "plain_step_s" not in r or r.get("model", "resnet32") != "resnet32":
            continue
        rows.append([_pair_label(name, r), f"{r['plain_step_s']:.3f} s",
                     f"{r['mwnet_step_s']:.3f} s", f"{r['ratio']:.2f}x"])
    return "\n".join([_wrap("ResNet-32, batch 100, median step time, one row per kept file "
                            "(the commands ran one after another, ours alternating with the "
                            "anchor's):"), "",
                      _table(["implementation (file)", "plain step", "MW-Net step", "ratio"],
                             rows)])


def loop(folder: str) -> str:
    """The trainer's loop per step beside the bare step."""
    rows = []
    for _, r in _load(folder):
        bare = {s["variant"]: s["step_s"] for s in r.get("steps", [])}
        for row in r.get("loop", []):
            rows.append([r["model"], row["method"], str(row["steps_per_call"]),
                         f"{bare[row['method']]:.4f} s", f"{row['step_s']:.4f} s",
                         f"{row['vs_bare_step']:.2f}x", _goal(row["vs_bare_step"], 1.1)])
    if not rows:
        raise ReportError(f"no loop measurements in {folder}")
    return "\n".join([_wrap("The training loop's epoch (`training.loop.train_epoch` over a real "
                            "`tf.data` pipeline) per step, beside the bare step:"), "",
                      _table(["model", "step", "steps per call", "bare step", "loop",
                              "x bare", "goal"], rows, text_columns=3)])


def profile(folder: str, name: str) -> str:
    """Where the op time of each profiled step goes."""
    (_, r), = _load(folder, name)
    if "profile" not in r:
        raise ReportError(f"{name}.json holds no profile")
    rows = []
    for v, p in r["profile"].items():
        phases = p["phases"]
        rows.append([v, f"{p['op_seconds_per_step']:.2f} s",
                     *(f"{phases[k]['share']:.0%}" for k in phases),
                     ", ".join(f"{o['type']} {o['share']:.0%}" for o in p["op_types"][:5])])
    phase_names = list(next(iter(r["profile"].values()))["phases"])
    return "\n".join([_wrap(f"Op time per step (summed over threads) by phase and the five "
                            f"largest kinds of op, from TensorFlow's profiler; {_caption(r)}"),
                      "", _table(["step", "op time", *phase_names, "largest ops"], rows,
                                 text_last=True)])


def jit(folder: str) -> str:
    """Each step without and with XLA, from every `mwnet_tf.bench_jit` result."""
    rows = []
    for name, r in _load(folder):
        if r.get("kind") != "jit":
            continue
        where = f"{r['model']}, " + ("1 device" if r["replicas"] == 1
                                     else f"{r['replicas']} replicas (MirroredStrategy)")
        load = r.get("loadavg_before_after", [])
        for v in dict.fromkeys(row["variant"] for row in r["rows"]):
            off, on = (next(row for row in r["rows"]
                            if row["variant"] == v and row["jit_compile"] == jit)
                       for jit in (False, True))
            cells = [f"{off['step_s']:.4f} s" if "step_s" in off else "fails"]
            cells.append(f"{on['step_s']:.4f} s" if "step_s" in on else "fails")
            cells.append(f"{r['jit_ratio'][v]:.2f}x" if v in r["jit_ratio"] else "–")
            rows.append([where, v, *cells, f"{load[0]:.1f}" if load else "–",
                         f"{r.get('date', '')} ({name})"])
    if not rows:
        raise ReportError(f"no jit measurements in {folder}")
    return "\n".join([_wrap("Median time per step without and with XLA (`--jit_compile`), the "
                            "two alternating in one process (`python -m "
                            "mwnet_tf.bench_jit`); load: the machine's 1-minute load "
                            "average when the run started:"), "",
                      _table(["model", "step", "no jit", "jit", "jit / no jit", "load",
                              "date (file)"], rows, text_columns=2, text_last=True)])


def render(kind: str, folder: str) -> str:
    """`kind`: "steps:NAME", "pairs", "loop", "profile:NAME" or "jit"."""
    what, _, name = kind.partition(":")
    if what == "steps" and name:
        return steps(folder, name)
    if what == "profile" and name:
        return profile(folder, name)
    if what == "pairs" and not name:
        return pairs(folder)
    if what == "loop" and not name:
        return loop(folder)
    if what == "jit" and not name:
        return jit(folder)
    raise ReportError(f"unknown report block 'bench:{kind}' (bench:steps:NAME, bench:pairs, "
                      "bench:loop, bench:profile:NAME or bench:jit)")
