"""The paper's protocols: the values each setting fixes unless flags say otherwise, the step
schedule scaled to a run's length, and the run folder named after its setting.

`paper_defaults` is the one source of the settings' values. A shipped flagfile (`flags/`) holds
what its author chose above the line `DEFAULTS_MARKER` (the setting, the method, anything that
differs from the setting's defaults) and, below it, the setting's remaining defaults written
out for the reader by `flagfile_text` (`python -m mwnet_tf.report --flagfiles DIR`); a test
checks that every shipped flagfile is what `flagfile_text` makes of it. Imports no TensorFlow.
"""

from __future__ import annotations

import math
import os

from mwnet_tf.config import AUTO_MODEL, Config, flag_fields, is_own_dataset

# The class-imbalance code's weight-net optimizer (Table 1).
TABLE1_WEIGHT_NET = dict(meta_lr=1e-5, meta_optimizer="sgd", meta_momentum=0.9,
                         meta_nesterov=True, meta_weight_decay=5e-4)
# Own data's weight-net optimizer, whatever its noise or imbalance: Table 1's SGD 1e-5, chosen
# on held-out validation data over the noisy-label tables' Adam 1e-3 as the safer of the two
# (docs/data.md, "The weight net's default"; benchmarks/own_data_defaults.py).
OWN_DATA_WEIGHT_NET = dict(meta_lr=1e-5, meta_optimizer="sgd", meta_momentum=0.9,
                           meta_nesterov=True, meta_weight_decay=5e-4)


# How each method's code reduces the weighted losses where it is not MW-Net's `batch`:
# CMW-Net's LT1.py divides by the sum of the weights held constant (`.detach()`); CMW-Net-SL's
# cmwn.py averages over the batch (its objective ignores --weight_norm).
METHOD_WEIGHT_NORM = {"cmwnet": "batch_detached", "cmwnet_sl": "none"}


