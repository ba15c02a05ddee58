"""Defaults that follow the flags given: the learning-rate schedule of a run given --epochs,
checked for every built-in setting and flagfile without training."""

import json
import os
import subprocess
import sys

import pytest

from mwnet_tf.protocols import scaled_schedule

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = os.path.join(REPO, "mwnet_tf", "flagfiles")

# In one child process (no TensorFlow): each argument list parsed as `mwnet_tf.train` parses it,
# then its Config and the lines the log prints, as JSON.
_PARSE = """
import json, sys
from absl import flags
from mwnet_tf import train
from mwnet_tf.cli import commandline
train.define_flags()
out = []
for argv in json.loads(sys.stdin.read()):
    flags.FLAGS.unparse_flags()
    argv = ["train", *argv]
    flags.FLAGS(commandline.resolve_flagfiles(argv))
    notes = []
    try:
        c = train.config_from_flags(flags.FLAGS, commandline.flag_sources(argv), notes)
        out.append({"epochs": c.epochs, "decay": list(c.lr_decay_epochs), "notes": notes})
    except ValueError as e:
        out.append({"error": str(e)})
assert "tensorflow" not in sys.modules
print(json.dumps(out))
"""


def _parse(argvs: list[list[str]]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", _PARSE], input=json.dumps(argvs),
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_scaled_schedule_keeps_the_fractions_within_the_run():
    assert scaled_schedule((40, 50), 60, 60) == (40, 50)
    assert scaled_schedule((40, 50), 60, 10) == (7, 8)
    assert scaled_schedule((40, 50), 60, 120) == (80, 100)
    assert scaled_schedule((36, 38), 40, 10) == (9,)  # 9.5 rounds to 10, the last epoch: dropped
    assert scaled_schedule((8, 10), 12, 4) == (3,)  # 2.67 and 3.33 both round to 3: one kept
    assert scaled_schedule((40, 50), 60, 2) == ()  # too short for a decay
    assert scaled_schedule((15,), 20, 3) == (2,)


EPOCHS = (1, 2, 3, 10, 500)
SETTINGS = [["--dataset=cifar100", "--noise=flip", "--rate=0.4"],
            ["--dataset=cifar10", "--noise=uniform", "--rate=0.6"],
            ["--dataset=cifar10", "--noise=none", "--rate=0", "--imbalance=100"],
            ["--dataset=fashion_mnist"], ["--dataset=fashion_mnist", "--imbalance=10"],
            ["--dataset=digits"], ["--dataset=digits", "--imbalance=20"],
            ["--dataset=clothing1m"], ["--dataset=folder", "--data_dir=pets"],
            ["--dataset=npz", "--data_dir=t.npz"], ["--dataset=tfds:mnist"]]


def test_every_setting_and_flagfile_given_epochs_parses_to_a_valid_config():
    names = sorted(n.removesuffix(".cfg") for n in os.listdir(FLAGFILES))
    assert len(names) == 45
    extra = {"cifar10n": ["--noise_labels=labels.pt"], "cifar100n": ["--noise_labels=l.pt"],
             "fashion_memorize": ["--data_dir=f.npz"]}
    bases = SETTINGS + [[f"--flagfile={n}", *next((v for k, v in extra.items()
                                                   if n.startswith(k)), [])] for n in names]
    argvs = [[*base, f"--epochs={n}"] for base in bases for n in EPOCHS]
    for argv, got in zip(argvs, _parse(argvs)):
        assert "error" not in got, (argv, got)
        epochs = int(argv[-1].split("=")[1])
        assert got["epochs"] == epochs
        assert all(0 < d < epochs for d in got["decay"]) and got["decay"] == sorted(
            set(got["decay"])), (argv, got)
        if epochs < 3 and argv[0] != "--flagfile=smoke":  # smoke's own 2 epochs decay after 1
            assert got["decay"] == [], (argv, got)
        if epochs == 500:  # every setting has a decay, scaled up with the run
            assert got["decay"] and got["decay"][0] > 100, (argv, got)
        assert len(got["notes"]) <= 1 and all(n.startswith("lr schedule: ") for n in got["notes"])


@pytest.mark.parametrize("argv, decay, note", [
    # the setting's schedule, scaled: one line says so
    (["--dataset=cifar100", "--noise=flip", "--rate=0.4", "--epochs=10"], [7, 8],
     "lr schedule: decay after epochs 7,8 (the setting's decay after epochs 40,50 of 60, "
     "scaled to --epochs=10; --lr_decay_epochs sets another)"),
    (["--dataset=folder", "--data_dir=pets", "--epochs=2"], [],
     "lr schedule: constant lr (--epochs=2 leaves no room for the setting's decay after "
     "epochs 15 of 20; --lr_decay_epochs sets one)"),
    # a flagfile's schedule, written for its own epochs, follows --epochs given after it
    (["--flagfile=fashion_flip0.4", "--epochs=5"], [3, 4], "the flagfile's decay after epochs "
     "8,10 of 12"),
    # given with the epochs (on the command line, or both in one flagfile): as given, silently
    (["--dataset=cifar100", "--epochs=7", "--lr_decay_epochs=3"], [3], None),
    (["--dataset=cifar100", "--lr_decay_epochs=3", "--epochs=7"], [3], None),
    (["--flagfile=smoke"], [1], None),
    (["--flagfile=fashion_flip0.4", "--epochs=5", "--lr_decay_epochs="], [], None),
    (["--epochs", "5", "--flagfile=smoke"], [1], None),  # the flagfile's epochs come last
    (["--dataset=digits", "--epochs=30"], [20, 25], None),  # the setting's own length
])
def test_the_schedule_follows_epochs_unless_given_with_them(argv, decay, note):
    got, = _parse([argv])
    assert got["decay"] == decay, got
    if note is None:
        assert got["notes"] == []
    else:
        assert len(got["notes"]) == 1 and note in got["notes"][0], got["notes"]


def test_a_schedule_the_user_gives_that_does_not_fit_is_still_refused():
    got, = _parse([["--dataset=cifar100", "--epochs=10", "--lr_decay_epochs=40,50"]])
    assert got["error"] == "lr_decay_epochs must be increasing epochs between 1 and epochs - 1"


# ---------------------------------------------------------------- --meta_seed, --noise_seed


def _own(n_train=200, n_meta=60):
    import numpy as np

    from mwnet_tf.data import OwnData
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train, 4, 4, 1), dtype=np.uint8)
    return OwnData("npz", "-", ("a", "b", "c"), x, np.arange(n_train) % 3, x[:n_meta],
                   np.arange(n_meta) % 3, x[:6], np.arange(6) % 3, (0.5,), (0.25,),
                   augment=False)


