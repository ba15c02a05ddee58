"""The exported weight function: standard consumers load it, it is read back as data only,
and a frozen weight function trains without a meta step."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.models import build_weight_net, weight_function

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)




@pytest.mark.e2e
def test_saved_model_cli_runs_the_export(tmp_path):
    net = build_weight_net(seed=5)
    path = weight_function.export_weight_fn(net, str(tmp_path / "weight_fn"))
    proc = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "run", "--dir", path, "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", "losses=[[0.1],[3.0]]"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.split("Result for output key weights:", 1)[1]
    got = np.array([float(x) for x in out.replace("[", " ").replace("]", " ").split()])
    expected = net(np.array([[0.1], [3.0]], np.float32)).numpy().ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # and tf.saved_model.load, the other standard consumer
    sig = tf.saved_model.load(path).signatures["serving_default"]
    np.testing.assert_allclose(sig(losses=tf.constant([[0.1], [3.0]]))["weights"].numpy().ravel(),
                               expected, rtol=1e-6)


def test_read_weight_net_takes_the_exported_values(tmp_path):
    net = build_weight_net(seed=9)
    path = weight_function.export_weight_fn(net, str(tmp_path / "weight_fn"))
    back = weight_function.read_weight_net(path)
    for a, b in zip(net.trainable_variables, back.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    losses = np.linspace(0, 8, 17)
    np.testing.assert_allclose(weight_function.load_weight_fn(path)(losses),
                               net(losses[:, None].astype(np.float32)).numpy()[:, 0])


class _Hostile(tf.Module):
    """A SavedModel with a weight net's variables whose graph writes a file when run."""

    def __init__(self, marker, seed=3):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.marker = marker
        self.w1 = tf.Variable(rng.normal(size=(1, 100)).astype("float32"))
        self.b1 = tf.Variable(rng.normal(size=(100,)).astype("float32"))
        self.w2 = tf.Variable(rng.normal(size=(100, 1)).astype("float32") / 10)
        self.b2 = tf.Variable(rng.normal(size=(1,)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="losses")])
    def __call__(self, losses):
        tf.io.write_file(self.marker, "the graph ran")
        h = tf.nn.relu(losses @ self.w1 + self.b1)
        return {"weights": tf.sigmoid(h @ self.w2 + self.b2)}


@pytest.mark.e2e
def test_a_weight_function_from_elsewhere_is_read_as_data_not_run(tmp_path, cli):
    marker = str(tmp_path / "written_by_the_graph")
    module = _Hostile(marker)
    path = str(tmp_path / "hostile")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    assert not os.path.exists(marker)
    net = weight_function.read_weight_net(path)
    assert not os.path.exists(marker)
    x = np.array([[0.5], [2.0]], np.float32)
    np.testing.assert_allclose(net(x).numpy(), module(tf.constant(x))["weights"].numpy(),
                               rtol=1e-6)
    os.remove(marker)  # the module's own call above wrote it: the reader never did

    work = tmp_path / "run"
    proc = cli.run("--flagfile=flags/smoke.cfg", "--model=tiny", "--epochs=1",
                   "--lr_decay_epochs=", f"--weight_fn={path}", f"--workdir={work}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not os.path.exists(marker)
    results = json.loads((work / "results.json").read_text())
    curve = weight_function.weight_curve(net)
    assert results["weight_curve"] == pytest.approx(curve, abs=1e-6)  # frozen: unchanged


@pytest.mark.e2e
def test_frozen_weight_function_trains_without_meta_step_or_meta_set(tmp_path, monkeypatch):
    from mwnet_tf.config import Config
    from mwnet_tf.training import epoch, loop

    source = build_weight_net(seed=11)
    path = weight_function.export_weight_fn(source, str(tmp_path / "source"))
    seen = []
    real = epoch.make_train_dataset
    monkeypatch.setattr(epoch, "make_train_dataset",
                        lambda d, **kw: seen.append(kw["with_meta"]) or real(d, **kw))
    config = Config(dataset="digits", model="tiny", epochs=1, batch_size=100,
                    meta_batch_size=50, progress_seconds=0.0,
                    method_params={"weight_fn": path})
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), log=lambda s: None)
    assert seen == [False]
    assert results["weight_curve"] == pytest.approx(weight_function.weight_curve(source), abs=1e-6)
    assert results["train"]["meta_loss"] == 0.0
    assert 0 < results["test_accuracy"] <= 100


@pytest.mark.e2e
@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "is not a SavedModel with variables"),
    (lambda p: os.makedirs(p), "is not a SavedModel with variables"),
    (lambda p: weight_function.export_weight_fn(build_weight_net(hidden=50, seed=0), p),
     "does not hold a 1-100-1 weight function"),
])
def test_bad_weight_fn_paths_are_one_line_errors_with_exit_2(tmp_path, make, needle, cli):
    path = str(tmp_path / "wfn")
    make(path)
    with pytest.raises(weight_function.WeightFnError, match=needle):
        weight_function.read_weight_net(path)
    work = tmp_path / "run"
    proc = cli.run("--flagfile=flags/smoke.cfg", "--model=tiny", f"--weight_fn={path}",
                   f"--workdir={work}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not work.exists()  # nothing left behind
