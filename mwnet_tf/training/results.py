"""The end of a run: its results (`results.json`) and the method's exports (MW-Net: the
learned weight function, `weight_fn/`; Confident Learning: `label_issues.npz`).

`results.json` is written last, so its presence means the run finished with everything
else in place.
"""

from __future__ import annotations

import dataclasses
import os

from mwnet_tf import files
from mwnet_tf.config import Config
from mwnet_tf.data import BiasedData
from mwnet_tf.training import diagnostics


def collect(config: Config, data: BiasedData, stages, *, test: dict, train: dict,
            best_accuracy: float, seconds: float, tracker, method,
            cpu_seconds: float | None = None) -> dict:
    """The run's results: final and best test accuracy (of a part of the training set held
    out with its given labels: `heldout_noisy_accuracy`), the last epoch's training metrics
    (`train`), the setting, and the tracker's and the method's own results; for a learned
    weight function, whether it falls with the loss (`diagnostics.weight_trend`)."""
    tracked = tracker.results()
    trend = ({} if "weight_function" not in tracked else diagnostics.weight_trend(
        tracked["weight_function"]["losses"], tracked["weight_function"]["weights"]))
    name = data.test_name  # "test", or "heldout_noisy" (given labels: never a test accuracy)
    return {
        f"{name}_accuracy": test["accuracy"],
        f"best_{name}_accuracy": best_accuracy,
        f"per_class_{name}_accuracy": test.get("per_class_accuracy"),
        "realized_noise_rate": float(data.realized_noise_rate),
        "epochs": sum(s.epochs for s in stages),
        "stages": [dataclasses.asdict(s) for s in stages],
        "train": train,
        "wall_seconds_this_session": round(seconds, 1),
        # the process's CPU time (all its threads) over the same span: less moved than the wall
        # time by other programs on the machine
        **({} if cpu_seconds is None else {"cpu_seconds_this_session": round(cpu_seconds, 1)}),
        "config": config.to_dict(),
        **tracked,
        **trend,
        **method.results(),
    }


def write(workdir: str, results: dict, method, ckpt, finish=None) -> None:
    """The method's exports, then what `finish()` writes (label_issues.csv, the classifier;
    its entries join `results`), then `results.json`; a failed write is a `WriteError`
    naming the checkpoint kept (`ckpt.writing`)."""
    with ckpt.writing(f"the exports in {workdir}"):
        method.export(workdir)
        if finish is not None:
            results.update(finish())
    path = os.path.join(workdir, files.RESULTS)
    with ckpt.writing(path):
        files.write_json(path, results, fault="results")
