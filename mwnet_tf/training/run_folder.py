"""The run folder on disk: leftovers of interrupted writes, and progress files.

The writer itself, and the names of the run folder's files, are `mwnet_tf.files`.
"""

from __future__ import annotations

import json
import os
import shutil

from mwnet_tf import files
from mwnet_tf.errors import TrainingError


def remove_leftovers(workdir: str) -> None:
    """Clears what interrupted writes left in the run folder and its checkpoints folder: an
    old folder moved aside whose replacement never arrived is moved back, every other
    temporary file or folder is removed. Only for a locked run folder (no live writer)."""
    for folder in (workdir, os.path.join(workdir, files.CHECKPOINTS)):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not files.is_leftover(name):
                continue
            old = files.OLD.match(name)
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
    `data.json` is not checked."""
    path = os.path.join(workdir, files.DATA)
    ckpts = os.path.join(workdir, files.CHECKPOINTS)
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
