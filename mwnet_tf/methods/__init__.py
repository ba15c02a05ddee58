"""Training methods on one interface (`base.Method`), by name.

The names, in the order tables list them, and each method's hyperparameters are in
`mwnet_tf.methods.registry` (no TensorFlow); each method lives in `mwnet_tf/methods/<name>.py`
and names its class `METHOD`, imported by `get` on first use. `Context`, `Method` and `Stage`
(`base`, which imports TensorFlow) are loaded on first access, so that importing this package
stays cheap.
"""

from __future__ import annotations

import importlib

from mwnet_tf.methods.registry import METHODS, Param, all_params

_BASE = ("Context", "Method", "Stage")


def get(name: str):
    """The method class registered under `name` (a `base.Method` subclass)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
    return importlib.import_module(f"mwnet_tf.methods.{name}").METHOD


def __getattr__(name: str):
    if name in _BASE:
        return getattr(importlib.import_module("mwnet_tf.methods.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "Param", "all_params", "get", *_BASE]
