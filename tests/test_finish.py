"""The end of a real (tiny) run: finish.finish_run after train_and_evaluate, then predict
from the run folder."""

import csv
import json
import os

import numpy as np
import pytest

from mwnet_tf import files
from mwnet_tf.config import Config
from mwnet_tf.methods import l2rw, mwnet
from mwnet_tf.outputs import finish, prediction
from mwnet_tf.training import loop

RUN = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
           lr_decay_epochs=(1,), batch_size=100, meta_batch_size=50, progress_seconds=0.0,
           seed=3, tensorboard_images=False)


@pytest.mark.e2e
@pytest.mark.parametrize("module", [mwnet, l2rw], ids=["mwnet", "l2rw"])
def test_finish_run_after_a_run_then_predict_the_test_set(module, monkeypatch, tmp_path):
    built = []

    class Kept(module.METHOD):
        def __init__(self, ctx):
            super().__init__(ctx)
            built.append(self)

    monkeypatch.setattr(module, "METHOD", Kept)
    config = Config(**dict(RUN, method=module.METHOD.name))
    data = loop.load_data(config)
    workdir = str(tmp_path / "run")
    results = loop.train_and_evaluate(config, workdir, data=data, log=lambda *a: None)
    method = built[-1]

    logged = []
    extra = finish.finish_run(method, data, workdir, batch_size=config.eval_batch_size,
                                dataset=config.dataset, log=logged.append)
    detection = extra["label_issue_detection"]
    assert detection["k"] == int(data.corrupted.sum()) and detection["n"] == len(data.train_y)
    # the classifier has learned: its losses rank the wrong labels first
    assert detection["loss_auroc"] > 0.75
    # the file is in loss order, whatever the method's weights say
    assert detection["auroc"] == pytest.approx(detection["loss_auroc"], abs=1e-4)  # ties apart
    if module is l2rw:  # its meta-gradient weights rank them too
        assert detection["signal_auroc"] > 0.75
    else:  # after two epochs MW-Net's weight function is still nearly flat (about 0.47-0.55)
        # and rising with the loss, so ranking by low weight inverts the ranking by loss
        curve = results["weight_curve"]
        assert (detection["signal_auroc"] < 0.5) == (curve["8"] > curve["1"])
        assert results["weight_function_decreasing"] == (
            results["weight_function_trend"] == "falls")
    assert "most suspect" in logged[0]
    with open(os.path.join(workdir, files.LABEL_ISSUES), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data.train_y) and rows[0]["weight"] != ""

    spec = json.load(open(os.path.join(workdir, files.CLASSIFIER_SPEC)))
    assert spec["class_names"] == [str(i) for i in range(10)]
    np.savez(tmp_path / "test.npz", x_test=data.test_x[..., 0])  # [N, 8, 8], one channel
    out = str(tmp_path / "predictions.csv")
    assert prediction.predict(workdir, str(tmp_path / "test.npz"), out) == len(data.test_y)
    with open(out, newline="") as f:
        predicted = np.array([int(r["predicted_label"]) for r in csv.DictReader(f)])
    # the exported classifier is the one the run evaluated
    assert 100 * np.mean(predicted == data.test_y) == pytest.approx(results["test_accuracy"],
                                                                    abs=1e-6)
