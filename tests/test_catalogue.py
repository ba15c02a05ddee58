"""The catalogue of bad inputs: each goes through `python -m mwnet_tf.train`'s command line
(or `python -m mwnet_tf.predict`'s: kind "predict") (`tests/cli_runner.py`: one TensorFlow
import, a forked child per case) and must end with exit
status 1 or 2, exactly one `error:` line on stderr, no traceback, nothing left behind in a
folder the command would have created, and an existing folder exactly as it was.

The README's table of these inputs is this run's output: `python tests/test_catalogue.py`
prints it, and `test_readme_table_is_this_catalogue` fails when the README differs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile

import pytest
from cli import CliSession  # (tests/cli.py)

from mwnet_tf.training.cluster import SLURM_VARIABLES as SLURM

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "docs", "robustness.md")  # the page with the catalogue table
TINY = ["--flagfile=flags/smoke.cfg", "--model=tiny", "--epochs=2", "--progress_seconds=0"]
BEGIN, END = "<!-- catalogue -->", "<!-- /catalogue -->"


class Case:
    """One bad input: `argv` (with {base} for the case's scratch folder), an optional
    `setup(base)`, the exit status and a piece of the message expected, the folder the
    command must leave as it found it (`watch`, default the run folder), the command's module."""

    def __init__(self, kind, what, argv, code, expect, setup=None, env=None, watch="{base}/run",
                 module="mwnet_tf.train"):
        if module == "mwnet_tf.train" and not any(a.startswith("--workdir=") for a in argv):
            argv = [*argv, "--workdir={base}/run"]  # never the default folder under runs/
        self.kind, self.what, self.argv, self.code, self.expect = kind, what, argv, code, expect
        self.setup, self.env, self.watch, self.module = setup, env or {}, watch, module


def _write(path, data=b"", mode="wb"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


def _idx_folder(base, *, truncate=None, garbage=None, drop=None):
    """A Fashion-MNIST folder in the IDX layout: copies of small real-layout files, one of
    them truncated, replaced by text, or left out."""
    import numpy as np
    folder = os.path.join(base, "fashion")
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 50)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        files = {f"{split}-images-idx3-ubyte.gz":
                 b"\x00\x00\x08\x03" + np.array([n, 28, 28], ">u4").tobytes() + images.tobytes(),
                 f"{split}-labels-idx1-ubyte.gz":
                 b"\x00\x00\x08\x01" + np.array([n], ">u4").tobytes() + labels.tobytes()}
        for name, raw in files.items():
            if name == drop:
                continue
            data = gzip.compress(raw)
            if name == truncate:
                data = gzip.compress(raw[: len(raw) // 2])
            if name == garbage:
                data = b"this is not an IDX file\n"
            _write(os.path.join(folder, name), data)
    return folder


_FINISHED: dict = {}
_SESSION: list = []  # the CliSession of the catalogue being run (`run_catalogue`)


def _finished_run(base, name="run", *extra):
    """A finished tiny run (one epoch) in base/name, made by the real command (once per
    setting; later calls copy it)."""
    key = tuple(extra)
    if key not in _FINISHED:
        _FINISHED[key] = os.path.join(tempfile.mkdtemp(prefix="catalogue-run-"), "run")
        proc = _SESSION[0].run(*TINY, "--epochs=1", "--lr_decay_epochs=", *extra,
                               f"--workdir={_FINISHED[key]}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copytree(_FINISHED[key], os.path.join(base, name))


def _truncate_checkpoint(base):
    for name in os.listdir(f"{base}/run/checkpoints"):
        if ".data-" in name:
            with open(f"{base}/run/checkpoints/{name}", "r+b") as f:
                f.truncate(16)


def _other_models_checkpoint(base):
    """The checkpoints of an mlp run under the tiny run's flags.cfg."""
    shutil.rmtree(f"{base}/run/checkpoints")
    shutil.copytree(f"{base}/other/checkpoints", f"{base}/run/checkpoints")


def _weight_fn_of_wrong_shape(base):
    """A SavedModel this project did not write: a 1-7-1 net exported by Keras."""
    import keras
    inputs = keras.Input((1,))
    net = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(7)(inputs)))
    net.export(f"{base}/wrong_fn", verbose=False)


def _exported(base, kind):
    """base/wfn: MW-Net's weight function ("mwnet") or a class-aware one of one class group
    ("cmwnet"), freshly initialized."""
    import numpy as np

    from mwnet_tf.models import build_class_weight_net, build_weight_net, weight_function
    net = (build_weight_net(seed=1) if kind == "mwnet"
           else build_class_weight_net(np.zeros(10, np.int32), seed=1))
    weight_function.export_weight_fn(net, f"{base}/wfn")


def _cifar(base, *, damage=None, labels=None):
    """A tiny CIFAR-10 Python folder in base/cifar (one file damaged: "evil" (would run a
    command), "truncated", "missing"), and a label file base/labels.* ("c100": a CIFAR-100N
    archive, "short": one label too few, "range": a label 10, "zip": not an archive)."""
    import pickle

    import numpy as np
    from cifar_files import cifar_n_arrays, write_cifar_folder, write_cifar_n

    out = write_cifar_folder(f"{base}/cifar", per_batch=6, test=4)
    batch = os.path.join(out["folder"], "data_batch_2")

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {base}/marker",)
    if damage == "evil":
        _write(batch, pickle.dumps({b"data": Evil(), b"labels": [1]}, protocol=2))
    elif damage == "truncated":
        _write(batch, open(batch, "rb").read()[:5000])
    elif damage == "missing":
        os.remove(batch)
    y = out["train_y"]
    if labels == "c100":
        write_cifar_n(f"{base}/labels.pt", cifar_n_arrays(np.arange(len(y)) % 100, "cifar100"),
                      prefix="CIFAR-100_human")
    elif labels == "short":
        np.save(f"{base}/labels.npy", y[:-1])
    elif labels == "range":
        np.save(f"{base}/labels.npy", np.where(np.arange(len(y)) == 3, 10, y))
    elif labels == "zip":
        _write(f"{base}/labels.pt", b"<html>404</html>")


def _clothing1m(base, *, damage=None):
    """A tiny Clothing1M folder in base/c1m (damage: "no_labels" removes clean_label_kv.txt,
    "missing_image" one training image, "not_jpeg" turns one into text) and, for the
    pretrained cases, base/text.h5 (not HDF5) and base/other.h5 (Keras 2 layout, a Dense net)."""
    import keras
    from clothing1m_files import write_clothing1m, write_legacy_h5

    keys = write_clothing1m(f"{base}/c1m")
    if damage == "no_labels":
        os.remove(f"{base}/c1m/clean_label_kv.txt")
    elif damage == "missing_image":
        os.remove(os.path.join(base, "c1m", keys["train"][3]))
    elif damage == "not_jpeg":
        _write(os.path.join(base, "c1m", keys["train"][3]), b"<html>404</html>")
    _write(f"{base}/text.h5", b"not weights")
    inputs = keras.Input((4,))
    write_legacy_h5(f"{base}/other.h5", keras.Model(inputs, keras.layers.Dense(3)(inputs)))


def _own(base, kind, case):
    """Own data in base/data with one problem (tests/test_own_data.py's cases: kind "folder",
    "csv" or "npz"), or a trusted set of 2 per class ("few trusted")."""
    import pathlib

    import test_own_data as own
    root = pathlib.Path(base) / "data"
    root.mkdir()
    if kind == "folder" and case == "damaged image":
        own.make_folder(root, {"train": 2, "meta": 2})
        own.damage(root / "train" / "cat" / "1.png")
    elif kind == "folder" and case == "few trusted":
        own.make_folder(root, {"train": 4, "meta": 2, "test": 1})
    elif kind == "folder":
        own._folder_bad(root, case)
    elif kind == "csv":
        own._csv_bad(root, case)  # base/data/data.csv
    else:
        own._npz_bad(root, case)  # base/data/data.npz


def _keras_model(base, kind):
    """base/net.keras: a model with a Lambda layer, or one with 5 outputs for 3 classes; and
    base/data.npz, 3 classes of 5 features."""
    import keras
    import numpy as np
    inputs = keras.Input((5,))
    x = keras.layers.Dense(4)(inputs)
    if kind == "lambda":
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    keras.Model(inputs, keras.layers.Dense(5 if kind == "outputs" else 3)(x)).save(
        f"{base}/net.keras")
    rng = np.random.default_rng(0)
    x, y, xm = rng.normal(size=(30, 5)), np.arange(30) % 3, rng.normal(size=(30, 5))
    os.makedirs(f"{base}/data")
    np.savez(f"{base}/data/data.npz", x_train=x, y_train=y, x_meta=xm, y_meta=y)


def _own_start(base, case, folder_argv=()):
    """Own data in base/data that a run must refuse before it starts: meta/ hard links to
    train/, one class (folder or npz), or a finished run in base/run whose two class folders
    are then swapped (`folder_argv`: its command line)."""
    import pathlib

    import numpy as np
    import test_own_data as own
    root = pathlib.Path(base) / "data"
    if case == "meta is train":
        own.make_folder(root, {"train": 4, "test": 1})
        shutil.copytree(root / "train", root / "meta", copy_function=os.link)
    elif case == "one class":
        own.make_folder(root, {"train": 4, "meta": 2, "test": 1}, classes=("cat",))
    elif case == "one class npz":
        x = np.random.default_rng(0).normal(size=(12, 3))
        root.mkdir()
        np.savez(root / "data.npz", x_train=x, y_train=np.zeros(12, int), x_meta=x[:4] + 9,
                 y_meta=np.zeros(4, int))
    else:  # swapped classes
        own.make_folder(root, {"train": 4, "meta": 2, "test": 1})
        proc = _SESSION[0].run(*[a.format(base=base) for a in folder_argv],
                               f"--workdir={base}/run")
        assert proc.returncode == 0, proc.stderr[-2000:]
        train = root / "train"
        os.rename(train / "cat", train / "swap")
        os.rename(train / "dog", train / "cat")
        os.rename(train / "swap", train / "dog")


def _predict_run(base, spec=None, link=None):
    """A finished tiny run in base/run with its classifier, base/in.npz (two digits images)
    to predict on, `spec(classifier.json's dict)` applied to classifier.json, and base/LINK a
    hard link to the run's classifier.json."""
    import numpy as np
    _finished_run(base)
    np.savez(f"{base}/in.npz", x=np.zeros((2, 8, 8, 1), np.uint8))
    path = f"{base}/run/classifier.json"
    if spec is not None:
        with open(path) as f:
            data = json.load(f)
        spec(data)
        _write(path, json.dumps(data), "w")
    if link is not None:
        os.link(path, f"{base}/{link}")


def _predict_case(what, extra, code, expect, setup=None, watch="{base}/run"):
    return Case("predict", what, ["{base}/run", "--data_dir={base}/in.npz", *extra], code,
                expect, setup=setup, watch=watch, module="mwnet_tf.predict")


def _hostile(base, kind):
    import hostile_files
    hostile_files.catalogue_setup(base, kind)


def _walk(base, case, command="train"):
    """An image folder in base/data with one problem of tests/test_image_files.py (in
    train/cat); for predict a folder base/inputs with it, a classifier in base/model and an
    empty base/out."""
    import pathlib

    import test_image_files as walk
    if command == "train":
        walk.make_layout_bad(pathlib.Path(base) / "data", case)
        return
    import test_predict
    from test_own_data import write_image
    if "predict" not in _FINISHED:  # one classifier for every case, copied
        _FINISHED["predict"] = os.path.join(tempfile.mkdtemp(prefix="catalogue-model-"), "m")
        test_predict._export(test_predict._data((6, 5, 3)), pathlib.Path(_FINISHED["predict"]))
    shutil.copytree(_FINISHED["predict"], os.path.join(base, "model"))
    write_image(os.path.join(base, "inputs", "ok.png"))
    walk.make_bad(os.path.join(base, "inputs"), case)
    os.makedirs(os.path.join(base, "out"))


def _cases() -> list[Case]:
    t = TINY
    # Human noise on a tiny CIFAR-10 folder (not smoke.cfg: its --rate does not apply).
    h = ["--dataset=cifar10", "--data_dir={base}/cifar", "--noise=human", "--model=tiny",
         "--epochs=1", "--lr_decay_epochs=", "--meta_per_class=2", "--batch_size=10",
         "--meta_batch_size=10"]
    live = json.dumps({"pid": 1, "host": "another-host"})
    c1m = ["--dataset=clothing1m", "--data_dir={base}/c1m", "--image_size=32", "--epochs=1",
           "--lr_decay_epochs=", "--batch_size=8", "--meta_batch_size=7", "--eval_batch_size=14"]
    small = ["--epochs=1", "--lr_decay_epochs=", "--batch_size=4", "--meta_batch_size=2",
             "--progress_seconds=0"]
    folder = ["--dataset=folder", "--data_dir={base}/data", "--image_size=16", *small]
    table = ["--dataset=csv", "--data_dir={base}/data/data.csv", "--image_size=16", *small]
    arrays = ["--dataset=npz", "--data_dir={base}/data/data.npz", *small]
    return [
        # flag values
        Case("flag", "noise rate out of range", [*t, "--rate=2"], 2, "--rate=2"),
        Case("flag", "zero epochs", [*t, "--epochs=0"], 2, "--epochs=0"),
        Case("flag", "unknown data set", [*t, "--dataset=imagenet"], 2, "--dataset=imagenet"),
        Case("flag", "unknown method", [*t, "--method=mixup"], 2, "--method=mixup"),
        Case("flag", "negative learning rate", [*t, "--lr=-0.1"], 2, "--lr=-0.1"),
        Case("flag", "learning-rate decay after the last epoch", [*t, "--lr_decay_epochs=5"],
             2, "lr_decay_epochs must be increasing"),
        Case("flag", "decay epochs that are not numbers", [*t, "--lr_decay_epochs=a,b"], 2,
             "comma-separated list of integers"),
        Case("flag", "batch size 0", [*t, "--batch_size=0"], 2, "--batch_size=0"),
        Case("flag", "a batch larger than the training set", [*t, "--batch_size=5000",
                                                              "--meta_batch_size=50"],
             2, "smaller than one batch"),
        Case("flag", "another method's hyperparameter", [*t, "--method=ce",
                                                         "--meta_scope=head"],
             2, "hyperparameter of --method=mwnet"),
        Case("flag", "float16 for a method without loss scaling",
             [*t, "--method=l2rw", "--mixed_precision=float16"], 2, "mixed_precision=float16"),
        Case("flag", "meta_interval 0", [*t, "--meta_interval=0"], 2, "--meta_interval=0"),
        Case("flag", "FaMUS's sampler under float16", [*t, "--meta_scope=sampled",
                                                       "--mixed_precision=float16"], 2,
             "--meta_scope=sampled does not take --mixed_precision=float16"),
        Case("flag", "meta_layers 1", [*t, "--meta_scope=last", "--meta_layers=1"], 2,
             "--meta_layers=1"),
        Case("flag", "CMW-Net-SL's EMA decay above 1", [*t, "--method=cmwnet_sl", "--sl_ema=1.5"],
             2, "--sl_ema=1.5"),
        Case("flag", "CMW-Net-SL with the trusted meta set",
             [*t, "--method=cmwnet_sl", "--meta_source=trusted"], 2,
             "goes with --meta_source=selected"),
        Case("flag", "CMW-Net's balanced meta set with --meta_source=selected",
             [*t, "--method=cmwnet", "--cmw_meta_set=balanced", "--meta_source=selected"], 2,
             "does not go with --meta_source=selected"),
        Case("flag", "a CMW-Net plain stage as long as the run",
             [*t, "--method=cmwnet", "--cmw_plain_epochs=2"], 2, "leaves no meta stage"),
        Case("flag", "an unknown CMW-Net meta set", [*t, "--method=cmwnet",
                                                     "--cmw_meta_set=random"], 2,
             "--cmw_meta_set=random"),
        Case("flag", "amsgrad for a weight net trained by SGD",
             [*t, "--meta_optimizer=sgd", "--meta_amsgrad"], 2,
             "--meta_amsgrad goes with --meta_optimizer=adam"),
        Case("flag", "an argument that is not a flag", [*t, "cifar10"], 2,
             "unexpected arguments: cifar10"),
        Case("flag", "an unknown flag", [*t, "--learning_rate=0.1"], 2, "learning_rate"),
        Case("flag", "a learning rate that makes the loss diverge", [*t, "--lr=1e30"], 1,
             "NaN/inf", watch="{base}/none"),
        Case("flag", "human noise without a label file", h, 2, "--noise_labels"),
        Case("flag", "a noise rate with human noise", [*h, "--noise_labels=x.pt", "--rate=0.2"],
             2, "--rate does not apply"),
        Case("flag", "CIFAR-100N's label set for cifar10",
             [*h, "--noise_labels=x.pt", "--noise_label_set=noisy_fine"], 2,
             "not a cifar10 label set"),
        # flagfiles
        Case("flagfile", "a flagfile that does not exist", ["--flagfile={base}/none.cfg"], 2,
             "none.cfg"),
        Case("flagfile", "a flagfile with an unknown flag", ["--flagfile={base}/bad.cfg"], 2,
             "no_such_flag", setup=lambda b: _write(f"{b}/bad.cfg", "--no_such_flag=1\n", "w")),
        Case("flagfile", "a flagfile with a bad value", ["--flagfile={base}/bad.cfg"], 2,
             "--noise=gaussian",
             setup=lambda b: _write(f"{b}/bad.cfg", "--noise=gaussian\n", "w")),
        # data
        Case("data", "a data folder that does not exist",
             [*t, "--dataset=fashion_mnist", "--data_dir={base}/nowhere"], 1, "does not exist"),
        Case("data", "a file as the data folder", [*t, "--dataset=fashion_mnist",
                                                   "--data_dir={base}/file"], 1,
             "not a folder", setup=lambda b: _write(f"{b}/file", b"x")),
        Case("data", "an IDX folder missing a file",
             [*t, "--dataset=fashion_mnist", "--data_dir={base}/fashion"], 1,
             "t10k-labels-idx1-ubyte",
             setup=lambda b: _idx_folder(b, drop="t10k-labels-idx1-ubyte.gz")),
        Case("data", "a truncated IDX file",
             [*t, "--dataset=fashion_mnist", "--data_dir={base}/fashion"], 1,
             "train-images-idx3-ubyte.gz",
             setup=lambda b: _idx_folder(b, truncate="train-images-idx3-ubyte.gz")),
        Case("data", "a file in the wrong format",
             [*t, "--dataset=fashion_mnist", "--data_dir={base}/fashion"], 1,
             "train-labels-idx1-ubyte.gz",
             setup=lambda b: _idx_folder(b, garbage="train-labels-idx1-ubyte.gz")),
        Case("data", "CIFAR-10 not prepared in the folder",
             [*t, "--dataset=cifar10", "--model=tiny", "--data_dir={base}/empty"], 1,
             "cifar10", setup=lambda b: os.makedirs(f"{b}/empty")),
        Case("data", "a CIFAR batch pickled to run a command (refused, nothing runs)",
             [*t, "--dataset=cifar10", "--data_dir={base}/cifar"], 1, "refused to unpickle",
             setup=lambda b: _cifar(b, damage="evil"), watch="{base}/marker"),
        Case("data", "a truncated CIFAR batch", [*t, "--dataset=cifar10",
                                                 "--data_dir={base}/cifar"], 1,
             "data_batch_2: truncated", setup=lambda b: _cifar(b, damage="truncated")),
        Case("data", "a CIFAR folder missing a batch", [*t, "--dataset=cifar10",
                                                        "--data_dir={base}/cifar"], 1,
             "data_batch_2: missing", setup=lambda b: _cifar(b, damage="missing")),
        Case("data", "a label file that is not a CIFAR-N archive",
             [*h, "--noise_labels={base}/labels.pt"], 1, "labels.pt",
             setup=lambda b: _cifar(b, labels="zip")),
        Case("data", "a label file that does not exist", [*h, "--noise_labels={base}/none.pt"],
             1, "none.pt: missing", setup=_cifar),
        Case("data", "CIFAR-100N's label file for cifar10", [*h, "--noise_labels={base}/labels.pt"],
             2, "cifar100 label file", setup=lambda b: _cifar(b, labels="c100")),
        Case("data", "a label file one label short", [*h, "--noise_labels={base}/labels.npy"],
             2, "labels", setup=lambda b: _cifar(b, labels="short")),
        Case("data", "a label file with a label out of range",
             [*h, "--noise_labels={base}/labels.npy"], 2, "outside 0..9",
             setup=lambda b: _cifar(b, labels="range")),
        Case("data", "Clothing1M without clean_label_kv.txt", [*c1m, "--model=tiny"], 1,
             "clean_label_kv.txt: missing",
             setup=lambda b: _clothing1m(b, damage="no_labels")),
        Case("data", "a Clothing1M key naming a missing image", [*c1m, "--model=tiny"], 1,
             "noisy_train_key_list.txt names it",
             setup=lambda b: _clothing1m(b, damage="missing_image")),
        Case("data", "a Clothing1M image that is not a JPEG", [*c1m, "--model=tiny"], 1,
             "not a JPEG file", setup=lambda b: _clothing1m(b, damage="not_jpeg")),
        Case("flag", "a noise rate for Clothing1M", [*c1m, "--model=tiny", "--rate=0.2"], 2,
             "--rate does not apply to --dataset=clothing1m"),
        # pretrained weights
        Case("pretrained", "a weights file that does not exist",
             [*c1m, "--pretrained={base}/none.h5"], 2, "none.h5: no such file",
             setup=_clothing1m),
        Case("pretrained", "a weights file that is not HDF5", [*c1m, "--pretrained={base}/text.h5"],
             2, "text.h5: not an HDF5", setup=_clothing1m),
        Case("pretrained", "weights of another architecture",
             [*c1m, "--pretrained={base}/other.h5"], 2, "no weights for layer conv1_conv",
             setup=_clothing1m),
        Case("pretrained", "ImageNet weights for a model that is not ResNet-50",
             [*c1m, "--model=tiny", "--pretrained={base}/other.h5"], 2,
             "goes with --model=resnet50"),
        # run folders
        Case("run folder", "a file as the run folder", [*t, "--workdir={base}/run"], 2,
             "is a file", setup=lambda b: _write(f"{b}/run", b"notes")),
        Case("run folder", "a run folder that cannot be created",
             [*t, "--workdir={base}/file/run"], 2, "cannot write the run folder",
             setup=lambda b: _write(f"{b}/file", b"x"), watch="{base}/file"),
        Case("run folder", "another run's folder (other settings)",
             [*t, "--rate=0.2", "--workdir={base}/run"], 2, "holds a run with other settings",
             setup=lambda b: _finished_run(b)),
        Case("run folder", "a run folder in use by a live process",
             [*t, "--workdir={base}/run"], 2, "is in use by process",
             setup=lambda b: _write(f"{b}/run/.lock",
                                    json.dumps({"pid": os.getpid(),
                                                "host": os.uname().nodename}), "w")),
        Case("run folder", "a run folder locked from another host",
             [*t, "--workdir={base}/run"], 2, "another-host",
             setup=lambda b: _write(f"{b}/run/.lock", live, "w")),
        # checkpoints
        Case("checkpoint", "a truncated checkpoint",
             [*t, "--workdir={base}/run"], 1, "cannot restore checkpoint",
             setup=lambda b: (_finished_run(b), _truncate_checkpoint(b))),
        Case("checkpoint", "a checkpoint of another model",
             [*t, "--workdir={base}/run"], 1, "cannot restore checkpoint",
             setup=lambda b: (_finished_run(b), _finished_run(b, "other", "--model=mlp"),
                              _other_models_checkpoint(b))),
        Case("checkpoint", "a garbled checkpoint index file",
             [*t, "--workdir={base}/run"], 1, "checkpoint",
             setup=lambda b: (_finished_run(b),
                              _write(f"{b}/run/checkpoints/checkpoint", "garbage{{\n", "w"))),
        # TF_CONFIG
        Case("TF_CONFIG", "multi-worker without TF_CONFIG", [*t, "--strategy=multi_worker"], 2,
             "TF_CONFIG", env={"TF_CONFIG": None}),
        Case("TF_CONFIG", "TF_CONFIG that is not JSON", [*t, "--strategy=multi_worker"], 2,
             "TF_CONFIG", env={"TF_CONFIG": "{cluster: nope"}),
        Case("TF_CONFIG", "a task index beyond the cluster", [*t, "--strategy=multi_worker"], 2,
             "TF_CONFIG", env={"TF_CONFIG": json.dumps(
                 {"cluster": {"worker": ["localhost:1", "localhost:2"]},
                  "task": {"type": "worker", "index": 5}})}),
        # Slurm
        Case("Slurm", "--cluster=slurm outside a Slurm job step",
             [*t, "--strategy=multi_worker", "--cluster=slurm"], 2, "SLURM_PROCID",
             env={v: None for v in SLURM}),
        Case("Slurm", "a job step whose node list lists fewer tasks than it has",
             [*t, "--strategy=multi_worker", "--cluster=slurm"], 2, "2 tasks but only 1",
             env={"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2",
                  "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": "1"}),
        Case("Slurm", "a node list Slurm would not write",
             [*t, "--strategy=multi_worker", "--cluster=slurm"], 2, "Invalid hostlist",
             env={"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2",
                  "SLURM_STEP_NODELIST": "node[1-", "SLURM_STEP_TASKS_PER_NODE": "2"}),
        Case("Slurm", "--cluster=slurm without --strategy=multi_worker",
             [*t, "--cluster=slurm"], 2, "goes with --strategy=multi_worker"),
        # weight functions
        Case("weight_fn", "a weight function that does not exist",
             [*t, "--weight_fn={base}/nowhere"], 2, "nowhere"),
        Case("weight_fn", "a folder that is not a SavedModel",
             [*t, "--weight_fn={base}/empty"], 2, "empty",
             setup=lambda b: os.makedirs(f"{b}/empty")),
        Case("weight_fn", "a SavedModel of another shape", [*t, "--weight_fn={base}/wrong_fn"],
             2, "wrong_fn", setup=_weight_fn_of_wrong_shape),
        Case("weight_fn", "MW-Net's weight function given to --method=cmwnet",
             [*t, "--method=cmwnet", "--weight_fn={base}/wfn"], 2, "goes with --method=mwnet",
             setup=lambda b: _exported(b, "mwnet")),
        Case("weight_fn", "CMW-Net's class-aware weight function given to --method=mwnet",
             [*t, "--weight_fn={base}/wfn"], 2, "goes with --method=cmwnet",
             setup=lambda b: _exported(b, "cmwnet")),
        Case("weight_fn", "a class-aware weight function with another number of class groups",
             [*t, "--method=cmwnet", "--weight_fn={base}/wfn"], 2, "heads (class groups)",
             setup=lambda b: _exported(b, "cmwnet")),
        Case("own data", "an empty class folder", folder, 1, "empty class folder",
             setup=lambda b: _own(b, "folder", "empty class")),
        Case("own data", "a class in meta/ that train/ lacks", folder, 1,
             "not a class of train/", setup=lambda b: _own(b, "folder", "unknown meta class")),
        Case("own data", "a file that is not an image", folder, 1, "notes.png",
             setup=lambda b: _own(b, "folder", "not an image")),
        Case("own data", "a damaged image (named)", folder, 1, "1.png",
             setup=lambda b: _own(b, "folder", "damaged image")),
        Case("own data", "a trusted set smaller than --meta_per_class",
             [*folder, "--meta_per_class=3"], 1, "meta_per_class=3",
             setup=lambda b: _own(b, "folder", "few trusted")),
        Case("own data", "a CSV path that does not exist", table, 1, "img/nowhere.png",
             setup=lambda b: _own(b, "csv", "missing file")),
        Case("own data", "a CSV path leaving the folder through ..", table, 1,
             "leaves the data folder", setup=lambda b: _own(b, "csv", "dot-dot")),
        Case("own data", "a CSV path leaving the folder through a symlink", table, 1,
             "symlink", setup=lambda b: _own(b, "csv", "symlink")),
        Case("own data", "a CSV label outside the class list", table, 1, "label 'cow'",
             setup=lambda b: _own(b, "csv", "unknown label")),
        Case("own data", "npz arrays of different lengths", arrays, 1, "y_train has 11 labels",
             setup=lambda b: _own(b, "npz", "lengths")),
        Case("own data", "npz arrays of different shapes", arrays, 1, "x_meta rows have shape",
             setup=lambda b: _own(b, "npz", "shapes")),
        Case("own data", "an npz holding pickled Python objects", arrays, 1, "Python objects",
             setup=lambda b: _own(b, "npz", "pickled objects")),
        Case("own data", "--dataset=tfds: without a name", ["--dataset=tfds:", *small], 2,
             "--dataset=tfds:"),
        Case("own data", "a synthetic noise that own data cannot take",
             [*arrays, "--noise=human"], 2, "--noise=human",
             setup=lambda b: _own(b, "npz", "lengths")),
        Case("model", "a convolutional --model on feature rows", [*arrays, "--model=cnn"], 2,
             "--model=cnn takes images", setup=lambda b: _keras_model(b, "outputs")),
        Case("model file", "a .keras model with a Lambda layer (its code is not run)",
             [*arrays, "--model={base}/net.keras"], 2, "Lambda",
             setup=lambda b: _keras_model(b, "lambda")),
        Case("model file", "a .keras model whose outputs do not match the classes",
             [*arrays, "--model={base}/net.keras"], 2, "not one logit per class",
             setup=lambda b: _keras_model(b, "outputs")),
        Case("model file", "a .keras model file that does not exist",
             [*arrays, "--model={base}/none.keras"], 2, "no such file",
             setup=lambda b: _keras_model(b, "outputs")),
        # predict: its flags, an --out that would replace an input, a tampered classifier.json
        _predict_case("an unknown flag", ["--no_such_flag=1"], 2, "no_such_flag"),
        _predict_case("a batch size that is not a number", ["--batch_size=abc"], 2,
                      "--batch_size=abc"),
        _predict_case("--out the input .npz", ["--out={base}/in.npz"], 2, "is the input",
                      setup=_predict_run, watch="{base}/in.npz"),
        _predict_case("--out the run's classifier.keras", ["--out={base}/run/classifier.keras"],
                      2, "is a file of the run folder", setup=_predict_run),
        _predict_case("--out a hard link to the run's classifier.json", ["--out={base}/p.csv"],
                      2, "is a file of the run folder",
                      setup=lambda b: _predict_run(b, link="p.csv")),
        _predict_case("a classifier.json with fewer class names than logits",
                      ["--out={base}/p.csv"], 1, "names 9 classes",
                      setup=lambda b: _predict_run(b, spec=lambda s: s.update(
                          class_names=s["class_names"][:9], num_classes=9))),
        _predict_case("a classifier.json with a NaN mean", ["--out={base}/p.csv"], 1,
                      "mean must be a list of 1 finite number",
                      setup=lambda b: _predict_run(b, spec=lambda s: s.update(
                          mean=[float("nan")]))),
        _predict_case("a classifier.json with a std of the wrong length",
                      ["--out={base}/p.csv"], 1, "std must be a list of 1 finite",
                      setup=lambda b: _predict_run(b, spec=lambda s: s.update(
                          std=[0.3, 0.3, 0.3]))),
        _predict_case("a classifier.json with class names that are not strings",
                      ["--out={base}/p.csv"], 1, "class_names must be a list",
                      setup=lambda b: _predict_run(b, spec=lambda s: s.update(
                          class_names=list(range(10))))),
        _predict_case("a classifier.json without a mean", ["--out={base}/p.csv"], 1,
                      "no mean", setup=lambda b: _predict_run(b, spec=lambda s: s.pop("mean"))),
        # defaults that follow the flags: the run folder, the part seeds
        Case("run folder", "--workdir inside --data_dir (the data set's own train/, test/)",
             [*folder, "--workdir={base}/data/train/run"], 2, "is inside --data_dir",
             setup=lambda b: _own(b, "folder", "few trusted"), watch="{base}/data"),
        Case("own data", "--noise_seed with own labels as given (no noise to seed)",
             [*folder, "--noise_seed=1"], 2, "--noise_seed seeds a synthetic --noise",
             setup=lambda b: _own(b, "folder", "few trusted")),
        Case("own data", "an image folder that does not exist (checked before TensorFlow "
             "loads)", [*folder[:1], "--data_dir={base}/nowhere", *folder[2:]], 1,
             "does not exist or is not a folder"),
        Case("own data", "--meta_seed when every trusted image is used (no draw to seed)",
             [*folder, "--meta_seed=1"], 2, "--meta_seed seeds the draw of --meta_per_class",
             setup=lambda b: _own(b, "folder", "few trusted")),
        Case("flag", "--meta_seed with Clothing1M (its meta set is fixed)",
             [*c1m, "--meta_seed=1"], 2, "--meta_seed does not apply to --dataset=clothing1m"),
        # hostile model and array files (tests/hostile_files.py): refused before anything runs
        *[Case(kind, what, argv, code, expect, setup=lambda b, k=key: _hostile(b, k))
          for kind, what, argv, code, expect, key in [
              ("model file", "a .keras whose config names a module of its own (never imported)",
               [*arrays, "--model={base}/net.keras"], 2, "names planted_mod.Evil",
               "planted module"),
              ("model file", "a .keras calling keras.models.load_model as an activation",
               [*arrays, "--model={base}/net.keras"], 2,
               "names the function keras.models.load_model", "function gadget"),
              ("model file", "a .keras model with two inputs",
               [*arrays, "--model={base}/net.keras"], 2, "has 2 input(s)", "two inputs"),
              ("model file", "a .keras model with two outputs",
               [*arrays, "--model={base}/net.keras"], 2, "2 output(s)", "two outputs"),
              ("own data", "an npz member whose header declares 10^12 rows", arrays, 1,
               "its header declares shape [1000000000000, 5]", "huge header"),
              ("own data", "an npz label of 2^40", arrays, 1, "holds label 1099511627776",
               "huge npz label"),
              ("own data", "a negative npz label", arrays, 1, "no negative labels",
               "negative npz label"),
              ("own data", "a CSV label of 10^12", table, 1, "label '1000000000000'",
               "huge csv label"),
              ("weight_fn", "a weight function holding inf", [*t, "--weight_fn={base}/wfn"], 2,
               "holds inf", "inf weight_fn"),
              ("weight_fn", "a weight function holding NaN", [*t, "--weight_fn={base}/wfn"], 2,
               "holds NaN", "nan weight_fn")]],
        # own data and run folders checked before a run starts
        Case("own data", "meta/ holding the images of train/ (hard links)", folder, 1,
             "are also training images", setup=lambda b: _own_start(b, "meta is train")),
        Case("own data", "an image folder of one class", folder, 1, "a single class",
             setup=lambda b: _own_start(b, "one class")),
        Case("own data", "npz labels of one class", arrays, 1, "a single class",
             setup=lambda b: _own_start(b, "one class npz")),
        Case("own data", "--method=cmwnet on npz labels of one class",
             [*arrays, "--method=cmwnet"], 1, "a single class",
             setup=lambda b: _own_start(b, "one class npz")),
        Case("run folder", "a meta batch larger than the trusted set (no folder left)",
             [*folder, "--meta_batch_size=64"], 2, "smaller than one meta batch",
             setup=lambda b: _own(b, "folder", "few trusted")),
        Case("run folder", "a finished run rerun with two class folders swapped", folder, 2,
             "started on other data", setup=lambda b: _own_start(b, "swapped", folder)),
        # folder walks and image files, train (--dataset=folder) and predict (a folder)
        Case("image files", "a FIFO named x.png in a class folder", folder, 1,
             "named pipe (FIFO)", setup=lambda b: _walk(b, "fifo")),
        Case("image files", "two symlink loops in a class folder", folder, 1, "symlink loop",
             setup=lambda b: _walk(b, "symlink loops")),
        Case("image files", "a class folder symlinked outside --data_dir", folder, 1,
             "leads out of the data folder", setup=lambda b: _walk(b, "class outside")),
        Case("image files", "a PNG header declaring 100000 x 100000 pixels", folder, 1,
             "too large", setup=lambda b: _walk(b, "bomb")),
        Case("image files", "a notes.txt in a class folder", folder, 1, "notes.txt",
             setup=lambda b: _walk(b, "not an image")),
        *(Case("image files", f"predict: {what}", ["{base}/model", "--data_dir={base}/inputs",
                                                   "--out={base}/out/p.csv"], 1, expect,
               setup=lambda b, c=case: _walk(b, c, "predict"), watch="{base}/out",
               module="mwnet_tf.predict")
          for what, case, expect in (
              ("a FIFO named x.png in the input folder", "fifo", "named pipe (FIFO)"),
              ("two symlink loops in the input folder", "symlink loops", "symlink loop"),
              ("a notes.txt in the input folder", "not an image", "notes.txt"),
              ("a PNG header declaring 100000 x 100000 pixels", "bomb", "too large"))),
        *_meta_source_cases(t, folder, table, arrays),
    ]


def _training_only(base, kind):
    """Own data in base/data with a training set alone: an image folder (train/, 4 images per
    class), a table without a split column (base/data/data.csv) or an .npz (base/data/data.npz)."""
    import pathlib

    import numpy as np
    import test_own_data as own
    root = pathlib.Path(base) / "data"
    if kind == "folder":
        own.make_folder(root, {"train": 4})
    elif kind == "csv":
        root.mkdir()
        rows = own.image_rows(root, {"train": ["cat", "dog"] * 4})
        own.write_csv(root, [r.rsplit(",", 1)[0] for r in rows], "path,label")
    else:
        root.mkdir()
        np.savez(root / "data.npz", x_train=np.random.default_rng(0).normal(size=(12, 3)),
                 y_train=np.arange(12) % 2)


def _meta_source_cases(t, folder, table, arrays) -> list[Case]:
    """--meta_source=selected and own data without a trusted set."""
    selected = "--meta_source=selected"
    return [
        Case("flag", "an unknown --meta_source", [*t, "--meta_source=random"], 2,
             "--meta_source=random"),
        Case("flag", "--select_per_class without --meta_source=selected",
             [*t, "--select_per_class=5"], 2, "--select_per_class goes with"),
        Case("flag", "--meta_source=selected for a method that reads no meta set",
             [*t, selected, "--method=ce"], 2, "--method=ce reads none"),
        Case("flag", "--meta_source=selected with a frozen --weight_fn",
             [*t, selected, "--weight_fn={base}/wfn"], 2, "reads no meta set"),
        Case("flag", "--meta_source=selected with a class of fewer than k samples",
             [*t, selected, "--select_per_class=500"], 2, "fewer than the 500 per class"),
        Case("own data", "an image folder without meta/ (trusted, the default)", folder, 1,
             "train with --meta_source=selected",
             setup=lambda b: _training_only(b, "folder")),
        Case("own data", "a CSV table without a split column (trusted, the default)", table, 1,
             "train with --meta_source=selected", setup=lambda b: _training_only(b, "csv")),
        Case("own data", "an npz without x_meta and y_meta (trusted, the default)", arrays, 1,
             "train with --meta_source=selected", setup=lambda b: _training_only(b, "npz")),
        Case("own data", "--meta_per_class without a trusted set",
             [*folder, selected, "--meta_per_class=2"], 2, "has no trusted set",
             setup=lambda b: _training_only(b, "folder")),
        Case("run folder", "a selected meta set smaller than one meta batch (no folder left)",
             [*folder, selected, "--select_per_class=2", "--meta_batch_size=8"], 2,
             "raise select_per_class", setup=lambda b: _training_only(b, "folder")),
    ]


def _snapshot(path: str):
    """Every file under `path` with its bytes' hash (None: nothing there)."""
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def run_catalogue(base: str) -> list[dict]:
    """Sets every case up under `base` and runs it through the command line (`CliSession`:
    one TensorFlow import for the whole catalogue), returns what each did."""
    rows = []
    _SESSION[:] = [CliSession()]
    try:
        for i, case in enumerate(_cases()):
            folder = os.path.join(base, f"case{i:02d}")
            os.makedirs(folder)
            if case.setup:
                case.setup(folder)
            watch = case.watch.format(base=folder)
            snap = _snapshot(watch)
            out = _SESSION[0].run(*[a.format(base=folder) for a in case.argv],
                                  module=case.module, **case.env)
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            message = lines[-1] if lines else ""
            rows.append({"case": case, "code": out.returncode, "lines": lines,
                         "stderr": out.stderr,
                         "message": message.replace(folder, "DIR").replace(
                             f"process {os.getpid()} ", "process PID "),
                         "unchanged": _snapshot(watch) == snap})
    finally:
        _SESSION.pop().close()
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(text):
        return text.replace("|", "\\|")
    lines = ["| kind | input | exit | message |", "| --- | --- | ---: | --- |"]
    lines += [f"| {r['case'].kind} | {cell(r['case'].what)} | {r['code']} | "
              f"`{cell(r['message'])}` |" for r in rows]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return run_catalogue(str(tmp_path_factory.mktemp("catalogue")))


def test_at_least_110_bad_inputs_each_one_line_no_traceback_nothing_changed(catalogue):
    assert len(catalogue) >= 110
    for r in catalogue:
        case = r["case"]
        where = f"{case.kind}: {case.what}: {r['stderr'][-1500:]}"
        assert r["code"] == case.code, where
        assert len(r["lines"]) == 1 and r["lines"][0].startswith("error: "), where
        assert "Traceback" not in r["stderr"], where
        assert case.expect in r["lines"][0], where
        assert r["unchanged"], f"{where}: the watched folder changed"


def test_readme_table_is_this_catalogue(catalogue):
    text = open(README).read()
    assert BEGIN in text and END in text, f"{README} has no catalogue block"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown(catalogue), (
        f"the catalogue in {README} is stale: regenerate it with "
        "python tests/test_catalogue.py --readme")


if __name__ == "__main__":  # prints the README's table (or rewrites it with --readme)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_catalogue(tmp)
    table = markdown(rows)
    if sys.argv[1:] == ["--readme"]:
        text = open(README).read()
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n\n{table}\n\n{END}{rest.split(END, 1)[1]}"
        with open(README, "w") as f:
            f.write(text)
    else:
        print(table)
    bad = [r for r in rows if r["code"] != r["case"].code or len(r["lines"]) != 1
           or not r["unchanged"] or "Traceback" in r["stderr"]]
    for r in bad:
        print(f"\nFAILS: {r['case'].kind}: {r['case'].what}: exit {r['code']}, unchanged "
              f"{r['unchanged']}\n{r['stderr'][-1500:]}", file=sys.stderr)
    sys.exit(1 if bad else 0)
