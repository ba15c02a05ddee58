"""Training methods on one interface (`base.Method`), by name.

Each method lives in `mwnet_tf/methods/<name>.py` and names its class `METHOD`; the names, in
the order tables list them, are `mwnet_tf.config.METHODS`. Modules are imported on first use.
"""

from __future__ import annotations

import importlib

from mwnet_tf.config import METHODS
from mwnet_tf.methods.base import Context, Method, Param, Stage


def get(name: str) -> type[Method]:
    """The method class registered under `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
    return importlib.import_module(f"mwnet_tf.methods.{name}").METHOD


def all_params() -> dict[str, tuple[str, Param]]:
    """Every method hyperparameter: flag name -> (method name, Param)."""
    out = {}
    for name in METHODS:
        for p in get(name).params:
            if p.name in out:
                raise RuntimeError(f"flag {p.name} is declared by two methods")
            out[p.name] = (name, p)
    return out


__all__ = ["Context", "Method", "Param", "Stage", "all_params", "get"]