def paper_defaults(dataset: str, noise: str, imbalance: float,
                   method: str | None = None) -> dict:
    """The values a setting fixes unless flags say otherwise: the paper's protocol for the
    CIFAR tables (1: long tail, 2: uniform noise, 3: other noise, human included) and Table 4
    (Clothing1M), this project's for digits and Fashion-MNIST (reference/official_settings.md
    gives the sources). A long tail takes Table 1's meta set and weight-net optimizer.
    `method`: a method whose authors' code normalizes the weights otherwise
    (`METHOD_WEIGHT_NORM`) gets its own `weight_norm`; CMW-Net-SL `meta_source="selected"`.
    """
    d = dict(batch_size=100, meta_batch_size=100, lr=0.1, momentum=0.9, weight_decay=5e-4,
             nesterov=False, meta_lr=1e-3, meta_optimizer="adam", meta_momentum=0.9,
             meta_nesterov=False, meta_weight_decay=1e-4, weight_norm="batch")
    if dataset == "clothing1m":  # weight net: the noisy-label script's Adam (none published)
        d.update(noise="none", rate=0.0, model="resnet50", epochs=10, lr_decay_epochs=(5,),
                 batch_size=32, meta_batch_size=32, eval_batch_size=100, lr=0.01,
                 weight_decay=1e-3)
    elif dataset in ("cifar10", "cifar100"):
        classes = 10 if dataset == "cifar10" else 100
        if imbalance > 1 or noise == "none":  # Table 1 (its imbalance-1 column: no noise)
            d.update(model="resnet32", epochs=100, lr_decay_epochs=(80, 90), meta_per_class=10,
                     **TABLE1_WEIGHT_NET)
        elif noise == "uniform":
            d.update(model="wrn28_10", epochs=40, lr_decay_epochs=(36, 38),
                     meta_per_class=1000 // classes, nesterov=True, meta_optimizer="sgd",
                     meta_nesterov=True, meta_weight_decay=5e-4)
        else:
            d.update(model="resnet32", epochs=60, lr_decay_epochs=(40, 50),
                     meta_per_class=1000 // classes)
    elif is_own_dataset(dataset):  # modest: small data sets, the model chosen by the input
        d.update(noise="none", rate=0.0, model=AUTO_MODEL, epochs=20, lr_decay_epochs=(15,),
                 batch_size=32, meta_batch_size=32, lr=0.05,
                 meta_per_class=10 if dataset.startswith("tfds:") else None,
                 **OWN_DATA_WEIGHT_NET)
    elif dataset == "fashion_mnist":
        d.update(model="cnn", epochs=12, lr_decay_epochs=(8, 10), meta_per_class=100)
        if imbalance > 1:  # a long tail has ~1/4 of the images: twice the epochs
            d.update(epochs=24, lr_decay_epochs=(16, 20), meta_per_class=10, **TABLE1_WEIGHT_NET)
    else:  # digits
        d.update(model="mlp", epochs=30, lr_decay_epochs=(20, 25), meta_per_class=10)
        if imbalance > 1:
            d.update(epochs=60, lr_decay_epochs=(40, 50), **TABLE1_WEIGHT_NET)
    d["weight_norm"] = METHOD_WEIGHT_NORM.get(method, d["weight_norm"])
    if method == "cmwnet_sl":  # its meta set is always selected from the training set
        d["meta_source"] = "selected"
    return d


# A run this short has no step decay: its schedule scaled down would leave no room for one.
MIN_DECAY_EPOCHS = 3


def scaled_decay_epochs(decay_epochs, epochs: int, stage_epochs: int) -> tuple[int, ...]:
    """The decay epochs of an `epochs` run moved in proportion to a stage (or run) of
    `stage_epochs` epochs (rounded half up; those landing on 0 or on the end dropped)."""
    if stage_epochs == epochs:
        return tuple(decay_epochs)
    moved = {math.floor(d * stage_epochs / epochs + 0.5) for d in decay_epochs}
    return tuple(sorted(d for d in moved if 0 < d < stage_epochs))


def scaled_schedule(decay_epochs, base_epochs: int, epochs: int) -> tuple[int, ...]:
    """The decay epochs of a `base_epochs` run moved to the same fractions of an `epochs` run
    (`scaled_decay_epochs`); none for a run of fewer than `MIN_DECAY_EPOCHS` epochs."""
    if epochs != base_epochs and epochs < MIN_DECAY_EPOCHS:
        return ()
    return scaled_decay_epochs(decay_epochs, base_epochs, epochs)


def run_name(c: Config) -> str:
    """A folder name that says the setting, e.g. `cifar100-flip0.4-mwnet-s0` (a meta set
    selected from the training set: `cifar100-flip0.4-mwnet-selected-s0`)."""
    method = c.method + ("-selected" if c.meta_source == "selected" else "")
    if c.dataset == "clothing1m":  # its own noisy labels: no bias to name
        return f"clothing1m-{method}-s{c.seed}"
    bias = f"{c.noise}{c.rate:g}" if c.noise != "none" else "clean"
    if is_own_dataset(c.dataset):
        name = c.dataset.replace(":", "_")
        bias = f"{c.noise}{c.rate:g}" if c.noise != "none" else "given"
        return f"{name}-{bias}-{method}-s{c.seed}"
    if c.noise == "human":  # cifar10-human_worst-..., or -human_file- for a .npy / .csv
        bias = f"human_{c.noise_label_set or 'file'}"
    if c.imbalance > 1:
        bias += f"-lt{c.imbalance:g}"
    return f"{c.dataset}-{bias}-{method}-s{c.seed}"


def default_workdir(c: Config, root: str = "runs") -> str:
    return os.path.join(root, run_name(c))


# --- the shipped flagfiles -----------------------------------------------------------------

DEFAULTS_MARKER = ("# --- the setting's other defaults (protocols.paper_defaults), written by "
                   "python -m mwnet_tf.report --flagfiles ---")


def flag_line(name: str, value) -> str:
    """`--name=value` as a flagfile writes it (`--name` / `--noname` for a bool)."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (tuple, list)):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value:g}" if isinstance(value, float) else f"--{name}={value}"


def given_flags(text: str) -> dict[str, str]:
    """The flags of flagfile `text` by name, as written (`--noname`: "False", `--name`:
    "True")."""
    names = {f.name for f in flag_fields()}
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        key, eq, value = line[2:].partition("=")
        if not eq and key.startswith("no") and key[2:] in names:
            key, value = key[2:], "False"
        out[key] = value if eq else (value or "True")
    return out


# Defaults that follow the method: a flagfile does not write them out, so that a `--method`
# given after it (`--flagfile=flags/digits_flip0.4.cfg --method=cmwnet`) takes its own.
METHOD_DEPENDENT = ("weight_norm", "meta_source")


def flagfile_text(text: str) -> str:
    """Flagfile `text` with its part below `DEFAULTS_MARKER` made anew: every default of its
    setting (`paper_defaults` of its dataset, noise and imbalance) that its own part above does
    not set, in Config's field order, but those of `METHOD_DEPENDENT`; a schedule
    (`--lr_decay_epochs`) only with the epochs it was made for, so that `--epochs` set above
    keeps the trainer's own scaling."""
    own = text.split(DEFAULTS_MARKER)[0].rstrip("\n")
    given = given_flags(own)
    base = Config()
    defaults = paper_defaults(given.get("dataset", base.dataset), given.get("noise", base.noise),
                              float(given.get("imbalance", base.imbalance)),
                              given.get("method", base.method))
    lines = [flag_line(f.name, defaults[f.name]) for f in flag_fields()
             if f.name in defaults and f.name not in given and defaults[f.name] is not None
             and f.name not in METHOD_DEPENDENT
             and not (f.name == "lr_decay_epochs" and "epochs" in given)]
    return own + "\n" + (f"\n{DEFAULTS_MARKER}\n" + "\n".join(lines) + "\n" if lines else "")
