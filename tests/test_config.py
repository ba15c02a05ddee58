"""Paper defaults per setting, flag resolution, and agreement of the flagfiles with the code."""

import glob
import os
import re

import pytest

from mwnet_tf import protocols
from mwnet_tf.config import Config
from mwnet_tf.protocols import paper_defaults, run_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dry_run(cli):
    """`python -m mwnet_tf.train --dry_run ARGS`: the resolved flags as a dict."""
    def run(*args):
        proc = cli.run("--dry_run", *args)
        assert proc.returncode == 0, proc.stderr
        return dict(line[2:].split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return run


@pytest.mark.e2e
def test_bare_command_runs_table3_protocol_and_flags_override(dry_run):
    got = dry_run("--dataset=cifar100", "--noise=flip", "--rate=0.4", "--seed=7")
    assert (got["model"], got["epochs"], got["lr_decay_epochs"]) == ("resnet32", "60", "40,50")
    assert got["meta_per_class"] == "10"  # 1000 clean meta images over 100 classes
    assert got["meta_optimizer"] == "adam" and got["workdir"] == "runs/cifar100-flip0.4-mwnet-s7"
    over = dry_run("--dataset=cifar100", "--noise=flip", "--rate=0.4", "--epochs=5",
                   "--lr_decay_epochs=2,4", "--model=wrn28_10")
    assert (over["model"], over["epochs"], over["lr_decay_epochs"]) == ("wrn28_10", "5", "2,4")


def test_uniform_noise_runs_table2_protocol(dry_run):
    got = dry_run("--dataset=cifar10", "--noise=uniform", "--rate=0.6")
    assert (got["model"], got["epochs"], got["lr_decay_epochs"]) == ("wrn28_10", "40", "36,38")
    assert got["meta_per_class"] == "100" and got["meta_optimizer"] == "sgd"


def test_every_shipped_flagfile_is_its_own_part_and_its_settings_defaults():
    """paper_defaults is the source; a flagfile's part below the marker is made from it."""
    paths = sorted(glob.glob(os.path.join(REPO, "flags", "*.cfg")))
    assert len(paths) == 45
    for path in paths:
        text = open(path).read()
        assert protocols.flagfile_text(text) == text, (
            f"{path} is stale: python -m mwnet_tf.report --flagfiles flags")
        own = protocols.given_flags(text.split(protocols.DEFAULTS_MARKER)[0])
        assert "dataset" in own and "method" in own, path


def test_a_flagfiles_defaults_follow_paper_defaults_and_its_own_part():
    own = "# a header\n\n--dataset=cifar10\n--noise=flip\n--rate=0.4\n--epochs=7\n"
    text = protocols.flagfile_text(own)
    assert text.startswith(own) and protocols.flagfile_text(text) == text
    got = protocols.given_flags(text)
    expected = protocols.paper_defaults("cifar10", "flip", 1.0)
    assert got["epochs"] == "7" and "lr_decay_epochs" not in got  # the trainer scales it
    assert got["model"] == expected["model"] and float(got["meta_lr"]) == expected["meta_lr"]
    assert got["nesterov"] == "False"  # written --nonesterov
    # CIFAR without noise is Table 1's protocol (its imbalance-1 column)
    assert protocols.paper_defaults("cifar10", "none", 1.0)["epochs"] == 100
    stale = text.replace("--model=resnet32", "--model=wrn28_10")
    assert protocols.flagfile_text(stale) == text


def test_the_digits_and_fashion_flagfiles_run_their_settings(dry_run):
    files = sorted(f for f in glob.glob(os.path.join(REPO, "flags", "fashion_*.cfg")) +
                   glob.glob(os.path.join(REPO, "flags", "digits_*.cfg"))
                   if "_memorize_" not in f)  # own data (an npz subset): the next test
    assert [os.path.basename(f) for f in files] == [
        "digits_flip0.4.cfg", "digits_instance0.4.cfg", "digits_longtail20.cfg",
        "digits_longtail20_flip0.2.cfg",
        "fashion_flip0.4.cfg", "fashion_instance0.4.cfg", "fashion_longtail10.cfg",
        "fashion_longtail100.cfg", "fashion_longtail10_flip0.2.cfg", "fashion_uniform0.4.cfg"]
    for path in files:
        got = dry_run(f"--flagfile={path}")
        name = os.path.basename(path)
        assert got["dataset"] == ("digits" if name.startswith("digits") else "fashion_mnist")
        if "longtail" in name:
            assert float(got["imbalance"]) == float(name.split("longtail")[1].split("_")[0]
                                                    .removesuffix(".cfg"))


def test_memorization_flagfiles_train_the_mlp_on_an_npz_subset_without_regularization(dry_run):
    files = sorted(glob.glob(os.path.join(REPO, "flags", "fashion_memorize_*.cfg")))
    assert [os.path.basename(f) for f in files] == [
        "fashion_memorize_flip0.4.cfg", "fashion_memorize_uniform0.4.cfg"]
    for path in files:
        got = dry_run(f"--flagfile={path}", "--data_dir=sub/fashion.npz", "--seed=1")
        noise = os.path.basename(path).removeprefix("fashion_memorize_").removesuffix("0.4.cfg")
        assert (got["dataset"], got["noise"], got["rate"]) == ("npz", noise, "0.4")
        assert (got["model"], got["epochs"], got["lr_decay_epochs"]) == ("mlp", "60", "40,50")
        assert (got["weight_decay"], got["lr"], got["batch_size"]) == ("0.0", "0.1", "100")
        assert "--noaugment" in open(path).read().split() and got["seed"] == "1"
        # the header's commands name this flagfile and the subset the runs use
        header = "".join(line for line in open(path) if line.startswith("#"))
        assert f"--flagfile=flags/{os.path.basename(path)}" in header
        assert "--train_per_class=2000" in header


def test_config_rejects_bad_values_with_every_message():
    with pytest.raises(ValueError) as e:
        Config(rate=2.0, epochs=3, lr_decay_epochs=(5,), weight_norm="sum")
    for needle in ("rate", "lr_decay_epochs", "weight_norm"):
        assert needle in str(e.value)


def test_run_name_says_the_setting():
    assert run_name(Config(dataset="cifar10", noise="none", rate=0.0, imbalance=100,
                           model="resnet32", method="ce", seed=2)) == "cifar10-clean-lt100-ce-s2"


def test_cifar_n_flagfiles_run_table3_protocol_and_name_their_label_set(cli):
    files = sorted(glob.glob(os.path.join(REPO, "flags", "cifar10*n*.cfg")))
    assert [os.path.basename(f) for f in files] == [
        "cifar100n.cfg", "cifar10n_aggregate.cfg", "cifar10n_random1.cfg",
        "cifar10n_random2.cfg", "cifar10n_random3.cfg", "cifar10n_worst.cfg"]
    argvs = [[f"--flagfile={path}", "--noise_labels=DIR/labels.pt"] for path in files] + [
        ["--dataset=cifar10", "--noise=human", "--noise_labels=CIFAR-10_human.pt"],
        ["--dataset=cifar100", "--noise=human", "--noise_labels=labels.npy"]]
    outs = [cli.run("--dry_run", *a) for a in argvs]
    assert all(o.returncode == 0 for o in outs), [o.stderr[-500:] for o in outs]
    runs = [dict(line[2:].split("=", 1) for line in o.stdout.splitlines() if "=" in line)
            for o in outs]
    for path, got in zip(files, runs):
        name = os.path.basename(path)
        label_set = "noisy_fine" if name == "cifar100n.cfg" else name[9:-4]
        assert (got["noise"], got["noise_label_set"], got["rate"]) == ("human", label_set, "0.0")
        assert got["workdir"] == f"runs/{got['dataset']}-human_{label_set}-mwnet-s0"
        expected = paper_defaults(got["dataset"], "human", 1.0)
        assert expected == paper_defaults(got["dataset"], "flip", 1.0)  # Table 3's protocol
        for key in ("model", "epochs", "meta_per_class", "meta_optimizer", "lr", "meta_lr",
                    "batch_size", "weight_decay", "meta_weight_decay"):
            assert got[key] == str(expected[key]), (name, key)
        assert got["lr_decay_epochs"] == ",".join(map(str, expected["lr_decay_epochs"]))
        assert f"--noise_label_set={label_set}" in open(path).read()
    bare, plain = runs[len(files):]
    assert bare["noise_label_set"] == "worst" and bare["model"] == "resnet32"
    assert "noise_label_set" not in plain and plain["workdir"].endswith("-human_file-mwnet-s0")


@pytest.mark.e2e
def test_table4_flagfile_is_clothing1ms_paper_defaults(dry_run):
    path = os.path.join(REPO, "flags", "table4_clothing1m.cfg")
    with open(path) as f:
        text = f.read()
    values = dict(line.strip()[2:].split("=", 1) for line in text.splitlines()
                  if line.startswith("--") and "=" in line)
    expected = paper_defaults("clothing1m", "none", 1.0)
    assert (expected["model"], expected["epochs"], expected["lr_decay_epochs"]) == (
        "resnet50", 10, (5,))
    assert (expected["lr"], expected["momentum"], expected["weight_decay"]) == (0.01, 0.9, 1e-3)
    assert (expected["batch_size"], expected["meta_batch_size"], expected["meta_lr"]) == (
        32, 32, 1e-3)
    for key in ("model", "epochs", "batch_size", "meta_batch_size", "eval_batch_size", "lr",
                "momentum", "weight_decay", "meta_optimizer", "meta_lr", "meta_weight_decay"):
        want = expected[key]
        assert float(values[key]) == want if isinstance(want, float) else values[key] == str(
            want), key
    assert values["lr_decay_epochs"] == "5" and "--nonesterov" in text
    # the bare command and the flagfile resolve to the same run
    bare = dry_run("--dataset=clothing1m", "--data_dir=DIR", "--pretrained=W.h5")
    flagged = dry_run(f"--flagfile={path}", "--data_dir=DIR", "--pretrained=W.h5")
    assert bare == flagged
    assert bare["noise"] == "none" and bare["workdir"] == "runs/clothing1m-mwnet-s0"
    assert "--python -m mwnet_tf.train --flagfile=flags/table4_clothing1m.cfg" not in text
    assert "python -m mwnet_tf.train --flagfile=flags/table4_clothing1m.cfg --data_dir=DIR " \
           "--pretrained=FILE" in text


def test_own_data_values_and_their_checks():
    from mwnet_tf.config import is_own_dataset
    assert all(is_own_dataset(d) for d in ("folder", "csv", "npz", "tfds:mnist"))
    assert not any(is_own_dataset(d) for d in ("tfds:", "digits", "imagenet"))
    d = paper_defaults("folder", "uniform", 1.0)
    assert (d["model"], d["noise"], d["rate"], d["meta_per_class"]) == ("auto", "none", 0.0, None)
    assert paper_defaults("tfds:mnist", "uniform", 1.0)["meta_per_class"] == 10
    own = Config(**{**d, "dataset": "folder"}, image_size=48, test_fraction=0.3,
                 augment=False)
    assert run_name(own) == "folder-given-mwnet-s0"
    assert run_name(own.replace(dataset="tfds:mnist", meta_per_class=5)).startswith("tfds_mnist")
    Config(dataset="npz", model="net.keras", noise="none", rate=0.0, meta_per_class=None)
    bad = {
        "--test_fraction, --augment": dict(dataset="digits", augment=True),
        "needs --meta_per_class": dict(dataset="tfds:mnist", meta_per_class=None, noise="none",
                                       rate=0.0),
        "--meta_per_class": dict(dataset="digits", meta_per_class=None),
        "is not a model": dict(model="net.h5"),
        "auto (own data)": dict(model="auto"),
        "test_fraction must lie": dict(dataset="npz", noise="none", rate=0.0, test_fraction=1.0),
        "--image_size goes with": dict(image_size=64),
        "--noise=hierarchical does not apply": dict(dataset="npz", noise="hierarchical"),
    }
    for message, values in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            Config(**values)


def test_own_data_takes_its_weight_net_and_the_paper_flagfiles_keep_theirs(cli):
    from mwnet_tf.protocols import OWN_DATA_WEIGHT_NET, TABLE1_WEIGHT_NET
    def weight_net(*args):
        """The five weight-net values the command resolves, typed as in the config."""
        proc = cli.run("--dry_run", *args)
        assert proc.returncode == 0, proc.stderr
        got = {}
        for line in proc.stdout.splitlines():
            name, _, value = line[2:].partition("=")
            if name.removeprefix("no") == "meta_nesterov":
                got["meta_nesterov"] = not name.startswith("no")
            elif name in OWN_DATA_WEIGHT_NET:
                got[name] = value if name == "meta_optimizer" else float(value)
        return got

    def flagfile(name):
        return f"--flagfile={os.path.join(REPO, 'flags', name)}"

    # own data without weight-net flags, in every format, with noise or a long tail on top
    for args in (("--dataset=npz", "--data_dir=t.npz"), ("--dataset=folder", "--data_dir=pets"),
                 ("--dataset=csv", "--data_dir=t.csv", "--noise=flip", "--rate=0.3"),
                 ("--dataset=npz", "--data_dir=t.npz", "--imbalance=10"),
                 ("--dataset=tfds:mnist", "--noise=uniform", "--rate=0.4")):
        assert weight_net(*args) == OWN_DATA_WEIGHT_NET, args
    assert OWN_DATA_WEIGHT_NET["meta_optimizer"] == "sgd"  # not the base default's Adam
    # a weight-net flag given still wins over the own-data default
    given = weight_net("--dataset=npz", "--data_dir=t.npz", "--meta_optimizer=sgd",
                       "--meta_lr=1e-5")
    assert (given["meta_optimizer"], given["meta_lr"]) == ("sgd", 1e-5)
    # the built-in paper flagfiles keep their own: Table 1's SGD 1e-5 (also the digits long
    # tail's), Table 2's (uniform) SGD 1e-3, Table 3's Adam 1e-3
    assert weight_net(flagfile("table1_cifar10_longtail100.cfg")) == TABLE1_WEIGHT_NET
    assert weight_net(flagfile("digits_longtail20.cfg")) == TABLE1_WEIGHT_NET
    table2 = weight_net(flagfile("table2_cifar10_uniform0.4.cfg"))
    assert (table2["meta_optimizer"], table2["meta_lr"], table2["meta_nesterov"]) == (
        "sgd", 1e-3, True)
    table3 = weight_net(flagfile("table3_cifar10_flip0.4.cfg"))
    assert (table3["meta_optimizer"], table3["meta_lr"], table3["meta_nesterov"]) == (
        "adam", 1e-3, False)
