"""Files: the one atomic writer, and the name of every file and folder a run folder holds.

Every file the project writes goes through `atomic_file` (or its shorthands `write_bytes`,
`write_text`, `write_json`, `write_csv`): the content goes to a temporary file `.NAME.tmp-PID`
in the same folder, is flushed to disk (fsync) and moved over `NAME` with `os.replace`, so a
reader sees the old file or the new one, never a half-written one; if writing fails the
temporary file is removed and the old file, if any, is left as it was. `atomic_folder` does
the same for a folder (a SavedModel): it is written as `.NAME.tmp-PID` beside `NAME`, the old
folder moved aside to `.NAME.old-PID`, the new one moved in, the old one removed.

A process killed inside a write leaves its temporary file or folder behind; `is_leftover`
knows their names (`training.run_folder.remove_leftovers` clears them from a locked run
folder). Elsewhere (reports, figures) they are hidden files that readers ignore.

The bottom of the package: imports only `faults` and the standard library (no TensorFlow).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from typing import IO, Iterable, Iterator, Sequence

from mwnet_tf import faults

# --- what a run folder holds (`docs/outputs.md` describes each) ----------------------------
FLAGS = "flags.cfg"  # the run's flags, a flagfile that resumes or repeats it
RESULTS = "results.json"  # the final figures
HISTORY = "history.json"  # per-epoch figures
DATA = "data.json"  # the fingerprint of the data the run started on (`content.fingerprint`)
CLASSES = "classes.json"  # own data: the class names, in label order
CHECKPOINTS = "checkpoints"  # folder: the latest checkpoints and their progress files
LOCK = ".lock"  # one process per run folder
WEIGHT_FN = "weight_fn"  # folder: the learned weight function as a SavedModel
LABEL_ISSUES = "label_issues.csv"  # every training label, ranked by how suspect it is
CL_ISSUES = "label_issues.npz"  # confident_learning: the labels its first stage found
CLASSIFIER = "classifier.keras"  # the trained classifier
CLASSIFIER_SPEC = "classifier.json"  # its input spec: size, channels, normalization, classes
CLASSIFIER_SERVING = "classifier_serving"  # folder: the classifier as a serving SavedModel

# the temporary names of `atomic_file` and `atomic_folder`, and of the versions before them
# (`NAME.tmp-PID` files, `.weight_fn-XXXXXXXX` export folders); `atomic_path`'s keep the
# file's extension (`.STEM.tmp-PID.EXT`), which some writers need (Keras' `.keras`)
_LEFTOVER = re.compile(r"^(?:.+\.(?:tmp|old)-\d+|\..+\.tmp-\d+\.\w+|\.weight_fn-.+)$")
OLD = re.compile(r"^\.(.+)\.old-\d+$")


def temporary_name(path: str, kind: str = "tmp") -> str:
    """`.NAME.tmp-PID` (or `.old-PID`) beside `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{kind}-{os.getpid()}")


def is_leftover(name: str) -> bool:
    """Whether `name` is the temporary file or folder of a write that never finished."""
    return bool(_LEFTOVER.match(name))


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", fault: str | None = None) -> Iterator[IO]:
    """Yields the temporary file to write `path`'s new content to (opened with `mode`, "wb"
    or "w"); moves it into place when the block ends, keeping an existing file's
    permissions. `fault`: a `faults` point hit once the temporary file is written."""
    tmp = temporary_name(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            shutil.copymode(path, tmp)
        if fault:
            faults.hit(fault, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path`, with the same extension, for writers that take
    a path rather than a file (Keras' `model.save`); moves what was written there into place
    when the block ends, or removes it if the block fails."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes(path: str, data: bytes, *, keep_equal: bool = False,
                fault: str | None = None) -> bool:
    """Writes `data` to `path` atomically; with `keep_equal` a file already holding `data`
    is left untouched (its modification time too). True when the file was written."""
    if keep_equal and os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    with atomic_file(path, "wb", fault) as f:
        f.write(data)
    return True


def write_text(path: str, text: str, *, keep_equal: bool = False,
               fault: str | None = None) -> bool:
    """`write_bytes` of `text` as UTF-8."""
    return write_bytes(path, text.encode("utf-8"), keep_equal=keep_equal, fault=fault)


def write_json(path: str, obj, fault: str | None = None) -> None:
    """`obj` as indented JSON with sorted keys, written atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", fault=fault)


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """`header` and `rows` as CSV, written atomically; returns `path`."""
    with atomic_file(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@contextlib.contextmanager
def atomic_folder(path: str, fault: str | None = None) -> Iterator[str]:
    """Yields an empty temporary folder beside `path` to write the new content to; when the
    block ends it replaces `path` (an older folder is moved aside, then removed). If the
    block fails, `path` is left as it was. `fault`: a `faults` point hit once the temporary
    folder is written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp, old = temporary_name(path), temporary_name(path, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if fault:
            faults.hit(fault, path)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
