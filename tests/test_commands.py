"""The commands' own command line: --help and bad flags answered before TensorFlow is imported,
the console scripts showing what `python -m` shows, the flagfiles shipped in the package, and
the built wheel running installed in a fresh virtual environment."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

from mwnet_tf.cli import commandline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# command -> (flags its --help must list, a misspelled flag, a bad value)
COMMANDS = {
    "train": (("--epochs", "--method", "--meta_scope", "--flagfile"), "--epochz=3",
              ("--rate=2", "--dataset=nope", "--method=nope")),
    "bench": (("--variants", "--model", "--memory"), "--modle=tiny", ("--model=nope",)),
    "bench_jpeg": (("--images", "--passes"), "--imagez=3", ("--images=0",)),
    "bench_jit": (("--replicas", "--variants"), "--replica=2", ("--replicas=3",)),
    "plot": (("--out",), "--outt=x", ("--verbosity=x",)),
    "report": (("--keep", "--readme", "--render"), "--kepp", ("--check=maybe",)),
    "launch": (("--workers", "--threads"), "--worker=2", ("--workers=0",)),
    "predict": (("--data_dir", "--out"), "--outt=x", ("--batch_size=0",)),
}


def test_every_command_of_setup_cfg_is_checked_here():
    from test_imports import commands  # (tests/test_imports.py: setup.cfg's console scripts)
    assert {f"mwnet_tf.{name}" for name in COMMANDS} == commands()


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory):
    """An environment in which `import tensorflow` fails: a command that answers in it has
    not imported TensorFlow."""
    blocker = tmp_path_factory.mktemp("blocker")
    (blocker / "tensorflow").mkdir()
    (blocker / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('tensorflow imported before the flags were checked')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), REPO]))


def _run(args, env, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_and_bad_flags_answer_without_tensorflow(name, no_tensorflow):
    wanted, misspelled, bad_values = COMMANDS[name]
    module = _run(["-m", f"mwnet_tf.{name}", "--help"], no_tensorflow)
    script = _run(["-c", f"import sys; from mwnet_tf.{name} import run; "
                   f"sys.argv = ['mwnet-{name.replace('_', '-')}', '--help']; run()"],
                  no_tensorflow)
    assert module.returncode == 0 and script.returncode == 0, module.stderr + script.stderr
    assert module.stdout == script.stdout  # the console script shows what python -m shows
    doc = __import__(f"mwnet_tf.{name}", fromlist=["_"]).__doc__
    assert module.stdout.startswith(doc.strip().splitlines()[0])
    for flag in wanted:
        assert f"{flag}:" in module.stdout or f"--[no]{flag[2:]}:" in module.stdout, flag
    for arg in (misspelled, *bad_values):
        proc = _run(["-m", f"mwnet_tf.{name}", arg], no_tensorflow)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (arg, proc.stderr[-2000:])
        assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr, arg


def test_config_and_the_train_flags_import_no_tensorflow():
    code = ("import sys\n"
            "from absl import flags\n"
            "import mwnet_tf.config\n"
            "from mwnet_tf import train\n"
            "train.define_flags()\n"
            "flags.FLAGS(['train', '--dataset=cifar10', '--noise=flip', '--method=focal'])\n"
            "config = train.config_from_flags(flags.FLAGS)\n"
            "assert config.model == 'resnet32' and config.method_params == {'focal_gamma': 2.0}\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_flagfiles_are_kept_once_in_the_package_and_found_by_name(tmp_path):
    shipped = os.path.join(REPO, "mwnet_tf", "flagfiles")
    # flags/ in the clone is a link to the package's folder, not a copy
    assert os.path.islink(os.path.join(REPO, "flags"))
    assert os.path.realpath(os.path.join(REPO, "flags")) == os.path.realpath(shipped)
    names = sorted(os.listdir(shipped))
    assert "quickstart.cfg" in names and "smoke.cfg" in names
    copies = [p for p in glob.glob(os.path.join(REPO, "**", "*.cfg"), recursive=True)
              if os.path.basename(p) in names and not p.startswith(shipped + os.sep)
              and not p.startswith(os.path.join(REPO, "flags") + os.sep)]
    assert not copies, copies
    assert commandline.shipped_flagfile("smoke") == os.path.join(shipped, "smoke.cfg")
    assert commandline.shipped_flagfile("nope") is None
    os.chdir(tmp_path)  # a bare name not a file here: the shipped flagfile
    assert commandline.resolve_flagfiles(["x", "--flagfile=smoke", "--flagfile=a/b.cfg"]) == [
        "x", f"--flagfile={shipped}/smoke.cfg", "--flagfile=a/b.cfg"]


@pytest.mark.e2e
def test_the_wheel_installed_in_a_fresh_venv_trains_from_a_shipped_flagfile(tmp_path):
    # built from a copy: a build leaves build/ and *.egg-info in its source folder
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "wheel"), str(source)], check=True,
                   capture_output=True, env=env)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = str(venv / "bin" / "python")
    wheel = glob.glob(str(tmp_path / "wheel" / "mwnet_tf-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", *wheel], check=True,
                   capture_output=True, env=env)
    # --system-site-packages reaches the base interpreter's packages; when this python is a
    # venv itself, its own (TensorFlow...) are added by a .pth file (after the install, which
    # would otherwise find this venv's mwnet_tf, an editable install, already there).
    purelib = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    with open(os.path.join(purelib, "ci_site_packages.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    where = subprocess.check_output([python, "-c", "import mwnet_tf; print(mwnet_tf.__file__)"],
                                    cwd=tmp_path, env=env, text=True).strip()
    assert where.startswith(str(venv)) and not where.startswith(REPO), where
    proc = subprocess.run(
        [python, "-m", "mwnet_tf.train", "--flagfile=quickstart", "--epochs=1",
         "--lr_decay_epochs=", "--notensorboard_images", f"--workdir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test accuracy" in proc.stdout and (tmp_path / "run" / "results.json").exists()
    help_text = subprocess.run([str(venv / "bin" / "mwnet-train"), "--help"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "--epochs:" in help_text.stdout
