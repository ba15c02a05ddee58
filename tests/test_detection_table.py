"""The detection block: each method's label-error ranking quality per setting."""

import pytest

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.detection import detection


def _run(method, noise, auroc, p, loss_auroc=0.5, loss_p=0.4, **extra):
    config = dict(method=method, noise=noise, rate=0.4, imbalance=1.0, **extra)
    found = dict(auroc=auroc, precision_at_k=p, recall_at_k=p, k=10, n=100,
                 loss_auroc=loss_auroc, loss_precision_at_k=loss_p)
    return ("run", {"config": config, "label_issue_detection": found})


def test_rows_per_method_columns_per_setting_then_the_same_runs_ranked_by_loss():
    text = detection([_run("mwnet", "flip", 0.9, 0.8, loss_auroc=0.95),
                      _run("mwnet", "flip", 0.7, 0.6, loss_auroc=0.85),
                      _run("ce", "flip", 0.6, 0.5), _run("ce", "uniform", 0.8, 0.7)])
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| method")]
    assert len(headers) == 2
    assert "flip 0.4 AUROC" in lines[headers[0]] and "uniform 0.4 P@k" in lines[headers[0]]
    own, by_loss = lines[headers[0]:headers[1]], lines[headers[1]:]
    mwnet = next(line for line in own if line.startswith("| mwnet"))
    assert "80.00 ± 14.14" in mwnet and "70.00 ± 14.14" in mwnet and "–" in mwnet
    mwnet = next(line for line in by_loss if line.startswith("| mwnet"))
    assert "90.00 ± 7.07" in mwnet and "40.00 ± 0.00" in mwnet
    ce = next(line for line in by_loss if line.startswith("| ce"))
    assert [c.strip() for c in ce.split("|")[1:-1]] == ["ce", "50.00", "40.00", "50.00", "40.00"]


def test_a_selected_meta_set_is_a_row_of_its_own_not_averaged_with_the_trusted_one():
    text = detection([_run("mwnet", "flip", 0.9, 0.8, meta_source="trusted"),
                      _run("mwnet", "flip", 0.3, 0.2, meta_source="selected")])
    own = text.split("| method")[1]  # the first table: the methods' own signals
    rows = {line.split("|")[1].strip(): line for line in own.splitlines()
            if line.startswith("| mwnet")}
    assert "90.00" in rows["mwnet"] and "30.00" in rows["mwnet (meta_source=selected)"]


def test_a_run_without_known_truth_is_an_error():
    with pytest.raises(ReportError):
        detection([("run", {"config": dict(method="ce", noise="none", rate=0.0,
                                            imbalance=1.0)})])
