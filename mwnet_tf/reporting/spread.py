"""Where seed-to-seed spread comes from: runs that differ in one part of their randomness
(`--meta_seed`, `--noise_seed`, `--init_seed`, `--order_seed`) or in all of it (`--seed`),
rendered as one row per method, weight-net learning rate and varied part."""

from __future__ import annotations

import numpy as np

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.tables import _mean_std, _table

PARTS = {"meta": "meta-set draw (--meta_seed)", "noise": "label noise (--noise_seed)",
         "init": "initialization (--init_seed)", "order": "batch order (--order_seed)"}
EVERYTHING = "everything (--seed)"


def _group(config: dict) -> tuple[str, float, str, int]:
    """(method, meta_lr, what varies, its value) of one run."""
    set_parts = [p for p in PARTS if config.get(f"{p}_seed") is not None]
    if len(set_parts) > 1:
        raise ReportError("a spread run varies one part of its randomness at a time")
    method, meta_lr = config["method"], float(config["meta_lr"])
    if set_parts:
        if config["seed"] != 0:
            raise ReportError("a run varying one part keeps --seed=0 for the others")
        return method, meta_lr, set_parts[0], int(config[f"{set_parts[0]}_seed"])
    return method, meta_lr, EVERYTHING, int(config["seed"])


def spread(runs: list[tuple[str, dict]]) -> str:
    """One row per (method, weight-net learning rate, varied part): the final test accuracy
    of each value, their mean ± sample std and range. The run with every seed at 0 is the
    value 0 of each part's row."""
    groups: dict[tuple, dict[int, float]] = {}
    for _, r in runs:
        method, meta_lr, part, value = _group(r["config"])
        groups.setdefault((method, meta_lr, part), {})[value] = float(r["test_accuracy"])
    for (method, meta_lr, part), values in list(groups.items()):
        base = groups.get((method, meta_lr, EVERYTHING), {}).get(0)
        if part != EVERYTHING and base is not None:
            values.setdefault(0, base)
    order = [EVERYTHING, *PARTS]
    rows = []
    for (method, meta_lr, part), values in sorted(
            groups.items(), key=lambda kv: (kv[0][0] != "mwnet", kv[0][0], kv[0][1],
                                            order.index(kv[0][2]))):
        accs = np.array([values[k] for k in sorted(values)])
        label = part if part == EVERYTHING else PARTS[part]
        rows.append([method, f"{meta_lr:g}" if method == "mwnet" else "–", label,
                     ",".join(str(k) for k in sorted(values)),
                     " ".join(f"{a:.1f}" for a in accs), _mean_std(accs),
                     f"{accs.max() - accs.min():.1f}"])
    return ("Final test accuracy (%) of runs that differ in one part of their randomness, the "
            "others at seed 0\n(or in all of it: `--seed`):\n\n"
            + _table(["method", "weight-net lr", "varied", "values", "final acc. of each",
                      "mean ± std", "range"], rows, text_columns=3))
