"""A `.keras` file from elsewhere is checked as data before Keras sees it
(`mwnet_tf.models.keras_file`): nothing it names is imported, a model of the project's own layers
loads, a model with two inputs or outputs is refused up front."""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from hostile_files import PLANTED, plant_function, plant_module, plant_tfsm, rewrite_config
from hostile_files import dense_model as _dense_model

from mwnet_tf.models import build_classifier, keras_file
from mwnet_tf.outputs import prediction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_rewrite = rewrite_config
_plant_module, _plant_function, _plant_tfsm = plant_module, plant_function, plant_tfsm


@pytest.mark.parametrize("name,shape", [("mlp", (8,)), ("cnn", (8, 8, 3)),
                                        ("resnet32", (32, 32, 3))])
def test_the_projects_own_models_pass_the_check(tmp_path, name, shape):
    path = str(tmp_path / "m.keras")
    build_classifier(name, 10, shape, seed=0).save(path)
    config = keras_file.read_config(path, "m")
    keras_file.check_config(config, "m")  # raises if refused
    model = keras_file.load_keras_file(path, "m")
    assert model.count_params() > 0 and len(model.outputs) == 1


@pytest.mark.parametrize("edit,match", [
    (_plant_module, "names planted_mod.Evil"),
    (_plant_function, "names the function keras.models.load_model"),
    (_plant_tfsm, "names keras.layers.TFSMLayer"),
])
def test_a_config_naming_other_code_is_refused_before_keras_reads_it(tmp_path, edit, match):
    path = str(tmp_path / "m.keras")
    _dense_model(path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=match) as e:
        keras_file.load_keras_file(path, "--model=m.keras")
    assert "\n" not in str(e.value) and str(e.value).startswith("--model=m.keras: ")


def test_damaged_oversized_and_non_zip_files_are_one_line(tmp_path):
    cases = {"junk.keras": b"not a zip", "nocfg.keras": None, "badjson.keras": b"{nope",
             "list.keras": b"[1, 2]"}
    for name, cfg in cases.items():
        path = tmp_path / name
        if name == "junk.keras":
            path.write_bytes(cfg)
        else:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("metadata.json", "{}")
                if cfg is not None:
                    zf.writestr("config.json", cfg)
    for name, match in [("junk.keras", "not a Keras 3 model file"),
                        ("nocfg.keras", "has no config.json"),
                        ("badjson.keras", "not readable JSON"),
                        ("list.keras", "not a model's config"),
                        ("none.keras", "no such file")]:
        with pytest.raises(ValueError, match=match):
            keras_file.read_config(str(tmp_path / name), name)
    deep = {"class_name": "Dense", "module": "keras.layers", "config": {}}
    for _ in range(keras_file.MAX_DEPTH + 5):
        deep = {"x": [deep]}
    with pytest.raises(ValueError, match="nests deeper"):
        keras_file.check_config(deep, "deep")


def test_an_oversized_config_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    path = str(tmp_path / "m.keras")
    _dense_model(path)
    monkeypatch.setattr(keras_file, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(ValueError, match="more than the 100 a model's config may have"):
        keras_file.read_config(path, "m")


def test_two_inputs_or_two_outputs_are_refused(tmp_path):
    a, b = keras.Input((5,)), keras.Input((5,))
    two_in = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))
    two_out = keras.Model(a, [keras.layers.Dense(3)(a), keras.layers.Dense(3)(a)])
    for model, match in [(two_in, r"has 2 input\(s\) and 1 output"),
                         (two_out, r"has 1 input\(s\) and 2 output")]:
        model.save(tmp_path / "m.keras")
        loaded = keras_file.load_keras_file(str(tmp_path / "m.keras"), "m")
        with pytest.raises(ValueError, match=match):
            keras_file.check_single_io(loaded, "m")


def _npz(path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)).astype(np.float32), np.arange(30) % 3
    np.savez(path, x_train=x, y_train=y, x_meta=rng.normal(size=(30, 5)).astype(np.float32),
             y_meta=y)


@pytest.mark.e2e
def test_a_planted_module_is_never_imported_by_train_or_predict(tmp_path):
    """The file names a module on PYTHONPATH that writes a marker when imported: both
    commands end in one error line and the marker never appears."""
    planted = tmp_path / "site"
    planted.mkdir()
    (planted / "planted_mod.py").write_text(PLANTED)
    marker = tmp_path / "marker"
    model = str(tmp_path / "net.keras")
    _dense_model(model)
    _rewrite(model, _plant_module)
    _npz(tmp_path / "data.npz")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([REPO, str(planted), os.environ.get("PYTHONPATH", "")])}
    # the planted module does run when imported (the test can fail)
    subprocess.run([sys.executable, "-c", "import planted_mod"], env=env, check=True)
    assert marker.exists()
    marker.unlink()
    train = subprocess.run(
        [sys.executable, "-m", "mwnet_tf.train", f"--dataset={tmp_path / 'data.npz'}",
         f"--model={model}", "--epochs=1", "--batch_size=10", "--meta_batch_size=3",
         f"--workdir={tmp_path / 'run'}"], env=env, capture_output=True, text=True, cwd=REPO,
        timeout=300)
    lines = [ln for ln in train.stderr.splitlines() if ln.strip()]
    assert train.returncode == 2, train.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "planted_mod" in lines[0]
    assert not marker.exists()
    assert not (tmp_path / "run").exists()
    # predict: a run folder whose classifier.keras is the planted file
    run = tmp_path / "exported"
    _export_run(run)
    _rewrite(str(run / "classifier.keras"), _plant_module)
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 5), np.float32))
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "-m", "mwnet_tf.predict", str(run), "--data_dir",
                           str(tmp_path / "in.npz"), "--out", str(out)], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(errors) == 1 and "planted_mod" in errors[0] and "Traceback" not in proc.stderr
    assert not marker.exists() and not out.exists()


def _export_run(folder):
    """A run folder with classifier.keras and classifier.json of a 5-feature model."""
    from mwnet_tf.data import Dataset, make_biased_data
    from mwnet_tf.outputs import serving
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    ds = Dataset(name="synthetic", train_x=rng.normal(size=(len(y), 5)).astype(np.float32),
                 train_y=y.astype(np.int64), test_x=np.zeros((3, 5), np.float32),
                 test_y=np.arange(3, dtype=np.int64), num_classes=3, mean=(0.0,) * 5,
                 std=(1.0,) * 5, augment=False)
    data = make_biased_data(ds, noise="uniform", rate=0.0, meta_per_class=2, seed=0)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(4)(inputs)))
    folder.mkdir()
    serving.export_classifier(model, data, str(folder), class_names=["a", "b", "c"],
                              serving=False)


def test_predict_refuses_a_classifier_naming_a_planted_module(tmp_path, monkeypatch):
    planted = tmp_path / "site"
    planted.mkdir()
    (planted / "planted_mod.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(planted))
    monkeypatch.setenv("MARKER", str(tmp_path / "marker"))
    run = tmp_path / "run"
    run.mkdir()
    _dense_model(str(run / "classifier.keras"))
    _rewrite(str(run / "classifier.keras"), _plant_module)
    with pytest.raises(prediction.PredictError, match="names planted_mod.Evil") as e:
        prediction.load_classifier(str(run), {"input_shape": [5]})
    assert "\n" not in str(e.value) and "cannot load the classifier" in str(e.value)
    assert not (tmp_path / "marker").exists() and "planted_mod" not in sys.modules
