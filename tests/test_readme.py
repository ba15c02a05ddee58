"""The README's Python example runs as written, and the README agrees with the flagfiles."""

import os
import re

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(REPO, "README.md")) as f:
        return f.read()


def test_python_api_example_runs():
    section = _readme().split("## Use from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert np.isfinite(float(scope["out"]["meta_loss"]))
    assert float(scope["out"]["weight_sum"]) > 0


def test_keras_fit_example_runs():
    section = _readme().split("**With Keras' `fit`**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    history = scope["history"].history
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["meta_loss"]))
    assert "val_accuracy" in history


def test_every_figure_in_the_readme_is_committed():
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", _readme()):
        assert os.path.exists(os.path.join(REPO, path)), path


def test_every_flagfile_named_in_the_readme_exists():
    names = set(re.findall(r"flags/([\w.]+\.cfg)", _readme()))
    assert "quickstart.cfg" in names
    for name in names:
        assert os.path.exists(os.path.join(REPO, "flags", name)), name


def test_every_method_and_its_flags_are_in_the_readme():
    from mwnet_tf import methods
    from mwnet_tf.config import METHODS

    section = _readme().split("## Methods", 1)[1].split("\n## ", 1)[0]
    for name in METHODS:
        assert f"`{name}`" in section, name
        for p in methods.get(name).params:
            assert f"`--{p.name}`" in section, p.name