def test_own_data_honours_the_seeds_of_its_trusted_draw_and_its_noise():
    import numpy as np

    from mwnet_tf.data import make_own_biased_data
    own = _own()
    args = dict(noise="uniform", rate=0.5, meta_per_class=5)
    base = make_own_biased_data(own, **args, seed=0)
    same = make_own_biased_data(own, **args, seed=0, meta_seed=0, noise_seed=0)
    meta = make_own_biased_data(own, **args, seed=0, meta_seed=1)
    noise = make_own_biased_data(own, **args, seed=0, noise_seed=1)
    assert np.array_equal(same.meta_index, base.meta_index)
    assert np.array_equal(same.train_y, base.train_y)
    # --meta_seed: another trusted draw, the same noise
    assert not np.array_equal(meta.meta_index, base.meta_index)
    assert np.array_equal(meta.train_y, base.train_y)
    # --noise_seed: other labels corrupted, the same trusted draw
    assert np.array_equal(noise.meta_index, base.meta_index)
    assert not np.array_equal(noise.train_y, base.train_y)
    # the part's seed draws as the run seed would have drawn it
    other = make_own_biased_data(own, **args, seed=1)
    assert np.array_equal(meta.meta_index, other.meta_index)
    assert np.array_equal(noise.train_y, other.train_y)


