"""How well each method's ranking of the training labels (`label_issues.csv`) finds the wrong
ones, from the `label_issue_detection` of kept runs: AUROC and precision at k, k the number of
truly wrong labels (where precision and recall are equal)."""

from __future__ import annotations

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.tables import (
    _mean_std,
    _method_order,
    _table,
    row_name,
    setting,
    setting_label,
)


def _cell(values: list[float]) -> str:
    return _mean_std(values) if values else "–"


def detection(runs: list[tuple[str, dict]]) -> str:
    """Two tables of one row per method (`row_name`: its approximations, or a meta set
    selected from the training set, rows of their own) and a column pair (AUROC, precision at
    k) per setting, means ± std over seeds: the method's own signal (`signal_*` of
    results.json; `auroc` of runs that have none), then the same runs' training samples
    ranked by their classifier's final loss alone, the order of `label_issues.csv`."""
    cells: dict[tuple[str, tuple], list[dict]] = {}
    for name, r in runs:
        found = r.get("label_issue_detection")
        if not found:
            raise ReportError(f"{name} has no label_issue_detection (no known true labels)")
        cells.setdefault((row_name(r["config"]), setting(r["config"])), []).append(found)
    settings = sorted({s for _, s in cells}, key=lambda s: (s[2], s[0], s[1]))
    methods = _method_order(m for m, _ in cells)
    header = ["method"] + [f"{setting_label(*s)} {what}" for s in settings
                           for what in ("AUROC", "P@k")]

    def rows(prefix: str) -> list[list[str]]:
        return [[m] + [_cell([100 * f.get(prefix + key, f[key]) if prefix == "signal_" else
                              100 * f[prefix + key] for f in cells.get((m, s), [])])
                       for s in settings for key in ("auroc", "precision_at_k")]
                for m in methods]

    seeds = sorted({len(fs) for fs in cells.values()})
    counts = " or ".join(str(n) for n in seeds)
    return (f"How well each method's own signal (its weights or flags; for the others the "
            f"loss) finds the wrong labels (%): "
            f"AUROC, and precision at k\n(= recall at k) with k the number of truly wrong "
            f"labels; mean ± std over {counts} seed{'' if seeds == [1] else 's'}.\n\n"
            + _table(header, rows("signal_"))
            + "\n\nThe same runs' training samples ranked by their classifier's final loss "
              "alone (the `loss_*` scores\nof results.json), the order of label_issues.csv:\n\n"
            + _table(header, rows("loss_")))
