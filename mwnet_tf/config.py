"""Run configuration: a frozen dataclass, its checks and the paper's defaults for each setting.

Each field of `Config` declares, in its metadata (`_field`), what the rest of the project needs
to know about it: its flag's help, choices and bounds (`mwnet_tf.train` defines one flag per
field), whether its flag defaults to the setting's value, whether a resumed run may change it
(`RESUMABLE`), whether it changes what a run computes (`VOLATILE`, for the tables) and, for
fields added after runs were kept, the value those runs had (`ADDED_FIELDS`). Importing this
module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from mwnet_tf.data.custom.biased import OWN_NOISES
from mwnet_tf.data.datasets import DATASETS
from mwnet_tf.data.human_noise import ALL_LABEL_SETS, check_settings
from mwnet_tf.data.noise import LABEL_NOISES
from mwnet_tf.methods.registry import FLOAT16_METHODS, METHODS, PARAMS


class ModelTraits(typing.NamedTuple):
    builder: str  # `mwnet_tf.models.<module>.<function>`, as "module.function"
    shape: tuple[int, int, int]  # its usual input (H, W, C)
    any_shape: bool  # it flattens its input, of any shape (the others take images)
    jit: bool  # a CPU compiles its MW-Net step with XLA in minutes


# The classifiers, by name (`mwnet_tf.models.build_classifier` builds each).
MODEL_TRAITS = {
    "resnet32": ModelTraits("resnet.resnet_cifar", (32, 32, 3), False, True),
    "wrn28_10": ModelTraits("wide_resnet.wide_resnet", (32, 32, 3), False, False),
    "resnet50": ModelTraits("resnet.resnet50", (224, 224, 3), False, False),
    "mlp": ModelTraits("small.mlp", (8, 8, 1), True, True),
    "cnn": ModelTraits("small.cnn", (28, 28, 1), False, True),
    "tiny": ModelTraits("small.tiny", (8, 8, 1), True, True),
}
MODELS = tuple(MODEL_TRAITS)
MODEL_SHAPES = {name: t.shape for name, t in MODEL_TRAITS.items()}
JIT_MODELS = tuple(name for name, t in MODEL_TRAITS.items() if t.jit)
# Own data (`mwnet_tf.data.custom.load`): an image folder, a CSV table, an .npz of arrays, or any
# data set prepared for tensorflow-datasets (tfds:NAME).
OWN_DATASETS = ("folder", "csv", "npz")
# --model=auto (own data's default): mlp for feature vectors [N, D], cnn for images.
AUTO_MODEL = "auto"


def is_own_dataset(name: str) -> bool:
    """Whether `--dataset=name` is own data: folder, csv, npz or tfds:NAME."""
    return name in OWN_DATASETS or (name.startswith("tfds:") and len(name) > 5)


def is_model_file(name: str) -> bool:
    """Whether `--model=name` is a Keras model file (PATH.keras) rather than a built-in name."""
    return name.endswith(".keras")
META_OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
# Where a multi-worker run reads its task layout (`mwnet_tf.training.cluster`).
CLUSTERS = ("tf_config", "slurm")
MIXED_PRECISION = ("none", "bfloat16", "float16")
# How a batch's weighted losses are reduced (`mwnet_tf.methods.steps`).
WEIGHT_NORMS = ("none", "batch", "batch_detached")
# Where a meta method's meta set comes from: the clean (trusted) set, or chosen from the
# training set each epoch (`mwnet_tf.methods.meta_select`, `mwnet_tf.training.meta_set`).
META_SOURCES = ("trusted", "selected")
SELECT_PER_CLASS = 10  # CMW-Net-SL's k: samples per class of a selected meta set
_ALWAYS = object()  # `added`: the field existed when the first runs were kept


def _field(default, help: str, *, choices=None, lower=None, upper=None, by_setting=False,
           resumable=False, volatile=False, added=_ALWAYS, weight_net=False):
    """A Config field and what is known of it.

    help, choices, lower, upper: its flag's help text, allowed values and bounds (also checked
        by `validate`).
    by_setting: its flag has no default of its own: unless given, the setting's paper default
        (`paper_defaults`) or, where that has none, the field's default applies.
    resumable: a run resumed in the same folder may change it (`mwnet_tf.train`).
    volatile: it does not change what a run computes (the tables average runs differing only
        in such fields).
    added: the value of runs kept before the field existed (`mwnet_tf.reporting.tables`).
    weight_net: it sets the weight net's training, which only the methods of
        `registry.WEIGHT_NET_METHODS` have (the tables ignore it for the others).
    """
    meta = dict(help=help, choices=choices, lower=lower, upper=upper, by_setting=by_setting,
                resumable=resumable, volatile=volatile, weight_net=weight_net)
    if added is not _ALWAYS:
        meta["added"] = added
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; built by `mwnet_tf.train` from flags, or by hand."""

    dataset: str = _field(
        "digits", f"Dataset: one of {', '.join(DATASETS)}; or your own data (--data_dir): "
        "folder (train/, meta/, optional test/ class folders), csv (a path,label,split "
        "table), npz (arrays) or tfds:NAME (a data set prepared for tensorflow-datasets).")
    data_dir: str | None = _field(
        None, "tensorflow-datasets data_dir, or a folder holding CIFAR's Python folder "
        "(cifar-10-batches-py, cifar-100-python) or Fashion-MNIST's IDX files; for clothing1m "
        "the data set's folder (annotation files and images/).", resumable=True, volatile=True)
    noise: str = _field("uniform", "Label noise: a transition matrix type, instance "
                        "(instance-dependent, Xia et al. 2020, mean flip rate --rate), or human "
                        "(the labels of --noise_labels: CIFAR-10N/100N).", choices=LABEL_NOISES)
    rate: float = _field(0.4, "Noise rate p of the transition matrix (not with --noise=human).",
                         lower=0, upper=1)
    noise_labels: str | None = _field(
        None, "--noise=human: CIFAR-10_human.pt / CIFAR-100_human.pt "
        "(github.com/UCSC-REAL/cifar-10-100n), or a .npy / .csv of one label per training "
        "image in the original order.", resumable=True, volatile=True, added=None)
    noise_label_set: str | None = _field(
        None, "--noise=human with a CIFAR-N .pt: the label set (CIFAR-10N: aggregate, "
        "random1-3, worst (default); CIFAR-100N: noisy_fine (default)).",
        choices=ALL_LABEL_SETS, added=None)
    image_size: int | None = _field(
        None, "clothing1m: side of the square crops (default 224, after a resize to 256x256; "
        "smaller sizes scale both); folder, csv, tfds:NAME: side of the square the images are "
        "resized to (default 32; tfds: its own size).", lower=8, added=None)
    test_fraction: float | None = _field(
        None, "Own data without a test split: the stratified part of the trusted set held out "
        "as the test set (default 0.5; tfds: 0.1 of its train split; without a trusted set, "
        "--meta_source=selected: 0.1 of the training set, evaluated against its given labels "
        "as heldout_noisy_accuracy).", lower=0, upper=1, added=None)
    split_seed: int = _field(
        0, "Own data: the seed of the test hold-out (not the run seed: every run of a data set "
        "tests on the same images).", lower=0, added=0)
    augment: bool | None = _field(
        None, "Own data: random crop and flip of the training and trusted images (default: on "
        "for images, never for feature arrays).", added=None)
    verify_images: bool | None = _field(
        None, "folder, csv: decode every image once before training (default: when there are "
        "at most 10,000).", resumable=True, volatile=True, added=None)
    image_key: str | None = _field(
        None, "tfds:NAME: the image feature, when it has several.", added=None)
    label_key: str | None = _field(
        None, "tfds:NAME: the label feature, when it has several.", added=None)
    pretrained: str | None = _field(
        None, "--model=resnet50: a local HDF5 file of ImageNet weights for the backbone "
        "(Keras' resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, or a Keras 3 "
        ".weights.h5 of the backbone); the head stays randomly initialized.", resumable=True,
        added=None)
    imbalance: float = _field(1.0, "Long-tail imbalance factor (1 = balanced).", lower=1)
    meta_per_class: int | None = _field(
        10, "Clean meta images per class (own data: default all trusted images; tfds:NAME: "
        "10, taken out of its train split).", lower=1, by_setting=True)
    meta_source: str = _field(
        "trusted", "Where a meta method's meta set comes from: trusted (the clean set: "
        "--meta_per_class images per class of the built-in data sets, own data's meta/, meta "
        "rows or x_meta) or selected (a subset of the training set chosen by the method, not "
        "held out: at each epoch that reads it, the --select_per_class lowest-loss samples of "
        "every class by the current classifier, with their given labels, as CMW-Net-SL "
        "builds its meta set; own data needs no trusted set then).", choices=META_SOURCES,
        added="trusted")
    select_per_class: int = _field(
        SELECT_PER_CLASS, "--meta_source=selected: samples per class of the selected meta set (k, "
        "CMW-Net-SL's 10); every class needs at least k training samples.", lower=1,
        upper=100_000, added=SELECT_PER_CLASS)
    method: str = _field("mwnet", "Training method.", choices=METHODS)
    model: str = _field(
        "mlp", f"Classifier: one of {', '.join(MODELS)}; auto (own data's default: mlp for "
        "feature vectors, cnn for images); or PATH.keras, a Keras 3 model file (images in, "
        "logits out).", by_setting=True)
    epochs: int = _field(30, "Training epochs.", lower=1, by_setting=True, resumable=True)
    batch_size: int = _field(100, "Global training batch size.", lower=1, by_setting=True)
    meta_batch_size: int = _field(100, "Global meta batch size.", lower=1, by_setting=True)
    eval_batch_size: int = _field(500, "Test batch size.", lower=1, volatile=True)
    lr: float = _field(0.1, "Classifier learning rate (also the virtual step's).", lower=0,
                       by_setting=True)
    lr_decay_epochs: tuple[int, ...] = _field(
        (), "Epochs after which lr is multiplied by --lr_decay_factor (comma-separated; empty "
        "for none).", by_setting=True, resumable=True)
    lr_decay_factor: float = _field(0.1, "Step-decay factor.")
    weight_decay: float = _field(5e-4, "Coupled L2 on the classifier.", lower=0, by_setting=True)
    momentum: float = _field(0.9, "Classifier SGD momentum.", lower=0, by_setting=True)
    nesterov: bool = _field(False, "Nesterov momentum for the classifier.", by_setting=True)
    meta_lr: float = _field(1e-3, "Weight-net learning rate (fixed).", lower=0, by_setting=True,
                            weight_net=True)
    meta_optimizer: str = _field("adam", "Weight-net optimizer.", choices=META_OPTIMIZERS,
                                 by_setting=True, weight_net=True)
    meta_momentum: float = _field(0.9, "Weight-net SGD momentum.", lower=0, by_setting=True,
                                  weight_net=True)
    meta_nesterov: bool = _field(False, "Nesterov momentum for the weight net (SGD).",
                                 by_setting=True, weight_net=True)
    meta_weight_decay: float = _field(1e-4, "Coupled L2 on the weight net.", lower=0,
                                      by_setting=True, weight_net=True)
    meta_amsgrad: bool = _field(
        False, "AMSGrad for the weight net's Adam (torch.optim.Adam(amsgrad=True): the running "
        "maximum of the second moment in the denominator; CMW-Net's LT1.py uses it).",
        added=False, weight_net=True)
    weight_norm: str = _field("batch", "none: sum(v*l)/n; batch: sum(v/sum(v)*l); "
                              "batch_detached: the same with sum(v) a constant of the "
                              "meta-gradient (CMW-Net's code, cmwnet's default).",
                              choices=WEIGHT_NORMS, by_setting=True, weight_net=True)
    seed: int = _field(0, "Seed of noise, meta split, shuffling and init.", volatile=True)
    # Each part of the randomness on its own seed, to find where seed-to-seed spread comes
    # from (the other parts keep --seed).
    meta_seed: int | None = _field(None, "Seed of the meta-set draw alone (default: --seed).",
                                   lower=0, added=None)
    noise_seed: int | None = _field(None, "Seed of the label noise alone (which labels are "
                                    "corrupted, and to what; default: --seed).", lower=0,
                                    added=None)
    init_seed: int | None = _field(None, "Seed of the networks' initialization alone (default: "
                                   "--seed).", lower=0, added=None)
    order_seed: int | None = _field(None, "Seed of the batch order and augmentation alone "
                                    "(default: --seed).", lower=0, added=None)
    deterministic: bool = _field(False, "Deterministic ops (same seed, same run).",
                                 volatile=True)
    strategy: str = _field("auto", "auto: MirroredStrategy when several GPUs, else one device.",
                           choices=STRATEGIES, resumable=True, volatile=True)
    cluster: str = _field(
        "tf_config", "With --strategy=multi_worker, where the task layout comes from: "
        "tf_config (the TF_CONFIG variable) or slurm (the variables of a Slurm job step: "
        "SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE; "
        "TensorFlow's SlurmClusterResolver).", choices=CLUSTERS, resumable=True, volatile=True,
        added="tf_config")
    slurm_port_base: int = _field(
        8888, "With --cluster=slurm: the port of a node's first task (the next tasks on the "
        "node take the next ports).", lower=1024, upper=65535, resumable=True, volatile=True,
        added=8888)
    jit_compile: bool = _field(False, "XLA-compile the training step.", resumable=True,
                               volatile=True)
    mixed_precision: str = _field(
        "none", "Classifier compute dtype: bfloat16 (CPU, no loss scaling) or float16 (GPU, "
        "dynamic loss scaling); losses and the weight net stay float32.",
        choices=MIXED_PRECISION, added="none")
    keep_checkpoints: int = _field(2, "Checkpoints kept.", lower=1, resumable=True,
                                   volatile=True)
    progress_seconds: float = _field(30.0, "Seconds between progress lines within an epoch.",
                                     lower=0, resumable=True, volatile=True)
    tensorboard_images: bool = _field(
        True, "Render each epoch's figures (weight function, weight histograms, confusion "
        "matrix) as TensorBoard images with matplotlib; --notensorboard_images keeps the "
        "scalars and histograms only.", resumable=True, volatile=True)
    steps_per_call: int = _field(
        10, "Training steps per tf.function call (metrics stay on the device between calls; "
        "the same steps whatever the value).", lower=1, resumable=True, volatile=True)
    checkpoint_every_steps: int = _field(
        0, "Also checkpoint inside an epoch every N steps (0: off).", lower=0, resumable=True,
        volatile=True)
    checkpoint_every_minutes: float = _field(
        10.0, "Also checkpoint inside an epoch every M minutes (0: off).", lower=0,
        resumable=True, volatile=True)
    # The method's own hyperparameters (`mwnet_tf.methods.registry`), flag name -> value; a
    # name left out takes the method's default.
    method_params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        errors = validate(self)
        if errors:
            raise ValueError("; ".join(errors))

    def part_seed(self, part: str) -> int:
        """The seed of one part of the randomness: "meta", "noise", "init" or "order"."""
        value = getattr(self, f"{part}_seed")
        return self.seed if value is None else value

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Flat: the method's hyperparameters are top-level keys, as their flags are."""
        d = dataclasses.asdict(self)
        d["lr_decay_epochs"] = list(self.lr_decay_epochs)
        d.update(d.pop("method_params"))
        return d