@pytest.mark.parametrize("values, message", [
    (dict(dataset="clothing1m", meta_seed=1), "--meta_seed does not apply to "
     "--dataset=clothing1m"),
    (dict(dataset="clothing1m", noise_seed=1, meta_seed=2), "--meta_seed, --noise_seed do not "
     "apply to --dataset=clothing1m"),
    (dict(dataset="folder", noise_seed=1), "--noise_seed seeds a synthetic --noise"),
    (dict(dataset="csv", meta_seed=1), "--meta_seed seeds the draw of --meta_per_class"),
])
def test_seeds_without_a_draw_to_seed_are_refused(values, message):
    from mwnet_tf.config import Config
    from mwnet_tf.protocols import paper_defaults
    defaults = paper_defaults(values["dataset"], "none", 1.0)
    with pytest.raises(ValueError, match=message):
        Config(**{**defaults, "dataset": values["dataset"], "model": "cnn",
                  **({"model": "resnet50"} if values["dataset"] == "clothing1m" else {}),
                  **values})
    # where there is a draw, the same seeds are taken
    if values["dataset"] != "clothing1m":
        Config(**{**defaults, **values, "model": "cnn", "noise": "flip", "rate": 0.2,
                  "meta_per_class": 3})


# ---------------------------------------------------------------- --data_dir before TensorFlow


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory):
    """An environment in which `import tensorflow` fails (as in tests/test_commands.py)."""
    blocker = tmp_path_factory.mktemp("blocker")
    (blocker / "tensorflow").mkdir()
    (blocker / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('tensorflow imported before --data_dir was checked')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), REPO]))


def _train(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "mwnet_tf.train", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, code, message", [
    (["--dataset=folder", "--data_dir=nowhere"], 1,
     "--data_dir=nowhere does not exist or is not a folder"),
    (["--dataset=folder"], 1, "--dataset=folder needs --data_dir=DIR"),
    (["--dataset=csv", "--data_dir=data"], 1, "is a folder: --dataset=csv needs the .csv"),
    (["--dataset=csv", "--data_dir=none.csv"], 1, "none.csv: no such file"),
    (["--dataset=npz", "--data_dir=none.npz"], 1, "none.npz: no such file"),
    (["--dataset=clothing1m", "--data_dir=nowhere"], 1, "does not exist or is not a folder"),
    (["--dataset=fashion_mnist", "--data_dir=nowhere"], 1, "does not exist or is not a folder"),
    (["--dataset=tfds:mnist", "--data_dir=nowhere"], 1, "does not exist or is not a folder"),
    (["--dataset=folder", "--data_dir=data", "--workdir=data"], 2,
     "--workdir=data is --data_dir=data: the run would write into the data set's folders"),
    (["--dataset=folder", "--data_dir=data", "--workdir=data/runs/a"], 2,
     "--workdir=data/runs/a is inside --data_dir=data"),
    (["--dataset=folder", "--data_dir=./data/", "--workdir=link/train"], 2, "is inside"),
    (["--dataset=csv", "--data_dir=data/t.csv", "--workdir=data"], 2,
     "is the folder of the table --data_dir=data/t.csv"),
])
def test_data_dir_and_a_workdir_inside_it_answer_before_tensorflow(
        tmp_path, no_tensorflow, args, code, message):
    data = tmp_path / "data"
    (data / "train" / "cat").mkdir(parents=True)
    (data / "t.csv").write_text("path,label,split\n")
    (tmp_path / "link").symlink_to(data)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = _train(args, no_tensorflow, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and message in lines[0], lines
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_workdir_beside_the_data_is_taken(tmp_path):
    from mwnet_tf.data import data_dir
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "t.csv").write_text("")
    for dataset, where in (("folder", "data"), ("csv", "data/t.csv")):
        path = str(tmp_path / where)
        assert data_dir.problem(dataset, path) is None
        assert data_dir.workdir_problem(dataset, path, str(tmp_path / "runs" / "a")) is None
        assert data_dir.workdir_problem(dataset, path, str(tmp_path / "data2")) is None
    # a csv's runs in a folder beside the table, inside its folder, are its own
    assert data_dir.workdir_problem("csv", str(tmp_path / "data" / "t.csv"),
                                    str(tmp_path / "data" / "runs" / "a")) is None


