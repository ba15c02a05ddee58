"""Label issues of a trained run: every training sample ranked by how suspect its label is.

    table = compute_label_issues(method.eval_model(), method, data, batch_size)
    write_label_issues(os.path.join(workdir, files.LABEL_ISSUES), table)
    detection = label_issue_detection(table)      # None when the true labels are unknown
    log(render_head(table))

The file is in the order of `ORDER`, the same for every method: the final loss of the
evaluated classifier, largest first. The method's own signal (`Method.label_scores`: MW-Net's
learned weight of each loss, L2RW's meta-gradient weights, cleanlab's flag and
self-confidence, co-teaching's small-loss selection) is kept beside it, as the `weight`,
`flagged` and `suspicion` columns. Where the true labels are known (synthetic noise, CIFAR-N),
`label_issue_detection` measures both orders as detectors of wrong labels: AUROC, and
precision and recall among the top k, k the number of wrong labels.

TensorFlow is imported inside the functions that run the classifier, so that the table's
functions (metrics, writing, rendering) stay cheap to import.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from mwnet_tf.data.pipeline import eval_images, normalize
from mwnet_tf.files import write_csv

# The columns of every table, in order; "index" is "path" for data read from files. Tables
# of data whose true labels are known also have TRUTH_COLUMNS; a method may add columns of
# its own (confident learning: "self_confidence") after them.
COLUMNS = ("rank", "index", "given_label", "predicted_label", "predicted_probability", "loss",
           "weight", "flagged", "suspicion")
TRUTH_COLUMNS = ("true_label", "corrupted")
HEAD_ROWS = 10
# The order of every table. The kept detection tables (`mwnet-report --detection`) show that
# no method's own signal finds the wrong labels better than its run's final loss: MW-Net's
# and L2RW's weights and cleanlab's flags rank below their own losses in every setting, and a
# learned weight function that rises with the loss (as MW-Net's can on long-tailed or clean
# data) ranks the samples upside down. The other methods' own signal is the loss.
ORDER = "loss"


def truth_mask(data) -> np.ndarray | None:
    """bool [N]: the training samples whose true label is known, or None when none is.

    A `train_clean_known` attribute of the data, when it has one, says it. Otherwise: none
    when the realized noise rate is unknown (NaN: own data without a `true_label` column and
    no synthetic noise) and for Clothing1M (`resize_crop` files), whose `train_clean_y`
    repeats the noisy label where no clean one was published; all of them for the rest
    (synthetic noise, CIFAR-N's human labels, own data with true labels; own data with
    synthetic noise on top: the labels as given are the truth)."""
    known = getattr(data, "train_clean_known", None)
    if known is not None:
        known = np.asarray(known, bool)
        return known if known.any() else None
    if not np.isfinite(data.realized_noise_rate):
        return None
    if data.from_files and data.resize_crop:
        return None
    return np.ones(len(data.train_y), bool)


def classifier_outputs(model, data, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float64 [N, C], losses float64 [N]) of `model` in eval mode on the
    training images (decoded and center-cropped as the test set's when read from files),
    the losses the cross-entropy against the training labels (from the log-softmax, so a
    confident mistake has a finite loss)."""
    forward = tf.function(lambda images: tf.nn.log_softmax(tf.cast(
        model(normalize(images, data.mean, data.std), training=False), tf.float64)),
        reduce_retracing=True)
    x = data.train_x
    batches = (eval_images(data, x, batch_size) if data.from_files else
               (x[i:i + batch_size] for i in range(0, len(x), batch_size)))
    log_probs = [forward(images).numpy() for images in batches]
    log_probs = (np.concatenate(log_probs) if log_probs
                 else np.zeros((0, data.num_classes), np.float64))
    labels = np.asarray(data.train_y, np.int64)
    losses = -log_probs[np.arange(len(labels)), labels]
    return np.exp(log_probs), losses


