"""The run folder on disk: the one atomic writer, progress files and leftovers.

Every file the project writes goes through `atomic_file` (or its shorthands `write_bytes`,
`write_text`, `write_json`): the content goes to a temporary file `.NAME.tmp-PID` in the
same folder, is flushed to disk (fsync) and moved over `NAME` with `os.replace`, so a reader
sees the old file or the new one, never a half-written one; if writing fails the temporary
file is removed and the old file, if any, is left as it was. `atomic_folder` does the same
for a folder (a SavedModel): it is written as `.NAME.tmp-PID` beside `NAME`, the old folder
moved aside to `.NAME.old-PID`, the new one moved in, the old one removed.

A process killed inside a write leaves its temporary file or folder behind. In a run folder
(locked, so no live process owns them) `remove_leftovers` clears them when the next run
starts; an old folder moved aside and never replaced is moved back. Elsewhere (reports,
figures) they are hidden files that readers ignore.

Imports nothing heavy (no TensorFlow): the command line uses it before TensorFlow starts.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from typing import IO, Iterable, Iterator, Sequence

from mwnet_tf.errors import TrainingError
from mwnet_tf.training import faults

CHECKPOINTS = "checkpoints"
DATA = "data.json"  # the fingerprint of the data the run started on (`content.fingerprint`)
# the temporary names of `atomic_file` and `atomic_folder`, and of the versions before them
# (`NAME.tmp-PID` files, `.weight_fn-XXXXXXXX` export folders); `atomic_path`'s keep the
# file's extension (`.STEM.tmp-PID.EXT`), which some writers need (Keras' `.keras`)
_LEFTOVER = re.compile(r"^(?:.+\.(?:tmp|old)-\d+|\..+\.tmp-\d+\.\w+|\.weight_fn-.+)$")
_OLD = re.compile(r"^\.(.+)\.old-\d+$")


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


def remove_leftovers(workdir: str) -> None:
    """Clears what interrupted writes left in the run folder and its checkpoints folder: an
    old folder moved aside whose replacement never arrived is moved back, every other
    temporary file or folder is removed. Only for a locked run folder (no live writer)."""
    for folder in (workdir, os.path.join(workdir, CHECKPOINTS)):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not is_leftover(name):
                continue
            old = _OLD.match(name)
            if old and os.path.isdir(path) and not os.path.exists(os.path.join(folder,
                                                                             old.group(1))):
                os.replace(path, os.path.join(folder, old.group(1)))
            elif os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


# --- progress files: the partial metric sums of the epoch a checkpoint stopped inside -------

def progress_path(ckpt_dir: str, number: int) -> str:
    """The progress file of checkpoint `number` (`ckpt-NUMBER`)."""
    return os.path.join(ckpt_dir, f"progress-{number}.json")


def checkpoint_number(checkpoint_path: str) -> int:
    """The number of a checkpoint path `.../ckpt-NUMBER`."""
    return int(checkpoint_path.rsplit("-", 1)[1])


def read_progress(ckpt_dir: str, latest: str | None) -> dict:
    """The partial metric sums of the epoch the checkpoint `latest` stopped inside ({} at an
    epoch's end or without a checkpoint)."""
    if not latest:
        return {}
    path = progress_path(ckpt_dir, checkpoint_number(latest))
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return dict(json.load(f)["sums"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainingError(f"cannot read {path}; move the checkpoints folder away or pick "
                            "another --workdir to start afresh") from None


def prune_progress(ckpt_dir: str, kept: list[str]) -> None:
    """Removes the progress files of checkpoints no longer kept (`kept`: their paths)."""
    keep = {os.path.basename(progress_path(ckpt_dir, checkpoint_number(p))) for p in kept}
    for name in os.listdir(ckpt_dir):
        if name.startswith("progress-") and name.endswith(".json") and name not in keep:
            os.remove(os.path.join(ckpt_dir, name))


def check_same_data(workdir: str, prints: dict[str, str]) -> None:
    """A run folder holding checkpoints resumes only on the data it started on: a
    `ValueError` when its `data.json` (written when it started) names other fingerprints
    (`prints`, per split). A folder without checkpoints starts afresh, one without
    `data.json` (written before it existed) is not checked."""
    path = os.path.join(workdir, DATA)
    ckpts = os.path.join(workdir, CHECKPOINTS)
    if not (os.path.isfile(path) and os.path.isdir(ckpts) and os.listdir(ckpts)):
        return
    try:
        with open(path) as f:
            old = json.load(f)
        changed = [k for k in prints if old.get(k) != prints[k]]
    except (OSError, ValueError, AttributeError):
        raise ValueError(f"cannot read {path}, the fingerprint of the data the run in "
                         f"{workdir} started on; pass another --workdir") from None
    if changed:
        names = [{"train": "training", "meta": "trusted"}.get(k, k) for k in changed]
        raise ValueError(
            f"{workdir} holds a run started on other data (its {' and '.join(names)} images "
            "or labels differ); pass another --workdir or give it the data it started on")