def flag_fields() -> list[dataclasses.Field]:
    """The fields that are flags (all but `method_params`)."""
    return [f for f in dataclasses.fields(Config) if "help" in f.metadata]


def field_type(f: dataclasses.Field) -> type:
    """A field's value type: str, int, float, bool, or tuple (a list of integers)."""
    hint = typing.get_type_hints(Config)[f.name]
    if isinstance(hint, types.UnionType):  # X | None
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    return typing.get_origin(hint) or hint


# Fields a run resumed in the same folder may change.
RESUMABLE = tuple(f.name for f in flag_fields() if f.metadata["resumable"])
# Fields that do not change what a run computes (the seed among them, averaged over).
VOLATILE = frozenset(f.name for f in flag_fields() if f.metadata["volatile"])
WEIGHT_NET = frozenset(f.name for f in flag_fields() if f.metadata["weight_net"])
# Fields added after runs were kept, with the value those runs had.
ADDED_FIELDS = {f.name: f.metadata["added"] for f in flag_fields() if "added" in f.metadata}


def not_for_clothing1m(names: list[str]) -> str:
    """The message for flags that Clothing1M does not take."""
    verb = "does" if len(names) == 1 else "do"
    return (f"{', '.join(names)} {verb} not apply to --dataset=clothing1m: its noise is its own "
            "labels, its meta set the clean validation images")