# ---------------------------------------------------------------- clean / corrupted unknown


def test_weights_of_clean_and_corrupted_samples_only_where_the_truth_is_known():
    from mwnet_tf import plot
    from mwnet_tf.data import make_own_biased_data
    from mwnet_tf.training import epoch
    own = _own()
    given = make_own_biased_data(own, seed=0)  # the labels as given: truth unknown
    noisy = make_own_biased_data(own, noise="flip", rate=0.3, seed=0)  # noise added: known
    assert not given.corruption_known and noisy.corruption_known
    sums = {"count": 4, "loss_sum": 2.0, "correct": 3, "steps": 2, "weight_sum": 2.0,
            "count_corrupted": 1, "weight_sum_corrupted": 0.2}
    assert epoch.epoch_metrics(sums, corruption_known=False) == {
        "loss": 0.5, "accuracy": 75.0, "weight_mean": 0.5}
    assert {"weight_clean", "weight_corrupted"} <= set(epoch.epoch_metrics(sums))
    # history.json then holds the mean weight, which the figures read
    assert plot.mean_weight({"weight_mean": 0.4}, {"clean": [3], "corrupted": [0]}) == 0.4


# ---------------------------------------------------------------- a run of own data (e2e)


@pytest.mark.e2e
def test_own_data_with_two_epochs_trains_and_writes_paths_relative_to_the_data(cli, tmp_path):
    import csv

    from test_own_data import make_folder
    from test_own_data_cli import csv_table
    folder = make_folder(tmp_path / "pets", {"train": 8, "meta": 3}, classes=("dog", "cat"))
    (tmp_path / "table").mkdir()
    table = csv_table(tmp_path / "table")  # paths relative to the table's folder
    routes = {"folder": (folder, folder), "csv": (table, os.path.dirname(table))}
    for dataset, (data, root) in routes.items():
        run = str(tmp_path / f"run_{dataset}")
        out = cli.run(f"--dataset={dataset}", f"--data_dir={data}", "--image_size=16",
                      "--epochs=2", "--batch_size=4", "--meta_batch_size=2",
                      "--progress_seconds=0", "--notensorboard_images", f"--workdir={run}")
        assert out.returncode == 0, out.stderr[-3000:]
        assert ("lr schedule: constant lr (--epochs=2 leaves no room for the setting's decay "
                "after epochs 15 of 20; --lr_decay_epochs sets one)") in out.stdout
        epochs = [line for line in out.stdout.splitlines() if line.startswith("epoch ")]
        assert len(epochs) == 2 and all(" lr 0.05 " in line for line in epochs), epochs
        if dataset == "folder":  # labels as given: which are wrong is unknown
            assert "weight_clean" not in out.stdout and "weight_corrupted" not in out.stdout
            history = json.load(open(os.path.join(run, "history.json")))
            assert "weight_mean" in history[-1] and "weight_clean" not in history[-1]
        else:  # the table's true_label column: known
            assert "weight_clean" in out.stdout
        with open(os.path.join(run, "label_issues.csv")) as f:
            paths = [r["path"] for r in csv.DictReader(f)]
        assert len(paths) == 16 and len(set(paths)) == 16
        assert all(not os.path.isabs(p) and not p.startswith("..") and
                   os.path.isfile(os.path.join(root, p)) for p in paths), paths[:3]
        if dataset == "folder":
            assert all(p.startswith("train" + os.sep) for p in paths)
        # the log's table prints them uncut, as the file has them
        head = out.stdout.split("suspect labels:", 1)[1]
        assert sum(p in head for p in paths) == 10, head