def ranking(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The order of the samples, most suspect first: by `first`, then by `second` (both
    decreasing), then by position. NaN scores come last."""
    first = np.nan_to_num(np.asarray(first, np.float64), nan=-np.inf)
    second = np.nan_to_num(np.asarray(second, np.float64), nan=-np.inf)
    return np.lexsort((np.arange(len(first)), -second, -first))


def compute_label_issues(model, method, data, batch_size: int,
                         root: str | None = None) -> dict[str, np.ndarray]:
    """The label-issue table of the training set `data`, as columns in rank order (most
    suspect first: by `ORDER`, the loss, then by the method's suspicion): `COLUMNS`, then
    `TRUTH_COLUMNS` when true labels are known (`truth_mask`; -1 / False where one is not),
    then the method's extra columns.

    Args:
        model: the classifier to judge the labels with (`method.eval_model()`).
        method: the run's `Method`, whose `label_scores` give the weights and the ranking.
        data: the run's `BiasedData` (the method's `ctx.data`).
        batch_size: images per forward pass (the run's eval batch size).
        root: data read from files: the folder its paths are written relative to (the data
            set's, `data_dir.data_root`; None: as the data holds them).
    """
    probabilities, losses = classifier_outputs(model, data, batch_size)
    labels = np.asarray(data.train_y, np.int64)
    n = len(labels)
    scores = dict(method.label_scores(losses, probabilities, labels))
    suspicion = np.asarray(scores.pop("suspicion"), np.float64)
    weight = scores.pop("weight", None)
    flagged = scores.pop("flagged", None)
    for name, values in (("suspicion", suspicion), ("weight", weight), ("flagged", flagged),
                         *scores.items()):
        if values is not None and np.shape(values) != (n,):
            raise ValueError(f"{method.name}.label_scores gave {name} of shape "
                             f"{np.shape(values)}, not ({n},)")
    order = ranking(losses, suspicion)
    predicted = np.argmax(probabilities, axis=1) if n else np.zeros(0, np.int64)
    where = "path" if data.from_files else "index"
    table = {
        "rank": np.arange(1, n + 1),
        where: (relative_paths(data.train_x, root) if data.from_files
                else data.train_index)[order],
        "given_label": labels[order],
        "predicted_label": predicted[order],
        "predicted_probability": probabilities[np.arange(n), predicted][order] if n else
        np.zeros(0),
        "loss": losses[order],
        "weight": None if weight is None else np.asarray(weight, np.float64)[order],
        "flagged": None if flagged is None else np.asarray(flagged, bool)[order],
        "suspicion": suspicion[order],
    }
    known = truth_mask(data)
    if known is not None:
        true = np.where(known, data.train_clean_y, -1).astype(np.int64)
        table["true_label"] = true[order]
        table["corrupted"] = (known & (data.train_clean_y != labels))[order]
    for name, values in scores.items():
        values = np.asarray(values)
        table[name] = (values.astype(bool) if values.dtype == bool
                       else values.astype(np.float64))[order]
    return table


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else format(float(value), ".8g")
    return str(value)


def table_rows(table: dict):
    """The table's rows as lists of CSV cells (an absent column, e.g. a method without
    weights, as empty cells)."""
    names = list(table)
    n = len(table["rank"])
    for i in range(n):
        yield ["" if table[k] is None else _cell(table[k][i]) for k in names]


def write_label_issues(path: str, table: dict) -> str:
    """Writes the table as CSV to `path` (atomically, `files.write_csv`)."""
    return write_csv(path, list(table), table_rows(table))


# --- the ranking as a detector of wrong labels ---------------------------------------------

def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of `scores` in increasing order, tied values sharing their mean rank."""
    scores = np.asarray(scores, np.float64)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]          # each tie group is [start, end)
    mean_rank = (starts + 1 + ends) / 2.0           # mean of ranks start + 1 .. end
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` (higher = more likely positive) against the bool
    `positives`: the probability that a random positive scores above a random negative, ties
    counting one half (the Mann-Whitney U statistic). None without a positive or a
    negative."""
    positives = np.asarray(positives, bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def detection_metrics(order_scores: np.ndarray, positives: np.ndarray) -> dict | None:
    """The ranking as a detector of wrong labels, both arrays in rank order (most suspect
    first): `order_scores` the score the ranking sorts by (ties: equal values), `positives`
    whether each label is wrong. Returns {auroc, precision_at_k, recall_at_k, k, n}, k the
    number of wrong labels (precision and recall among the top k, which are then equal), or
    None without a wrong label."""
    positives = np.asarray(positives, bool)
    k = int(positives.sum())
    if k == 0:
        return None
    hits = int(positives[:k].sum())
    area = auroc(order_scores, positives)
    return {"auroc": None if area is None else round(area, 6),
            "precision_at_k": round(hits / k, 6), "recall_at_k": round(hits / k, 6),
            "k": k, "n": int(len(positives))}


def label_issue_detection(table: dict) -> dict | None:
    """`detection_metrics` of a label-issue table over the samples whose true label is
    known (for results.json as `label_issue_detection`), or None when none is known or no
    known label is wrong. `auroc`, `precision_at_k`: the file's order, tied (loss,
    suspicion) pairs tied. Beside them `loss_auroc` and `loss_precision_at_k`, the ranking by
    loss alone, and `signal_auroc` and `signal_precision_at_k`, the ranking by the method's
    own signal (the `suspicion` column, ties by loss): what the file's order is chosen
    against."""
    if "corrupted" not in table:
        return None
    known = table["true_label"] >= 0
    suspicion = np.nan_to_num(table["suspicion"][known], nan=-np.inf)
    losses = np.nan_to_num(table["loss"][known], nan=-np.inf)
    corrupted = table["corrupted"][known]
    out = detection_metrics(_tied_ranks(losses, suspicion), corrupted)
    if out is not None:
        by_loss = np.argsort(-losses, kind="stable")
        baseline = detection_metrics(losses[by_loss], corrupted[by_loss])
        out.update(loss_auroc=baseline["auroc"], loss_precision_at_k=baseline["precision_at_k"])
        by_signal = ranking(suspicion, losses)
        signal = detection_metrics(_tied_ranks(suspicion[by_signal], losses[by_signal]),
                                   corrupted[by_signal])
        out.update(signal_auroc=signal["auroc"], signal_precision_at_k=signal["precision_at_k"])
    return out


def _tied_ranks(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A score of rows already in rank order: decreasing, equal (first, second) pairs equal."""
    new_group = np.r_[True, (first[1:] != first[:-1]) | (second[1:] != second[:-1])]
    return -np.cumsum(new_group)


def relative_paths(paths, root: str | None) -> np.ndarray:
    """`paths` relative to the folder `root` (as they are when None)."""
    paths = np.asarray(paths)
    if root is None or not len(paths):
        return paths
    base = os.path.abspath(root)
    return np.asarray([os.path.relpath(os.path.abspath(str(p)), base) for p in paths])


def render_head(table: dict, rows: int = HEAD_ROWS) -> str:
    """The first `rows` rows of the table as fixed-width text (for the log), cells whole."""
    names = [k for k in list(table) if table[k] is not None]
    n = len(table["rank"])
    body = [[_cell(table[k][i]) for k in names] for i in range(min(rows, n))]
    widths = [max([len(k)] + [len(r[j]) for r in body]) for j, k in enumerate(names)]
    lines = [f"suspect labels: {n} training samples, the {len(body)} most suspect (ranked by "
             f"{ORDER}):",
             "  ".join(k.rjust(w) for k, w in zip(names, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)

