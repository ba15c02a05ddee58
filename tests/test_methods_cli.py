"""Every method through the command line and the trainer: run folder, meta set, bad values."""

import json
import os

import numpy as np
import pytest

from mwnet_tf import methods
from mwnet_tf.config import METHODS, Config
from mwnet_tf.data import load_dataset, make_biased_data
from mwnet_tf.training import epoch, loop

pytestmark = pytest.mark.e2e  # runs programs or whole trainings: not in the fast tier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = [
    (["--method=focal", "--focal_gamma=-1"], "focal_gamma"),
    (["--method=ce", "--focal_gamma=1"], "--focal_gamma is a hyperparameter of --method=focal"),
    (["--method=co_teaching", "--ct_forget_rate=1.5"], "ct_forget_rate"),
    (["--method=confident_learning", "--cl_folds=1"], "cl_folds"),
    (["--method=nope"], "method"),
    (["--meta_scope=body"], "meta_scope"),
    (["--meta_interval=0"], "meta_interval"),
    (["--method=ce", "--meta_interval=2"], "--meta_interval is a hyperparameter of --method=mwnet"),
]
APPROX = ["--meta_scope=head", "--meta_interval=3", "--steps_per_call=4"]
# through the command line to the end (k + 1 stages; CMW-Net's class-aware net)
TRAINED = ("confident_learning", "cmwnet")
WEIGHT_FN = ("mwnet", "cmwnet", "cmwnet_sl")  # the methods that export a weight function
SELECTED = ("cmwnet_sl",)  # its meta set is selected from the training set (its default)
# the TensorBoard images are tested in tests/test_train.py; here they would only take time
QUIET = "--notensorboard_images"


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, cli):
    """Every method, the approximations and the bad values through the command line, in one
    runner (tests/cli.py): {key: (workdir, result)}."""
    base = tmp_path_factory.mktemp("methods_cli")
    cases, keys = [], []
    for method in METHODS:
        extra = ["--cl_folds=2"] if method == "confident_learning" else []
        keys.append(method)
        # every method's settings; one trains (the in-process runs of
        # test_meta_set_reaches_exactly_the_methods_that_use_it train them all)
        dry = [] if method in TRAINED else ["--dry_run"]
        cases.append(["--flagfile=flags/smoke.cfg", f"--method={method}", "--model=tiny",
                      "--epochs=1", "--lr_decay_epochs=", f"--workdir={base}/{method}", QUIET,
                      *extra, *dry])
    keys.append("instance")  # instance-dependent noise through the command line
    cases.append(["--flagfile=flags/smoke.cfg", "--noise=instance", "--method=ce",
                  "--model=tiny", "--epochs=1", "--lr_decay_epochs=", QUIET,
                  f"--workdir={base}/instance"])
    keys.append("approx")
    cases.append(["--flagfile=flags/smoke.cfg", "--model=tiny", *APPROX, QUIET,
                  f"--workdir={base}/approx"])
    keys.append("sampled")  # FaMUS's sampler, every other step
    cases.append(["--flagfile=flags/smoke.cfg", "--model=tiny", "--meta_scope=sampled",
                  "--meta_interval=2", "--meta_layers=4", QUIET, f"--workdir={base}/sampled"])
    for i, (args, _) in enumerate(BAD):
        keys.append(f"bad{i}")
        cases.append(["--flagfile=flags/smoke.cfg", *args, f"--workdir={base}/bad{i}"])
    return {k: (base / k, cli.run(*argv)) for k, argv in zip(keys, cases)}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_from_the_cli_with_its_hyperparameters_in_the_flagfile(cli_runs,
                                                                                  method):
    work, proc = cli_runs[method]
    assert proc.returncode == 0, proc.stderr[-3000:]
    if method in TRAINED:
        results = json.loads((work / "results.json").read_text())
        assert results["config"]["method"] == method
        assert 0 < results["test_accuracy"] <= 100
        assert len(results["per_class_test_accuracy"]) == 10
        flagfile = (work / "flags.cfg").read_text()
        assert os.path.isdir(work / "checkpoints")
        assert os.path.isdir(work / "weight_fn") == (method in WEIGHT_FN)
    else:  # --dry_run prints the flags.cfg the run would write
        flagfile = proc.stdout
        assert not os.path.exists(work)
    assert f"--method={method}" in flagfile
    # the normalization of the method's authors' code (protocols.paper_defaults), smoke.cfg
    # writing none
    norm = {"cmwnet": "batch_detached", "cmwnet_sl": "none"}.get(method, "batch")
    assert f"--weight_norm={norm}\n" in flagfile, method
    for p in methods.get(method).params:  # the method's hyperparameters are in flags.cfg
        if p.default is not None:
            assert f"--{p.name}=" in flagfile, p.name