def _declared_errors(c: Config) -> list[str]:
    """The choices and bounds each field declares."""
    errors = []
    for f in flag_fields():
        value, m = getattr(c, f.name), f.metadata
        if value is None:
            continue
        if m["choices"] is not None and value not in m["choices"]:
            errors.append(f"{f.name} must be one of {m['choices']}")
        elif m["lower"] is not None and value < m["lower"]:
            errors.append(f"{f.name} must be >= {m['lower']:g}")
        elif m["upper"] is not None and value > m["upper"]:
            errors.append(f"{f.name} must be <= {m['upper']:g}")
    return errors


def _method_errors(c: Config) -> list[str]:
    """The method's hyperparameters: its own only, each within its bounds."""
    if c.method not in METHODS:
        return []
    params = {p.name: p for p in PARAMS[c.method]}
    owners: dict[str, list[str]] = {}
    for m in METHODS:
        for p in PARAMS[m]:
            owners.setdefault(p.name, []).append(m)
    errors = [f"--{name} is a hyperparameter of --method={' or '.join(owners[name])}, not of "
              f"--method={c.method}" if name in owners else
              f"{name} is not a hyperparameter of {c.method}"
              for name in c.method_params if name not in params]
    if c.mixed_precision == "float16" and c.method_params.get("meta_scope") == "sampled":
        errors.append("--meta_scope=sampled does not take --mixed_precision=float16 (its "
                      "samplers are not loss-scaled): use bfloat16 or none")
    return errors + [e for p in params.values()
                     if (e := p.check(c.method_params.get(p.name, p.default)))]


