"""Accuracy against cost: MW-Net's cheap meta steps beside the exact step and cross-entropy.

The runs of one table (`runs/reference/TABLE`), grouped as the comparison table groups them (a
row per method and approximation, `tables.row_name`; a column per setting). For each setting:

- the final test accuracy of each row, mean ± sample std over seeds, and its difference from
  the exact MW-Net step's (`mwnet` without an approximation);
- its wall time relative to cross-entropy's (`ce`): per seed, the run's
  `wall_seconds_this_session` over the cross-entropy run's of the same seed, then the mean
  over seeds (so the table needs a cross-entropy run of every seed it holds). Relative times
  compare only runs made on one machine in one sitting, pinned alike: the table says nothing of
  other runs; beside it the same ratio of the runs' CPU time (`cpu_seconds_this_session`,
  all threads of the process), which other programs on the machine move less, where every run
  of the row and its cross-entropy runs have it;
- whether the row reaches the goal: within `WITHIN` points of the exact step's accuracy (its
  mean at or above the exact step's mean minus `WITHIN`) at no more than `GOAL` times
  cross-entropy's wall time.

A line under each setting names the cheapest row within `WITHIN` points of the exact step, and
whether it reaches `GOAL`.
"""

from __future__ import annotations

import numpy as np

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting import tables

WITHIN = 0.5  # points of test accuracy below the exact step's that still count as its level
GOAL = 1.1  # times cross-entropy's wall time
EXACT, PLAIN = "mwnet", "ce"


def points(runs: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Per setting label, one dict per row: name, accuracies (per seed, seed order), relative
    wall times (per seed), their means; rows in method order."""
    cells = tables._cells(runs)
    columns = sorted({col for _, col in cells}, key=tables._column_order)
    out = {}
    for col, label in zip(columns, tables._column_labels(columns)):
        rows = {m: g for (m, c), g in cells.items() if c == col}
        if PLAIN not in rows or EXACT not in rows:
            raise ReportError(f"{label}: a cost table needs a cross-entropy (ce) and an exact "
                              f"MW-Net (mwnet) row; it has {', '.join(sorted(rows))}")
        plain = {r["config"]["seed"]: _wall(r, label, PLAIN) for r in rows[PLAIN]}
        plain_cpu = {r["config"]["seed"]: r.get("cpu_seconds_this_session") for r in rows[PLAIN]}
        entries = []
        for name in tables._method_order(rows):
            g = rows[name]
            walls = [_wall(r, label, name) for r in g]
            missing = sorted(r["config"]["seed"] for r in g if r["config"]["seed"] not in plain)
            if missing:
                raise ReportError(f"{label}, {name}: no cross-entropy run of seed "
                                  f"{', '.join(map(str, missing))} to time it against")
            accuracy = [float(r["test_accuracy"]) for r in g]
            relative = [w / plain[r["config"]["seed"]] for w, r in zip(walls, g)]
            cpus = [(r.get("cpu_seconds_this_session"), plain_cpu[r["config"]["seed"]])
                    for r in g]
            relative_cpu = ([float(a) / float(b) for a, b in cpus]
                            if all(a and b for a, b in cpus) else None)
            entries.append({"name": name, "seeds": [r["config"]["seed"] for r in g],
                            "accuracy": accuracy, "relative_wall": relative,
                            "relative_cpu": relative_cpu,
                            "mean_accuracy": float(np.mean(accuracy)),
                            "mean_relative_wall": float(np.mean(relative))})
        out[label] = entries
    return out


def _wall(r: dict, label: str, name: str) -> float:
    wall = r.get("wall_seconds_this_session")
    if wall is None or not float(wall) > 0:
        raise ReportError(f"{label}, {name}, seed {r['config']['seed']}: no wall time "
                          "(wall_seconds_this_session) in its results.json")
    return float(wall)


def _level(entry: dict, exact: dict) -> bool:
    return round(entry["mean_accuracy"], 2) >= round(exact["mean_accuracy"], 2) - WITHIN


def cheapest(entries: list[dict]) -> dict:
    """The MW-Net row of least mean relative wall time within `WITHIN` of the exact step."""
    exact = next(e for e in entries if e["name"] == EXACT)
    level = [e for e in entries if e["name"] != PLAIN and _level(e, exact)]
    return min(level, key=lambda e: (round(e["mean_relative_wall"], 2), e["name"]))


def cost(runs: list[tuple[str, dict]]) -> str:
    """The Markdown of a `cost:TABLE` block."""
    parts = []
    settings = points(runs)
    seeds = sorted({len(e["seeds"]) for entries in settings.values() for e in entries})
    over = (f"mean ± sample std over {seeds[0]} seeds" if len(seeds) == 1 and seeds[0] > 1
            else "mean ± sample std over the seeds the seeds column gives")
    parts.append(tables._wrap(
        f"Final test accuracy (%), {over}; wall time of the whole run relative to "
        f"cross-entropy's of the same seed (mean over seeds; the runs made on one machine in "
        f"one sitting, each pinned to one core), and the same ratio of CPU time; \"goal\": "
        f"within {WITHIN} points of the exact step's accuracy at no more than {GOAL}x "
        f"cross-entropy's wall time."))
    for label, entries in settings.items():
        exact = next(e for e in entries if e["name"] == EXACT)
        rows = []
        for e in entries:
            delta = e["mean_accuracy"] - exact["mean_accuracy"]
            rel = np.asarray(e["relative_wall"])
            spread = f" ± {rel.std(ddof=1):.2f}" if len(rel) > 1 else ""
            goal = ("–" if e["name"] in (PLAIN, EXACT) else
                    "yes" if _level(e, exact) and round(e["mean_relative_wall"], 2) <= GOAL
                    else "no")
            cpu = ("–" if e["relative_cpu"] is None else
                   f"{np.mean(e['relative_cpu']):.2f}x")
            rows.append([e["name"], str(len(e["seeds"])), tables._mean_std(e["accuracy"]),
                         "–" if e["name"] == EXACT else f"{delta:+.2f}",
                         f"{e['mean_relative_wall']:.2f}x{spread}", cpu, goal])
        best = cheapest(entries)
        reached = round(best["mean_relative_wall"], 2) <= GOAL
        verdict = (f"the cheapest MW-Net variant within {WITHIN} points of the exact step is "
                   f"{best['name']}: {best['mean_accuracy']:.2f} against "
                   f"{exact['mean_accuracy']:.2f}, at {best['mean_relative_wall']:.2f}x "
                   f"cross-entropy's wall time (the exact step: "
                   f"{exact['mean_relative_wall']:.2f}x), "
                   + ("within the goal of " if reached else "above the goal of ")
                   + f"{GOAL}x.")
        parts += ["", f"**{label}**", "",
                  tables._table(["variant", "seeds", "test acc. (%)", "vs exact", "wall vs ce",
                                 "CPU vs ce", "goal"], rows),
                  "", tables._wrap(f"{label}: {verdict}")]
    return "\n".join(parts)
