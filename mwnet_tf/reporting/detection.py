"""How well each method's ranking of the training labels (`label_issues.csv`) finds the wrong
ones, from the `label_issue_detection` of kept runs: AUROC and precision at k, k the number of
truly wrong labels (where precision and recall are equal)."""

from __future__ import annotations

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.tables import _mean_std, _method_order, _table, setting, setting_label


def _cell(values: list[float]) -> str:
    return _mean_std(values) if values else "–"


def detection(runs: list[tuple[str, dict]]) -> str:
    """One row per method, a column pair (AUROC, precision at k) per setting, means ± std
    over seeds; a last row ranks every run by its classifier's loss alone."""
    cells: dict[tuple[str, tuple], list[dict]] = {}
    for name, r in runs:
        found = r.get("label_issue_detection")
        if not found:
            raise ReportError(f"{name} has no label_issue_detection (no known true labels)")
        cells.setdefault((r["config"]["method"], setting(r["config"])), []).append(found)
    settings = sorted({s for _, s in cells}, key=lambda s: (s[2], s[0], s[1]))
    methods = _method_order(m for m, _ in cells)
    header = ["method"] + [f"{setting_label(*s)} {what}" for s in settings
                           for what in ("AUROC", "P@k")]
    rows = []
    for m in methods:
        row = [m]
        for s in settings:
            found = cells.get((m, s), [])
            row += [_cell([100 * f["auroc"] for f in found]),
                    _cell([100 * f["precision_at_k"] for f in found])]
        rows.append(row)
    loss_row = ["loss alone (every run)"]
    for s in settings:
        found = [f for (m, s2), fs in cells.items() if s2 == s for f in fs]
        loss_row += [_cell([100 * f["loss_auroc"] for f in found]),
                     _cell([100 * f["loss_precision_at_k"] for f in found])]
    rows.append(loss_row)
    seeds = sorted({len(fs) for fs in cells.values()})
    counts = " or ".join(str(n) for n in seeds)
    return (f"How well each method's ranking of the training labels finds the wrong ones (%): "
            f"AUROC, and precision at k\n(= recall at k) with k the number of truly wrong "
            f"labels; mean ± std over {counts} seed{'' if seeds == [1] else 's'}. The last row "
            f"ranks the\nsame runs' "
            f"training samples by their classifier's final loss alone.\n\n"
            + _table(header, rows))
