"""`--data_dir` checked before anything is loaded: that it exists as the data set needs it, and
that the run folder is not inside it.

The commands call these before TensorFlow is imported, so that a mistyped path answers at once;
the messages are the loaders' own (`datasets`, `clothing1m`, `custom.load`, `custom.from_files`,
`custom.from_npz`), which still check when called from Python. Imports nothing heavy.
"""

from __future__ import annotations

import os

# The data sets read from a folder named by --data_dir (tfds:NAME: its data_dir).
_FOLDER_DATASETS = ("cifar10", "cifar100", "fashion_mnist", "clothing1m", "folder")
_NEEDS = {
    "folder": "DIR, the folder holding train/ and meta/ (and maybe test/)",
    "csv": "FILE.csv, the table of path,label[,split][,true_label] rows",
    "npz": "FILE.npz, the arrays x_train, y_train, x_meta, y_meta",
    "clothing1m": "DIR, the folder holding Clothing1M's annotation files and images/ (this "
                  "program never downloads)"}


def problem(dataset: str, data_dir: str | None) -> str | None:
    """Why `--data_dir` cannot hold `--dataset`'s data (a missing folder or file), else None.
    A data set that may be read without --data_dir (digits, tfds, CIFAR and Fashion-MNIST
    prepared for tfds) is not checked without one."""
    if data_dir is None:
        return f"--dataset={dataset} needs --data_dir={_NEEDS[dataset]}" if (
            dataset in _NEEDS) else None
    if dataset in _FOLDER_DATASETS or dataset.startswith("tfds:"):
        if not os.path.isdir(data_dir):
            return f"--data_dir={data_dir} does not exist or is not a folder"
    elif dataset == "csv":
        if os.path.isdir(data_dir):
            return f"--data_dir={data_dir} is a folder: --dataset=csv needs the .csv file itself"
        if not os.path.isfile(data_dir):
            return f"{data_dir}: no such file (the CSV table of the data)"
    elif dataset == "npz" and not os.path.isfile(data_dir):
        return f"{data_dir}: no such file (the .npz file of the data)"
    return None


def data_root(dataset: str, data_dir: str | None) -> str | None:
    """The folder the paths of a data set read from files are relative to: --data_dir for an
    image folder and Clothing1M, the table's folder for --dataset=csv (its rows' paths are
    relative to it); None for data in memory."""
    if data_dir is None:
        return None
    if dataset == "csv":
        return os.path.dirname(os.path.abspath(data_dir))
    return data_dir if dataset in ("folder", "clothing1m") else None


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or os.path.commonpath([path, folder]) == folder


def workdir_problem(dataset: str, data_dir: str | None, workdir: str) -> str | None:
    """Why the run folder `workdir` may not be where it is: the folder of the data set, or
    inside it (its train/ and test/ would receive the run's TensorBoard events, and a walk of
    the folder would find the run's files); for --dataset=csv, the table's own folder, which
    holds the images its rows name. Else None."""
    if data_dir is None:
        return None
    if dataset in _FOLDER_DATASETS or dataset.startswith("tfds:"):
        if _inside(workdir, data_dir):
            where = ("is" if os.path.realpath(workdir) == os.path.realpath(data_dir)
                     else "is inside")
            return (f"--workdir={workdir} {where} --data_dir={data_dir}: the run would write "
                    "into the data set's folders; pass a --workdir outside it")
    elif dataset == "csv":
        table_dir = os.path.dirname(os.path.abspath(data_dir))
        if os.path.realpath(workdir) == os.path.realpath(table_dir):
            return (f"--workdir={workdir} is the folder of the table --data_dir={data_dir}: the "
                    "run would write into the data set's folders; pass another --workdir")
    return None