def _own_seed_errors(c: Config) -> list[str]:
    """Own data: the part seeds of draws it does not make."""
    if not is_own_dataset(c.dataset):
        return []
    errors = []
    if c.noise_seed is not None and c.noise == "none":
        errors.append("--noise_seed seeds a synthetic --noise: with --noise=none your own "
                      "data's labels are used as given")
    if c.meta_seed is not None and c.meta_per_class is None and not c.dataset.startswith("tfds:"):
        errors.append("--meta_seed seeds the draw of --meta_per_class trusted images per "
                      "class: without it every trusted image of your data is used")
    return errors


def _meta_source_errors(c: Config) -> list[str]:
    """--meta_source=selected and its --select_per_class. (A method that reads no meta set is
    refused by the trainer, which knows each method's `uses_meta`.)"""
    if c.meta_source != "selected":
        return ([] if c.select_per_class == SELECT_PER_CLASS else
                ["--select_per_class goes with --meta_source=selected"])
    if c.method_params.get("weight_fn"):
        return ["--weight_fn trains with a frozen weight function, which reads no meta set: "
                "--meta_source=selected does not apply"]
    return []


def _weight_net_errors(c: Config) -> list[str]:
    """The weight net's optimizer: AMSGrad is Adam's."""
    if c.meta_amsgrad and c.meta_optimizer != "adam":
        return ["--meta_amsgrad goes with --meta_optimizer=adam"]
    return []