def test_mwnet_approximations_train_through_the_cli(cli_runs):
    work, proc = cli_runs["approx"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert results["config"]["meta_scope"] == "head"
    assert results["config"]["meta_interval"] == 3
    assert np.isfinite(results["train"]["meta_loss"]) and results["train"]["meta_loss"] > 0
    assert "--meta_scope=head" in (work / "flags.cfg").read_text()


def test_famus_sampled_scope_trains_through_the_cli(cli_runs):
    """`--meta_scope=sampled --meta_interval=2`: of the tiny model's 6 variables the last 4
    are candidates, the output layer's 2 always kept; the epoch's mean count lies between."""
    work, proc = cli_runs["sampled"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert results["config"]["meta_scope"] == "sampled"
    assert 2 <= results["train"]["meta_layers"] <= 4
    assert np.isfinite(results["train"]["meta_loss"])


def test_instance_dependent_noise_trains_through_the_cli(cli_runs):
    work, proc = cli_runs["instance"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert results["config"]["noise"] == "instance" and results["config"]["rate"] == 0.4
    assert 0.3 < results["realized_noise_rate"] < 0.5  # flip rates drawn around 0.4
    assert f"{100 * results['realized_noise_rate']:.1f}% labels corrupted" in proc.stdout


@pytest.mark.parametrize("index", range(len(BAD)))
def test_bad_method_values_are_one_line_errors_with_exit_2(cli_runs, index):
    work, proc = cli_runs[f"bad{index}"]
    needle = BAD[index][1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not os.path.exists(work)


def test_every_method_declares_a_reference_and_valid_defaults():
    names = {}
    for name in METHODS:
        cls = methods.get(name)
        assert cls.name == name and cls.reference, name
        for p in cls.params:  # a flag shared by methods is one Param (CMW-Net's MW-Net flags)
            assert names.get(p.name, p) is p and p.check(p.default) is None, p.name
            names[p.name] = p


def test_meta_set_reaches_exactly_the_methods_that_use_it(tmp_path, monkeypatch):
    """Methods that use clean data get the run's one meta set; the others never get meta
    batches (their pipelines do not build the meta stream). Each writes its run folder."""
    data = make_biased_data(load_dataset("digits"), noise="uniform", rate=0.4,
                            meta_per_class=10, seed=3)
    seen = []
    real = epoch.make_train_dataset

    def spy(stage_data, **kwargs):
        seen.append((stage_data, kwargs["with_meta"]))
        return real(stage_data, **kwargs)

    monkeypatch.setattr(epoch, "make_train_dataset", spy)
    for name in METHODS:
        seen.clear()
        params = {"cl_folds": 2} if name == "confident_learning" else {}
        config = Config(dataset="digits", model="tiny", method=name, epochs=1,
                        batch_size=100, meta_batch_size=50, progress_seconds=0.0, seed=3,
                        method_params=params, tensorboard_images=False,
                        meta_source="selected" if name in SELECTED else "trusted")
        loop.train_and_evaluate(config, str(tmp_path / name), data=data, log=lambda s: None)
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["config"]["method"] == name and 0 < results["test_accuracy"] <= 100
        assert len(results["per_class_test_accuracy"]) == 10, name
        assert os.path.isdir(tmp_path / name / "checkpoints"), name
        assert os.path.isdir(tmp_path / name / "weight_fn") == (name in WEIGHT_FN), name
        uses_meta = methods.get(name).uses_meta
        assert seen, name
        for stage_data, with_meta in seen:
            if name in SELECTED and with_meta:  # a meta set chosen from the training set
                assert np.isin(stage_data.meta_index, data.train_index).all(), name
                continue
            # every stage's data carries the run's meta split, unchanged
            np.testing.assert_array_equal(stage_data.meta_index, data.meta_index)
            assert with_meta <= uses_meta, name
            if not uses_meta:  # its training rows never include a meta image
                assert not np.isin(stage_data.train_index, data.meta_index).any(), name
        assert any(w for _, w in seen) == (name in ("l2rw", "glc", *WEIGHT_FN)), name
