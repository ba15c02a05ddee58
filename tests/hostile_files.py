"""Hostile model and array files for the tests (tests/test_keras_file.py,
tests/test_hostile_arrays.py, the catalogue): each written into a folder `base`."""

import io
import json
import zipfile

import numpy as np
from numpy.lib import format as npy_format

PLANTED = '''import os
open(os.environ.get("MARKER", os.devnull), "w").write("imported")
'''


def dense_model(path, outputs=3, d=5):
    """A small functional model, `d` features in, `outputs` logits out, saved at `path`."""
    import keras
    inputs = keras.Input((d,))
    keras.Model(inputs, keras.layers.Dense(outputs)(keras.layers.Dense(4)(inputs))).save(path)
    return str(path)


def rewrite_config(path, edit):
    """The .keras at `path` with its config.json passed through `edit(config)`."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def plant_module(config):
    """The first Dense layer names the module `planted_mod` (as CVE-2025-1550's files do)."""
    layer = config["config"]["layers"][1]
    layer["module"], layer["class_name"], layer["registered_name"] = (
        "planted_mod", "Evil", "Evil")


def plant_function(config):
    """keras.models.load_model as an activation, Lambda-free (CVE-2025-9906's gadget)."""
    config["config"]["layers"][1]["config"]["activation"] = {
        "module": "keras.models", "class_name": "function", "config": "load_model",
        "registered_name": "function"}


def plant_tfsm(config):
    config["config"]["layers"][1]["class_name"] = "TFSMLayer"


def two_io_model(path, kind, d=5, classes=3):
    """A model with two inputs (`kind` "inputs") or two outputs ("outputs")."""
    import keras
    a, b = keras.Input((d,)), keras.Input((d,))
    if kind == "inputs":
        model = keras.Model([a, b], keras.layers.Dense(classes)(
            keras.layers.Concatenate()([a, b])))
    else:
        model = keras.Model(a, [keras.layers.Dense(classes)(a), keras.layers.Dense(classes)(a)])
    model.save(path)
    return str(path)


def npy_bytes(shape, descr="<f8", payload=b"\0" * 64) -> bytes:
    """A .npy whose header declares `shape` but which holds only `payload`."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                            "shape": shape})
    return buf.getvalue() + payload


def arrays(n=30, d=5, classes=3):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), np.arange(n) % classes
    return dict(x_train=x, y_train=y, x_meta=rng.normal(size=(n, d)), y_meta=y)


def huge_npz(path, key="x_train", rows=10 ** 12, compress=zipfile.ZIP_STORED):
    """An .npz of good arrays but `key`, whose header declares `rows` rows of 5 floats."""
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for k, v in arrays(12, classes=2).items():
            buf = io.BytesIO()
            np.save(buf, v)
            zf.writestr(f"{k}.npy", npy_bytes((rows, 5)) if k == key else buf.getvalue())
    return str(path)


def npz_with_label(path, label):
    """Own arrays whose y_train[3] is `label`."""
    a = arrays()
    a["y_train"] = a["y_train"].copy()
    a["y_train"][3] = label
    np.savez(path, **a)
    return str(path)


def csv_with_label(path, label, touch=True):
    """A CSV table of 2 classes whose last training row has `label` (its files, empty,
    listed but never decoded, with `touch`)."""
    rows = ["path,label,split"] + [f"{i}.png,{i % 2},train" for i in range(4)] + [
        f"m{i}.png,{i % 2},meta" for i in range(4)] + [f"big.png,{label},train"]
    path.write_text("\n".join(rows) + "\n")
    for row in rows[1:] if touch else ():
        (path.parent / row.split(",")[0]).write_bytes(b"")
    return str(path)


def weight_fn_with(path, value):
    """An exported 1-100-1 weight function one of whose first-layer weights is `value`."""
    from mwnet_tf.models import build_weight_net, weight_function
    net = build_weight_net(seed=0)
    kernel = net.trainable_variables[0]
    kernel.assign(np.where(np.arange(100)[None, :] == 7, value, kernel.numpy()))
    return weight_function.export_weight_fn(net, str(path))


def catalogue_setup(base, kind):
    """base/net.keras, base/data/data.npz (or data.csv) or base/wfn for a catalogue case."""
    import pathlib
    base = pathlib.Path(base)
    (base / "data").mkdir(exist_ok=True)
    if kind in ("planted module", "function gadget", "two inputs", "two outputs"):
        np.savez(base / "data" / "data.npz", **arrays())
        if kind.startswith("two"):
            two_io_model(base / "net.keras", kind.split()[1])
        else:
            dense_model(base / "net.keras")
            rewrite_config(base / "net.keras",
                           plant_module if kind == "planted module" else plant_function)
    elif kind == "huge header":
        huge_npz(base / "data" / "data.npz")
    elif kind == "huge npz label":
        npz_with_label(base / "data" / "data.npz", 2 ** 40)
    elif kind == "negative npz label":
        npz_with_label(base / "data" / "data.npz", -1)
    elif kind == "huge csv label":
        csv_with_label(base / "data" / "data.csv", "1000000000000")
    elif kind in ("inf weight_fn", "nan weight_fn"):
        weight_fn_with(base / "wfn", np.inf if kind.startswith("inf") else np.nan)
    else:
        raise AssertionError(kind)
