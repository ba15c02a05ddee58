"""Does a setting memorize the noisy labels? One row per setting of a table's runs.

A setting is a protocol (the config without its `VOLATILE` fields, the seed and the data path
among them) and, for own data, its number of training images (`own_data.train` of
results.json: a training subset written to its own file differs only in its path; "all" for a
built-in data set). The columns are the number of training images and the fields that differ
between the settings. A run memorizes when both hold:

- its accuracy on its noisy training labels at the end (`train.accuracy`) passes the clean
  fraction of those labels (1 - `realized_noise_rate`, else 1 - `rate`; 1 - `kept_noise_rate`
  for a method that trains on the samples it kept): it fits wrong labels;
- its final test accuracy falls at least `DROP` points below its best epoch's.

A row says "yes" when every seed memorizes, "no" when none does, "k of n seeds" otherwise.
"""

from __future__ import annotations

import json

import numpy as np

from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.tables import _mean_std, _method_order, _table, _wrap, protocol_fields

DROP = 3.0  # points of test accuracy the final epoch is below the best, at least
# Columns first in this order when they vary between settings; other varying fields follow.
FIRST = ("method", "dataset", "noise", "rate", "model", "epochs", "lr_decay_epochs", "weight_decay",
         "augment", "lr", "batch_size")
NAMES = {"weight_decay": "weight decay", "lr_decay_epochs": "lr decay at",
         "augment": "augment", "batch_size": "batch", "meta_per_class": "meta per class"}


def train_images(r: dict) -> int | None:
    """The number of training images of an own-data run (None for a built-in data set)."""
    own = r.get("own_data") or {}
    return int(own["train"]) if "train" in own else None


def clean_fraction(r: dict) -> float:
    """The fraction of training labels that are right (realized, else the nominal rate); of
    the samples a method trains its final model on, when it reports their noise rate
    (confident learning's `kept_noise_rate`)."""
    noise = r.get("kept_noise_rate", r.get("realized_noise_rate"))
    if noise is None or not np.isfinite(float(noise)):
        noise = float(r["config"]["rate"]) if r["config"]["noise"] != "none" else 0.0
    return 1.0 - float(noise)


def memorizes(r: dict) -> bool:
    """Fits its noisy labels beyond their clean fraction, and ends `DROP` points below its
    best test accuracy."""
    return (float(r["train"]["accuracy"]) > 100 * clean_fraction(r)
            and float(r["best_test_accuracy"]) - float(r["test_accuracy"]) >= DROP)


def _text(field: str, value) -> str:
    if value is None:  # a built-in set's training images, own data's trusted images: all
        return "all" if field in ("train images", "meta_per_class") else "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def memorization(runs: list[tuple[str, dict]]) -> str:
    """One row per setting: what differs between the settings, seeds, accuracy on the noisy
    training labels, best and final test accuracy, their drop, whether it memorizes, time."""
    groups: dict[str, list[dict]] = {}
    for path, r in runs:
        if "train" not in r or "accuracy" not in r["train"]:
            raise ReportError(f"{path}: no training accuracy in results.json")
        key = json.dumps([train_images(r), protocol_fields(r["config"])], sort_keys=True)
        members = groups.setdefault(key, [])
        if any(m["config"]["seed"] == r["config"]["seed"] for m in members):
            raise ReportError(f"{path}: a second run of one setting with seed "
                              f"{r['config']['seed']}")
        members.append(r)
    protocols = [protocol_fields(g[0]["config"]) for g in groups.values()]
    shared = set.intersection(*(set(p) for p in protocols))
    varying = [k for k in shared if len({json.dumps(p[k]) for p in protocols}) > 1]
    varying = ([k for k in FIRST if k in varying]
               + sorted(k for k in varying if k not in FIRST))
    sizes = [train_images(g[0]) for g in groups.values()]
    show_size = any(s is not None for s in sizes)
    methods = _method_order({g[0]["config"]["method"] for g in groups.values()})

    def order(g):
        c = g[0]["config"]
        size = train_images(g[0])
        return (methods.index(c["method"]), size is None, size or 0,
                [json.dumps(c.get(k)) for k in varying])

    rows = []
    for g in sorted(groups.values(), key=order):
        g = sorted(g, key=lambda r: r["config"]["seed"])
        c = g[0]["config"]
        yes = sum(memorizes(r) for r in g)
        verdict = ("yes" if yes == len(g) else "no" if yes == 0
                   else f"{yes} of {len(g)} seeds")
        drop = [float(r["best_test_accuracy"]) - float(r["test_accuracy"]) for r in g]
        wall = np.array([r.get("wall_seconds_this_session", np.nan) for r in g], float)
        rows.append([
            *([_text("train images", train_images(g[0]))] if show_size else []),
            *(_text(k, c.get(k)) for k in varying),
            ",".join(str(r["config"]["seed"]) for r in g),
            f"{100 * np.mean([clean_fraction(r) for r in g]):.1f}",
            _mean_std([r["train"]["accuracy"] for r in g]),
            _mean_std([r["best_test_accuracy"] for r in g]),
            _mean_std([r["test_accuracy"] for r in g]),
            _mean_std(drop), verdict,
            f"{np.nanmean(wall) / 60:.1f}" if np.isfinite(wall).any() else "–"])
    header = [*(["train images"] if show_size else []), *(NAMES.get(k, k) for k in varying),
              "seeds", "clean labels (%)", "train acc. (%)", "best test (%)", "final test (%)",
              "drop", "memorizes", "minutes per run"]
    text_columns = int(show_size) + len(varying) + 1
    return "\n".join([
        _wrap("Per setting, mean ± sample std over its seeds: the accuracy on the noisy "
              "training labels at the end (train acc.), the best and the final epoch's test "
              "accuracy and their difference (drop). A run memorizes when its train acc. passes "
              f"the clean fraction of its labels and its drop is at least {DROP:g} points; "
              "minutes per run: wall time of its last session."), "",
        _table(header, rows, text_columns=text_columns)])
