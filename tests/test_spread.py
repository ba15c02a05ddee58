"""The spread block: runs grouped by the one part of their randomness they vary."""

import pytest

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.spread import spread


def _run(acc, seed=0, method="mwnet", meta_lr=1e-3, **parts):
    config = dict(method=method, meta_lr=meta_lr, seed=seed,
                  **{f"{p}_seed": parts.get(p) for p in ("meta", "noise", "init", "order")})
    return ("run", {"config": config, "test_accuracy": acc})


def test_each_part_is_a_row_with_the_all_zero_run_as_its_value_zero():
    runs = [_run(80.0), _run(70.0, seed=1), _run(90.0, seed=2),
            _run(78.0, meta=1), _run(82.0, meta=2), _run(81.0, init=1),
            _run(60.0, method="ce"), _run(64.0, method="ce", seed=1)]
    text = spread(runs)
    rows = {line.split("|")[3].strip(): line for line in text.splitlines()
            if line.startswith("| mwnet")}
    assert "80.0 70.0 90.0" in rows["everything (--seed)"]
    assert "80.00 ± 10.00" in rows["everything (--seed)"]
    assert "80.0 78.0 82.0" in rows["meta-set draw (--meta_seed)"]
    assert "0,1" in rows["initialization (--init_seed)"]
    assert "62.00 ± 2.83" in next(line for line in text.splitlines() if line.startswith("| ce"))


def test_two_parts_at_once_or_a_part_with_another_seed_is_refused():
    with pytest.raises(ReportError):
        spread([_run(80.0, meta=1, init=2)])
    with pytest.raises(ReportError):
        spread([_run(80.0, seed=3, meta=1)])
