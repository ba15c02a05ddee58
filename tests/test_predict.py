"""python -m mwnet_tf.predict: a run's classifier.keras on an .npz file or a folder of images,
and clean failures on bad input."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mwnet_tf import files
from mwnet_tf.data import Dataset, make_biased_data
from mwnet_tf.data.pipeline import load_images, normalize
from mwnet_tf.models import build_classifier
from mwnet_tf.outputs import prediction, serving

NAMES = ["ant", "bee", "cat"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 8)
    ds = Dataset(name="synthetic", train_x=rng.integers(0, 256, (len(y), *shape), np.uint8),
                 train_y=y.astype(np.int64), test_x=rng.integers(0, 256, (3, *shape), np.uint8),
                 test_y=np.arange(3, dtype=np.int64), num_classes=3,
                 mean=(0.45,) * shape[-1], std=(0.25,) * shape[-1], augment=False)
    return make_biased_data(ds, noise="uniform", rate=0.3, meta_per_class=2, seed=0)


def _export(data, folder, seed=1):
    model = build_classifier("tiny", 3, data.input_shape, seed=seed)
    model(normalize(load_images(data, data.train_x), data.mean, data.std), training=True)
    for var in model.non_trainable_variables:
        var.assign(var * 0.5 + 0.2)
    serving.export_classifier(model, data, str(folder), class_names=NAMES, serving=False)
    return model


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """A run of 6x5 one-channel images: (run folder, model, data)."""
    data = _data((6, 5, 1))
    run = tmp_path_factory.mktemp("gray_run")
    return run, _export(data, run), data


@pytest.fixture(scope="module")
def color(tmp_path_factory):
    data = _data((6, 5, 3))
    run = tmp_path_factory.mktemp("color_run")
    return run, _export(data, run), data


def _probs(model, images, data):
    return tf.nn.softmax(model(normalize(images, data.mean, data.std), training=False)).numpy()


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_rows(rows, expected, id_column, ids):
    assert [r[id_column] for r in rows] == ids
    assert [int(r["predicted_label"]) for r in rows] == list(np.argmax(expected, 1))
    assert [r["predicted_class"] for r in rows] == [NAMES[k] for k in np.argmax(expected, 1)]
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected.max(1),
                               rtol=1e-5)


# --- inputs ---------------------------------------------------------------------------------

def test_npz_of_images(gray, tmp_path):
    run, model, data = gray
    x = np.random.default_rng(3).integers(0, 256, (7, 6, 5, 1), np.uint8)
    np.savez(tmp_path / "in.npz", x=x)
    out = tmp_path / "p.csv"
    assert prediction.predict(str(run), str(tmp_path / "in.npz"), str(out), batch_size=3) == 7
    _check_rows(_read(out), _probs(model, x, data), "index", [str(i) for i in range(7)])


def test_npz_x_test_without_the_channel_axis(gray, tmp_path):
    run, model, data = gray
    x = np.random.default_rng(4).integers(0, 256, (4, 6, 5), np.uint8)
    np.savez(tmp_path / "in.npz", x_test=x, y_test=np.zeros(4))
    out = tmp_path / "p.csv"
    prediction.predict(str(run), str(tmp_path / "in.npz"), str(out))
    _check_rows(_read(out), _probs(model, x[..., None], data), "index",
                [str(i) for i in range(4)])


def _save(image: np.ndarray, path, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(path, fmt)


def test_a_folder_of_images_recursively_each_format(color, tmp_path):
    run, model, data = color
    rng = np.random.default_rng(5)
    same = rng.integers(0, 256, (6, 5, 3), np.uint8)        # the data set's size: as it is
    bigger = rng.integers(0, 256, (12, 9, 3), np.uint8)     # resized
    folder = tmp_path / "images"
    _save(same, folder / "a.png", "PNG")
    _save(same, folder / "sub" / "b.bmp", "BMP")
    _save(bigger, folder / "sub" / "deeper" / "c.GIF", "GIF")
    _save(bigger, folder / "d.jpg", "JPEG")
    (folder / ".DS_Store.png").write_text("hidden: ignored")  # (other files: test_image_files)
    out = tmp_path / "p.csv"
    assert prediction.predict(str(run), str(folder), str(out)) == 4
    rows = _read(out)
    ids = ["a.png", "d.jpg", os.path.join("sub", "b.bmp"),
           os.path.join("sub", "deeper", "c.GIF")]
    decoded = [tf.io.decode_image((folder / i).read_bytes(), channels=3,
                                  expand_animations=False) for i in ids]
    images = np.stack([d if tuple(d.shape[:2]) == (6, 5) else serving.resize_image(d, (6, 5))
                       for d in decoded])
    np.testing.assert_array_equal(images[0], same)
    _check_rows(rows, _probs(model, images, data), "path", ids)


def test_a_folder_of_color_images_for_a_gray_classifier(gray, tmp_path):
    run, model, data = gray
    rgb = np.random.default_rng(6).integers(0, 256, (6, 5, 3), np.uint8)
    _save(rgb, tmp_path / "f" / "x.png", "PNG")
    out = tmp_path / "p.csv"
    prediction.predict(str(run), str(tmp_path / "f"), str(out))
    gray_image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))),
                         tf.uint8).numpy()
    _check_rows(_read(out), _probs(model, gray_image[None], data), "path", ["x.png"])


def test_data_read_from_files_predict_as_the_test_set_is_read(tmp_path):
    # Clothing1M-like: JPEG files, resized to a square and center-cropped by the pipeline.
    base = _data((8, 8, 3))
    rng = np.random.default_rng(7)
    folder = tmp_path / "jpegs"
    paths = []
    for i, (h, w) in enumerate([(20, 14), (9, 9), (31, 40)]):
        path = str(folder / f"{i}.jpg")
        _save(rng.integers(0, 256, (h, w, 3), np.uint8), path, "JPEG")
        paths.append(path)
    files = dataclasses.replace(base, image_size=8, train_x=np.array(paths))
    run = tmp_path / "run"
    model = _export(files, run)
    out = tmp_path / "p.csv"
    prediction.predict(str(run), str(folder), str(out))
    expected = _probs(model, load_images(files, np.array(paths)), files)
    _check_rows(_read(out), expected, "path", ["0.jpg", "1.jpg", "2.jpg"])


def test_own_image_folders_predict_as_the_pipeline_decodes_them(tmp_path):
    # An own image folder (resize_crop False): PNG/BMP/GIF/JPEG resized straight to
    # image_size, turned gray for a one-channel data set (`pipeline.decode_image`).
    base = _data((8, 8, 1))
    rng = np.random.default_rng(9)
    folder = tmp_path / "own"
    paths = []
    for i, (fmt, ext, shape) in enumerate([("PNG", "png", (11, 7, 3)), ("BMP", "bmp", (8, 8, 3)),
                                           ("GIF", "gif", (5, 9, 3)),
                                           ("PNG", "png", (13, 13, 1))]):
        path = str(folder / f"{i}.{ext}")
        _save(rng.integers(0, 256, shape, np.uint8), path, fmt)
        paths.append(path)
    own = dataclasses.replace(base, image_size=8, channels=1, resize_crop=False,
                              train_x=np.array(paths))
    run = tmp_path / "run"
    model = _export(own, run)
    spec = serving.input_spec(model, own)
    assert spec["raw_shape"] == [None, None, 1] and spec["resize"] is None
    out = tmp_path / "p.csv"
    prediction.predict(str(run), str(folder), str(out))
    expected = _probs(model, load_images(own, np.array(paths)), own)
    _check_rows(_read(out), expected, "path", ["0.png", "1.bmp", "2.gif", "3.png"])
    # the serving model resizes raw images of any size the same way
    path = serving.export_serving(model, spec, str(tmp_path / "s"))
    fn = tf.saved_model.load(path).signatures[serving.SIGNATURE]
    raw = rng.integers(0, 256, (2, 12, 10, 1), np.uint8)
    np.testing.assert_allclose(
        fn(**{serving.INPUT: tf.constant(raw)})[serving.OUTPUT],
        _probs(model, serving.resize_image(raw, (8, 8)), own), rtol=1e-5, atol=1e-6)


# --- bad input --------------------------------------------------------------------------------

def _fails(match, run, source, out):
    with pytest.raises(prediction.PredictError, match=match) as e:
        prediction.predict(str(run), str(source), str(out))
    assert "\n" not in str(e.value)


def test_bad_input_is_one_line_and_leaves_the_output_alone(gray, tmp_path):
    run, _, _ = gray
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 6, 5, 1), np.uint8))
    _fails("no such run folder", tmp_path / "nope", good, out)
    (tmp_path / "empty_run").mkdir()
    _fails("no classifier.keras", tmp_path / "empty_run", good, out)
    _fails("no such file", run, tmp_path / "missing.npz", out)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    _fails("not a readable .npz", run, tmp_path / "junk.npz", out)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    _fails("not a readable .npz", run, tmp_path / "obj.npz", out)
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, 6, 5, 1), np.uint8))
    _fails("no array x or x_test", run, tmp_path / "nox.npz", out)
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 5, 6, 1), np.uint8))
    _fails(r"has shape \[2, 5, 6, 1\]; the classifier takes \[N, 6, 5, 1\]", run,
           tmp_path / "shape.npz", out)
    np.savez(tmp_path / "float.npz", x=np.zeros((2, 6, 5, 1), np.float32))
    _fails("integers in 0-255", run, tmp_path / "float.npz", out)
    bad_images = tmp_path / "imgs"
    _save(np.zeros((6, 5, 1), np.uint8), bad_images / "ok.png", "PNG")
    (bad_images / "broken.png").write_bytes(b"\x89PNG but not really")
    _fails("broken.png: not an image", run, bad_images, out)
    (tmp_path / "no_images").mkdir()
    _fails("holds no image files", run, tmp_path / "no_images", out)
    _fails("no such folder", run, good, tmp_path / "nowhere" / "p.csv")
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)).count("p.csv") == 1
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_a_damaged_classifier_file_is_a_clean_error(gray, tmp_path):
    run, _, _ = gray
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / files.CLASSIFIER_SPEC).write_bytes((run / files.CLASSIFIER_SPEC).read_bytes())
    (broken / files.CLASSIFIER).write_bytes(b"PK\x03\x04 damaged")
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 6, 5, 1), np.uint8))
    _fails("cannot load the classifier", broken, good, tmp_path / "p.csv")
    (broken / files.CLASSIFIER_SPEC).write_text("{not json")
    _fails("not a readable classifier description", broken, good, tmp_path / "p.csv")
    (broken / files.CLASSIFIER_SPEC).write_text("[1, 2]")
    _fails("not a valid classifier description .a JSON object is needed, got list",
           broken, good, tmp_path / "p.csv")


# --- the command ------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mwnet_tf.predict", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=ENV)


@pytest.mark.e2e
def test_help_exits_0_without_tensorflow():
    proc = _cli("--help")
    assert proc.returncode == 0 and "--data_dir" in proc.stdout and "--out" in proc.stdout
    check = subprocess.run([sys.executable, "-c", "import sys, mwnet_tf.predict; "
                            "print('tensorflow' in sys.modules)"],
                           capture_output=True, text=True, env=ENV)
    assert check.stdout.strip() == "False"


@pytest.mark.e2e
def test_command_writes_predictions_and_fails_in_one_line(gray, tmp_path):
    run, model, data = gray
    x = np.random.default_rng(8).integers(0, 256, (3, 6, 5, 1), np.uint8)
    np.savez(tmp_path / "in.npz", x=x)
    out = tmp_path / "p.csv"
    proc = _cli(run, "--data_dir", tmp_path / "in.npz", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 predictions written" in proc.stdout
    _check_rows(_read(out), _probs(model, x, data), "index", ["0", "1", "2"])

    for args in ([tmp_path / "nope", "--data_dir", tmp_path / "in.npz"],
                 [run, "--data_dir", tmp_path / "missing.npz"]):
        proc = _cli(*args, "--out", tmp_path / "q.csv")
        assert proc.returncode == 1
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "q.csv").exists()
    proc = _cli(run)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


# --- the output never replaces an input or a file of the run folder --------------------------

def _digest(path):
    return {os.path.relpath(p, path): open(p, "rb").read()
            for p in prediction._files_under(path)} if os.path.isdir(path) else \
        open(path, "rb").read()


def test_out_that_would_replace_an_input_or_a_run_file_is_refused_first(gray, tmp_path):
    run, _, _ = gray
    good = tmp_path / "in.npz"
    np.savez(good, x=np.zeros((2, 6, 5, 1), np.uint8))
    images = tmp_path / "imgs"
    _save(np.zeros((6, 5, 1), np.uint8), images / "sub" / "a.png", "PNG")
    table = tmp_path / "table" / "data.csv"
    _save(np.zeros((6, 5, 1), np.uint8), tmp_path / "table" / "img" / "b.png", "PNG")
    table.write_text("path,label\nimg/b.png,bee\n")
    os.symlink(good, tmp_path / "link.csv")
    os.link(run / files.CLASSIFIER, tmp_path / "hard.csv")
    os.link(tmp_path / "table" / "img" / "b.png", tmp_path / "listed.csv")
    cases = [  # (run, inputs, out, what the message says)
        (run, good, good, "is the input"),
        (run, good, tmp_path / "link.csv", "is the input"),
        (run, images, images / "sub" / "a.png", "is the input"),
        (run, images, images, "is a folder"),
        (run, table, table, "is the input"),
        (run, table, tmp_path / "listed.csv", "is an input listed in"),
        (run, good, run / files.CLASSIFIER, "is a file of the run folder"),
        (run, good, run / files.CLASSIFIER_SPEC, "is a file of the run folder"),
        (run, good, tmp_path / "hard.csv", "is a file of the run folder"),
        (tmp_path / "no_run", good, good, "is the input"),  # refused before the run is read
    ]
    watched = [run, good, images, tmp_path / "table"]
    before = [_digest(str(p)) for p in watched]
    for run_dir, source, out, message in cases:
        with pytest.raises(prediction.OutputError, match=message) as e:
            prediction.predict(str(run_dir), str(source), str(out))
        assert "\n" not in str(e.value) and str(out) in str(e.value)
    assert [_digest(str(p)) for p in watched] == before
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    # a new file in the run folder or beside the inputs is fine
    for out in (run / "predictions.csv", images / "predictions.csv"):
        assert prediction.predict(str(run), str(good), str(out)) == 2
        os.remove(out)


# --- a tampered classifier.json -------------------------------------------------------------

def _tampered(run, folder, change):
    spec = json.loads((run / files.CLASSIFIER_SPEC).read_text())
    change(spec)
    folder.mkdir()
    (folder / files.CLASSIFIER).write_bytes((run / files.CLASSIFIER).read_bytes())
    (folder / files.CLASSIFIER_SPEC).write_text(json.dumps(spec))
    return folder


def _set(**values):
    return lambda spec: spec.update(values)


TAMPERED = [
    ("not an object", lambda spec: spec.clear() or spec.update(a=1), "no class_names"),
    ("no mean", lambda spec: spec.pop("mean"), "no mean"),
    ("class names not strings", _set(class_names=[1, 2, 3]), "list of non-empty strings"),
    ("class names a string", _set(class_names="ant"), "list of non-empty strings"),
    ("a class name twice", _set(class_names=["ant", "ant", "cat"]), "a name twice"),
    ("num_classes disagrees", _set(num_classes=4), "num_classes is 4 but there are 3"),
    ("fewer names and num_classes", _set(class_names=["ant", "bee"], num_classes=2),
     r"outputs of shape \(None, 3\), but classifier.json names 2 classes"),
    ("mean NaN", _set(mean=[float("nan")]), "mean must be a list of 1 finite number"),
    ("mean a string", _set(mean="0.5"), "mean must be"),
    ("mean of strings", _set(mean=["0.5"]), "mean must be"),
    ("mean too long", _set(mean=[0.1, 0.2, 0.3]), "mean must be a list of 1 finite"),
    ("std zero", _set(std=[0.0]), "std must be positive"),
    ("std infinite", _set(std=[float("inf")]), "std must be a list"),
    ("std a bool", _set(std=[True]), "std must be a list"),
    ("input shape of strings", _set(input_shape=["6", 5, 1]), "input_shape must be a list"),
    ("input shape negative", _set(input_shape=[-6, 5, 1], raw_shape=[-6, 5, 1]),
     "input_shape must be a list"),
    ("input shape another model's", _set(input_shape=[5, 6, 1], raw_shape=[5, 6, 1]),
     r"the classifier takes \[N, 5, 6, 1\]"),
    ("raw shape disagrees", _set(raw_shape=[6, 5, 3]), "raw_shape"),
    ("raw dtype of the other kind", _set(raw_dtype="float32"), "raw_dtype 'float32'"),
    ("unknown kind", _set(kind="audio"), "unknown input kind"),
    ("image size a string", _set(image_size="8"), "image_size must be a positive integer"),
    ("resize without image size", _set(resize=8), "resize is set without image_size"),
    ("dataset a number", _set(dataset=3), "dataset must be a string"),
    ("another format", _set(format=2), "format 2"),
]


@pytest.mark.parametrize("change,match", [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_a_tampered_classifier_json_is_one_line(gray, tmp_path, change, match):
    run, _, _ = gray
    folder = _tampered(run, tmp_path / "run", change)
    good = tmp_path / "in.npz"
    np.savez(good, x=np.zeros((2, 6, 5, 1), np.uint8))
    _fails(match, folder, good, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_the_specs_export_writes_pass_the_check(gray, tmp_path):
    run, model, data = gray
    spec = json.loads((run / files.CLASSIFIER_SPEC).read_text())
    assert serving.check_spec(spec) is spec
    from_files = dataclasses.replace(data, image_size=6, channels=1, train_x=np.array(["a.png"]))
    square = build_classifier("tiny", 3, (6, 6, 1), seed=0)
    for crop in (False, True):
        spec = serving.input_spec(square, dataclasses.replace(from_files, resize_crop=crop))
        assert serving.check_spec(json.loads(json.dumps(spec))) == spec


@pytest.mark.e2e
def test_bad_flags_are_one_line_exit_2_and_a_run_prints_no_start_up_lines(gray, tmp_path):
    run, model, data = gray
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 6, 5, 1), np.uint8))
    for flag, message in (("--batch_size=abc", "--batch_size=abc"),
                          ("--batch_size=0", "--batch_size=0"),
                          ("--no_such_flag=1", "no_such_flag")):
        proc = _cli(run, "--data_dir", tmp_path / "in.npz", flag)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
        assert proc.stderr.startswith("error: ") and message in proc.stderr
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the default level
    proc = subprocess.run([sys.executable, "-m", "mwnet_tf.predict", str(run), "--data_dir",
                           str(tmp_path / "in.npz"), "--out", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    before = (run / files.CLASSIFIER).read_bytes()
    proc = _cli(run, "--data_dir", tmp_path / "in.npz", "--out", run / files.CLASSIFIER)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "is a file of the run folder" in proc.stderr
    assert (run / files.CLASSIFIER).read_bytes() == before
