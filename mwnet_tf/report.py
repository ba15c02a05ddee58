"""Summarize finished runs as a Markdown table: mean and spread over seeds per setting.

    python -m mwnet_tf.report runs/digits-uniform0.4-*
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

import numpy as np

KEY_FIELDS = ("dataset", "noise", "rate", "imbalance", "model", "method")


def load_results(folders: list[str]) -> list[dict]:
    """results.json of every folder that has one (folders without are skipped)."""
    out = []
    for folder in folders:
        path = os.path.join(folder, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def summarize(results: list[dict]) -> list[dict]:
    """One row per setting: mean and sample std of final and best test accuracy."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        groups[tuple(r["config"][k] for k in KEY_FIELDS)].append(r)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        final = np.array([r["test_accuracy"] for r in runs])
        best = np.array([r["best_test_accuracy"] for r in runs])
        wall = np.array([r.get("wall_seconds_this_session", np.nan) for r in runs])
        std = (lambda a: float(a.std(ddof=1)) if len(a) > 1 else float("nan"))
        rows.append({**dict(zip(KEY_FIELDS, key)),
                     "seeds": sorted(r["config"]["seed"] for r in runs),
                     "final_mean": float(final.mean()), "final_std": std(final),
                     "best_mean": float(best.mean()), "best_std": std(best),
                     "wall_s": float(np.nanmean(wall))})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| dataset | noise | method | model | seeds | final test acc. (%) | "
             "best test acc. (%) | wall per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        noise = f"{r['noise']} {r['rate']:g}" + (f", imbalance {r['imbalance']:g}"
                                                 if r["imbalance"] > 1 else "")
        lines.append(f"| {r['dataset']} | {noise} | {r['method']} | {r['model']} | "
                     f"{len(r['seeds'])} | {r['final_mean']:.2f} ± {r['final_std']:.2f} | "
                     f"{r['best_mean']:.2f} ± {r['best_std']:.2f} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m mwnet_tf.report RUN_FOLDER [RUN_FOLDER ...]", file=sys.stderr)
        return 2
    results = load_results(argv)
    if not results:
        print("error: none of the folders holds a results.json", file=sys.stderr)
        return 1
    print(markdown(summarize(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
