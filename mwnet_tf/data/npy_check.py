"""The sizes a `.npy` array or an `.npz` archive's members declare, checked before NumPy
allocates them.

A `.npy` header states the array's shape and dtype, and NumPy allocates that much memory
before it reads a byte of the data: a header claiming 10^12 rows ends in a memory error. So
each member's header is read (`numpy.lib.format.read_magic`, `read_array_header_1_0` /
`_2_0`) and the bytes it declares must fit in what the member actually holds and in this
machine's memory; an object (pickled) dtype is refused too, as `np.load(...,
allow_pickle=False)` would. Compressed members are bounded by deflate's best ratio. Problems
are one-line `ValueError`s (the callers name the file).
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
from numpy.lib import format as npy_format

MAX_DEFLATE_RATIO = 1100  # deflate cannot compress by more than 1032:1


def memory_bytes() -> int:
    """This machine's physical memory in bytes (a bound no array can exceed); 2^40 when
    unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _declared(fp, name: str) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, header length) of the .npy header at the start of `fp`."""
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"{name}: .npy format version {version} is not read here "
                             "(1.0 and 2.0 are)")
    except ValueError as e:
        text = " ".join(str(e).split())[:200]
        raise ValueError(text if text.startswith(f"{name}:") else
                         f"{name}: not a readable .npy header ({text})") from None
    return tuple(shape), dtype, fp.tell()


def _check(name: str, shape: tuple, dtype: np.dtype, available: int) -> None:
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects, refused (allow_pickle=False): store "
                         "numbers and strings only")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"{name}: its header declares an invalid shape {shape}")
    size = math.prod(shape) * dtype.itemsize
    if size > available:
        raise ValueError(f"{name}: its header declares shape {list(shape)} of {dtype} "
                         f"({size} bytes), more than the {available} bytes it holds")
    if size > memory_bytes():
        raise ValueError(f"{name}: its header declares shape {list(shape)} of {dtype} "
                         f"({size} bytes), more than this machine's memory")


def check_npz(path: str) -> None:
    """Checks every `.npy` member of the `.npz` at `path` (module docstring). A file that is
    not a zip archive is left to `np.load` to report."""
    if not zipfile.is_zipfile(path):
        return
    try:
        _check_members(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
            NotImplementedError) as e:
        raise ValueError(f"not a readable zip archive ({' '.join(str(e).split())[:200]})"
                         ) from None


def _check_members(path: str) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                bound = info.compress_size
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                bound = max(info.compress_size, 1) * MAX_DEFLATE_RATIO
            else:
                raise ValueError(f"{name}: zip compression method {info.compress_type} is "
                                 "not read here (stored and deflated are)")
            if info.file_size > bound:
                raise ValueError(f"{name}: its zip entry declares {info.file_size} bytes from "
                                 f"{info.compress_size} compressed, more than it can hold")
            with zf.open(info) as fp:
                shape, dtype, header = _declared(fp, name)
            _check(name, shape, dtype, info.file_size - header)


def check_npy(path: str) -> None:
    """Checks the header of the `.npy` file at `path` against the file's size."""
    with open(path, "rb") as fp:
        shape, dtype, header = _declared(fp, os.path.basename(path))
        _check(os.path.basename(path), shape, dtype, os.fstat(fp.fileno()).st_size - header)