def validate(c: Config) -> list[str]:
    """Returns one message per invalid field (empty when the config is valid)."""
    checks = [
        (c.cluster == "tf_config" or c.strategy == "multi_worker",
         f"--cluster={c.cluster} goes with --strategy=multi_worker"),
        (c.dataset == "clothing1m" or c.noise == "human"
         or (c.noise_labels is None and c.noise_label_set is None),
         "--noise_labels and --noise_label_set go with --noise=human"),
        (c.noise != "human" or c.rate == 0.0, "--rate does not apply to --noise=human: its "
         "noise is the label file's (the realized rate is reported)"),
        (c.noise != "none" or c.rate == 0.0 or c.dataset == "clothing1m",
         "--rate does not apply to --noise=none"),
        (c.image_size is None or c.dataset in ("clothing1m", "folder", "csv")
         or c.dataset.startswith("tfds:"),
         "--image_size goes with --dataset=clothing1m, folder, csv or tfds:NAME"),
        (is_own_dataset(c.dataset) or all(
            v is None for v in (c.test_fraction, c.augment, c.verify_images, c.image_key,
                                c.label_key)),
         "--test_fraction, --augment, --verify_images, --image_key and --label_key go with "
         "your own data (--dataset=folder, csv, npz or tfds:NAME)"),
        (c.test_fraction is None or 0 < c.test_fraction < 1,
         "test_fraction must lie strictly between 0 and 1"),
        (c.meta_per_class is not None or is_own_dataset(c.dataset)
         and not c.dataset.startswith("tfds:"),
         f"--dataset={c.dataset} needs --meta_per_class (its trusted images are taken out of "
         "its training split)"),
        (not is_own_dataset(c.dataset) or c.noise in OWN_NOISES,
         f"--noise={c.noise} does not apply to your own data (its labels are used as given: "
         f"--noise=none); expected one of {', '.join(OWN_NOISES)}"),
        (c.dataset in DATASETS or is_own_dataset(c.dataset),
         f"--dataset={c.dataset} is not a data set: expected one of {', '.join(DATASETS)}, "
         "folder, csv, npz or tfds:NAME"),
        (c.model in MODELS or is_model_file(c.model)
         or (c.model == AUTO_MODEL and is_own_dataset(c.dataset)),
         f"--model={c.model} is not a model: expected one of {', '.join(MODELS)}, a PATH.keras "
         "file, or auto (own data)"),
        (c.pretrained is None or c.model == "resnet50",
         "--pretrained holds ResNet-50 weights: it goes with --model=resnet50"),
        (c.lr > 0, "lr must be > 0"),
        (all(0 < e < c.epochs for e in c.lr_decay_epochs)
         and list(c.lr_decay_epochs) == sorted(set(c.lr_decay_epochs)),
         "lr_decay_epochs must be increasing epochs between 1 and epochs - 1"),
        (0 < c.lr_decay_factor <= 1, "lr_decay_factor must lie in (0, 1]"),
        (c.momentum < 1 and c.meta_momentum < 1, "momentum must lie in [0, 1)"),
        (c.mixed_precision != "float16" or c.method in FLOAT16_METHODS,
         f"mixed_precision=float16 (loss scaling) is implemented for {', '.join(FLOAT16_METHODS)}"
         f"; use bfloat16 with --method={c.method}"),
    ]
    errors = _declared_errors(c) + [msg for ok, msg in checks if not ok]
    if c.dataset == "clothing1m":
        given = [f"--{n}" for n, v in (("noise", c.noise != "none"), ("rate", c.rate != 0.0),
                                      ("imbalance", c.imbalance != 1.0),
                                      ("noise_labels", c.noise_labels is not None),
                                      ("noise_label_set", c.noise_label_set is not None),
                                      ("meta_seed", c.meta_seed is not None),
                                      ("noise_seed", c.noise_seed is not None)) if v]
        errors += [not_for_clothing1m(given)] if given else []
    errors += _own_seed_errors(c) + _meta_source_errors(c) + _weight_net_errors(c)
    if c.noise == "human" and not is_own_dataset(c.dataset):
        errors += check_settings(c.dataset, c.noise_labels, c.noise_label_set)
    return errors + _method_errors(c)
