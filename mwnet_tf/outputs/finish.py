"""What a finished run leaves its user: the label issues of the training set and the classifier
to take home, in one call for the end of a run (chief only, after `method.export`):

    results.update(finish.finish_run(method, data, workdir,
                                       batch_size=config.eval_batch_size,
                                       dataset=config.dataset, log=log))

writes `label_issues.csv` (`label_issues`), `classifier.keras`, `classifier.json` and
`classifier_serving/` (`serving`), logs the ten most suspect labels, and returns the entries
of results.json: `label_issue_detection` ({auroc, precision_at_k, recall_at_k, k, n}) where
the true labels are known, else nothing.
"""

from __future__ import annotations

import os

import numpy as np

from mwnet_tf import files
from mwnet_tf.outputs import label_issues, serving


def with_class_names(table: dict, class_names) -> dict:
    """The table with `given_class` and `predicted_class` (the names of the labels) after
    `given_label` and `predicted_label`."""
    names = np.asarray([str(n) for n in class_names])
    out = {}
    for key, column in table.items():
        out[key] = column
        if key in ("given_label", "predicted_label") and column is not None:
            out[key.replace("_label", "_class")] = names[np.asarray(column, np.int64)]
    return out


def finish_run(method, data, workdir: str, *, batch_size: int, dataset: str | None = None,
               class_names=None, log=print, serving_model: bool = True,
               data_root: str | None = None) -> dict:
    """Writes the run's take-home files into `workdir`; returns entries for results.json.

    Args:
        method: the run's `Method` (its `eval_model()` is the classifier judged and exported).
        data: the run's `BiasedData`.
        workdir: the run folder.
        batch_size: images per forward pass (the run's `eval_batch_size`).
        dataset: the data set's name, for its class names (`data.class_names.default_class_names`).
        class_names: the class names, if known otherwise.
        log: where the head of label_issues.csv goes.
        serving_model: also write the serving SavedModel.
        data_root: data read from files: the folder label_issues.csv's paths are relative to.
    """
    model = method.eval_model()
    table = label_issues.compute_label_issues(model, method, data, batch_size, root=data_root)
    if class_names is not None:
        table = with_class_names(table, class_names)
    label_issues.write_label_issues(os.path.join(workdir, files.LABEL_ISSUES), table)
    log(label_issues.render_head(table))
    serving.export_classifier(model, data, workdir, class_names=class_names, dataset=dataset,
                              serving=serving_model)
    detection = label_issues.label_issue_detection(table)
    if detection is None:
        return {}
    log(f"wrong-label detection: AUROC {detection['auroc']}, precision and recall at "
        f"k = {detection['k']} wrong labels {detection['precision_at_k']:.3f}")
    return {"label_issue_detection": detection}
