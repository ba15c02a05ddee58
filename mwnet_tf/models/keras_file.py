"""Reading a `.keras` model file that may come from anyone: its config is checked as data
before Keras sees the file, then the model is loaded in Keras' safe mode.

Keras' safe mode refuses a Lambda layer's code, but a `.keras` file's `config.json` names
Python modules and classes, and releases have shipped with ways around safe mode (hence the
floor on Keras in setup.cfg). So every `.keras` this project loads (`--model=PATH.keras`,
`mwnet_tf.predict`'s `classifier.keras`) goes through `load_keras_file`, which first reads
`config.json` from the zip archive itself (size-limited JSON, never code) and walks the whole
nested config: every object's `module`, `class_name` and `registered_name` must name a class of
Keras' own public modules (layers, activations, initializers, regularizers, constraints,
losses, metrics, optimizers, models, dtype policies) or one of this project's registered
layers. Layers that carry code (Lambda, TFSMLayer, TorchModuleWrapper, JaxLayer, FlaxLayer) and
functions from anywhere but `keras.activations`, `keras.losses` and `keras.metrics` are refused.
Nothing named in the file is imported. Every problem is a one-line `ValueError`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import zipfile

import keras

import mwnet_tf.models  # noqa: F401  (registers the project's layers)

CONFIG = "config.json"
MAX_CONFIG_BYTES = 64 << 20  # ResNet-50's config is well under 1 MB
MAX_DEPTH = 200  # nesting of the config's objects (a ResNet-50 nests about 10 deep)

# Keras' public modules whose classes a model file may name (imported from Keras, never from
# the file) and the functions a config may name by module
KERAS_MODULES = ("keras", "keras.layers", "keras.activations", "keras.initializers",
                 "keras.regularizers", "keras.constraints", "keras.losses", "keras.metrics",
                 "keras.optimizers", "keras.optimizers.schedules", "keras.models",
                 "keras.dtype_policies", "keras.src.models.functional",
                 "keras.src.models.sequential", "keras.src.models.model")
FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics")
# layers whose config holds code or loads another program
CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
# the serialization library's own markers (tensors and arrays as values, no module)
PLAIN = frozenset({"__keras_tensor__", "__tensor__", "__numpy__"})


def _project_classes() -> dict[str, type]:
    """This project's registered Keras classes by registered name ("mwnet_tf>Name")."""
    return {k: v for k, v in keras.saving.get_custom_objects().items()
            if k.startswith("mwnet_tf>")}


def read_config(path: str, what: str) -> dict:
    """The `config.json` of the `.keras` archive at `path`, read as data (at most
    `MAX_CONFIG_BYTES`); `what` names the file in messages (e.g. "--model=net.keras")."""
    if not os.path.isfile(path):
        raise ValueError(f"{what}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(CONFIG)
            except KeyError:
                raise ValueError(f"{what}: not a Keras 3 model file (a .keras zip archive "
                                 f"with {CONFIG}): it has no {CONFIG}") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ValueError(f"{what}: its {CONFIG} declares {info.file_size} bytes, more "
                                 f"than the {MAX_CONFIG_BYTES} a model's config may have")
            with zf.open(info) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
            NotImplementedError, RuntimeError) as e:
        raise ValueError(f"{what}: not a Keras 3 model file (a .keras zip archive): "
                         f"{str(e).strip() or type(e).__name__}"[:300]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"{what}: its {CONFIG} is larger than the {MAX_CONFIG_BYTES} bytes a "
                         "model's config may have")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{what}: its {CONFIG} is not readable JSON "
                         f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                         ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{what}: its {CONFIG} is not a model's config (a JSON object)")
    return config


def _keras_name_ok(module: str, class_name: str, config) -> bool:
    """Whether `module`.`class_name` is a class of a Keras public module (or, with class_name
    "function", a function of `keras.activations`/`losses`/`metrics` named by `config`)."""
    if module not in KERAS_MODULES:
        return False
    mod = importlib.import_module(module)  # one of KERAS_MODULES only
    if class_name == "function":
        fn = getattr(mod, config, None) if isinstance(config, str) else None
        return (module in FUNCTION_MODULES and not config.startswith("_")
                and inspect.isfunction(fn))
    if class_name.startswith("_") or class_name in CODE_LAYERS:
        return False
    return inspect.isclass(getattr(mod, class_name, None))


def check_config(config: dict, what: str) -> None:
    """Refuses (`ValueError`) a config that names anything but Keras' own public classes and
    this project's registered ones (module docstring)."""
    project = _project_classes()
    stack = [(config, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{what}: its {CONFIG} nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend((v, depth + 1) for v in node.values())
        if "class_name" not in node and "module" not in node:
            continue
        module, name = node.get("module"), node.get("class_name")
        registered = node.get("registered_name")
        if not isinstance(name, str) or not (module is None or isinstance(module, str)) or not (
                registered is None or isinstance(registered, str)):
            raise ValueError(f"{what}: its {CONFIG} has an object whose class_name, module or "
                             "registered_name is not text")
        if name == "Lambda" or name == "__lambda__":
            raise ValueError(f"{what}: holds a Lambda layer, whose Python code is not loaded "
                             "(safe mode): rebuild the model without Lambda layers, or with a "
                             "registered custom layer")
        if module is None and name in PLAIN and registered is None:
            continue
        cls = project.get(registered) if registered else None
        if cls is not None and module == cls.__module__ and name == cls.__name__:
            continue
        if (module is not None and registered in (None, name, "function")
                and _keras_name_ok(module, name, node.get("config"))):
            continue
        config = node.get("config")
        named = (f"the function {module}.{config}" if name == "function"
                 and isinstance(config, str) else ".".join(p for p in (module, name) if p))
        if registered and registered != name:
            named += f" (registered as {registered})"
        raise ValueError(f"{what}: names {named}, which is not one of Keras' own layers, "
                         "activations, initializers or regularizers nor a layer of this "
                         "project: refused, nothing named in the file is imported")


def load_keras_file(path: str, what: str, *, compile: bool = False):
    """The model of the `.keras` file at `path`: its config checked (`read_config`,
    `check_config`), then loaded by Keras in safe mode. Problems are one-line `ValueError`s
    naming `what`."""
    check_config(read_config(path, what), what)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as e:  # noqa: BLE001 (Keras raises many kinds for a damaged file)
        text = str(e).strip()
        if "Lambda" in text or "safe_mode" in text:
            raise ValueError(f"{what}: holds code that Keras' safe mode refuses to load "
                             "(a Lambda layer or a function): rebuild the model without it"
                             ) from None
        first = (text.splitlines()[0] if text else type(e).__name__)[:300]
        raise ValueError(f"{what}: cannot be loaded as a Keras 3 model ({first})") from None


def check_single_io(model, what: str) -> None:
    """Refuses a model with other than one input and one output (`ValueError`)."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(f"{what}: its inputs and outputs are not known (a model built with "
                         "keras.Input, functional or Sequential, is needed)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{what}: has {len(inputs)} input(s) and {len(outputs)} output(s); "
                         "a classifier here takes one input (the images or features) and "
                         "gives one output (the logits)")
