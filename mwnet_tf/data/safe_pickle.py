"""A restricted unpickler for data files: dicts, lists, bytes, str, numbers and NumPy arrays.

Unpickling runs whatever callables a pickle names, so a data file could run a command. This
reader resolves only the globals that CIFAR's Python batches and CIFAR-N's label file hold and
refuses every other one with a one-line `DataUnavailableError` naming the file and the global.

What the files name (checked with `pickletools.genops`, which lists a pickle's opcodes without
running them): CIFAR-N's `data.pkl` (protocol 2, written by Python 3) names
`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype` and `_codecs.encode` (how
Python 3 pickles the bytes of an array for protocol 2: `_codecs.encode(text, "latin1")`).
CIFAR's batches (written by Python 2) hold a NumPy array too (their `data`) and name the first
three; their bytes are Python 2 strings, read as bytes with `encoding="bytes"`. Persistent ids
(how torch.save refers to tensor storages) are refused: the published files have none.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from mwnet_tf.errors import DataUnavailableError

try:  # NumPy >= 2 moved numpy.core to numpy._core; pickles name either
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode` limited to what NumPy's protocol-2 pickles use it for."""
    if not isinstance(text, str) or encoding != "latin1" or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _dtype(spec, align=False, copy=False):
    if isinstance(spec, bytes):  # Python 2 pickles read with encoding="bytes"
        spec = spec.decode("ascii")
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"numpy.dtype({spec!r}) is not allowed")
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy.dtype({spec!r}) holds Python objects")
    return dtype


# (module, name) -> what it resolves to. Nothing else is ever imported or called.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): dict,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside `ALLOWED`."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        key = (module.decode() if isinstance(module, bytes) else module,
               name.decode() if isinstance(name, bytes) else name)
        if key not in ALLOWED:
            raise RefusedGlobal(f"{key[0]}.{key[1]}")
        return ALLOWED[key]

    def persistent_load(self, pid):
        raise RefusedGlobal("a persistent id (a PyTorch tensor storage)")


def loads(data: bytes, path: str, *, encoding: str = "ASCII"):
    """Unpickles `data` (read from `path`, named in errors) through the allow-list.

    Args:
        data: The pickle's bytes.
        path: Where they came from, for the one-line error.
        encoding: As `pickle.loads`; "bytes" for Python 2 pickles (CIFAR's batches).

    Raises:
        DataUnavailableError: a refused global, a truncated or damaged pickle.
    """
    try:
        return _Unpickler(io.BytesIO(data), encoding=encoding).load()
    except RefusedGlobal as e:
        raise DataUnavailableError(
            f"{path}: refused to unpickle {e}: a data file may hold only dicts, lists, bytes, "
            "str, numbers and NumPy arrays (unpickling anything else could run code)") from None
    except pickle.UnpicklingError as e:
        if "truncated" not in str(e):
            raise DataUnavailableError(f"{path}: not a readable pickle (UnpicklingError: "
                                       f"{' '.join(str(e).split())[:200]})") from None
        raise DataUnavailableError(f"{path}: truncated pickle ({len(data)} bytes)") from None
    except EOFError:
        raise DataUnavailableError(f"{path}: truncated pickle ({len(data)} bytes)") from None
    except (ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeError, MemoryError, OverflowError, RecursionError) as e:
        what = " ".join(str(e).split())[:200]
        raise DataUnavailableError(f"{path}: not a readable pickle ({type(e).__name__}: "
                                   f"{what})") from None


def load(path: str, *, encoding: str = "ASCII"):
    """Unpickles the file at `path` through the allow-list (see `loads`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataUnavailableError(f"{path}: cannot read: {e.strerror or e}") from None
    return loads(data, path, encoding=encoding)
