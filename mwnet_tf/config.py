"""Run configuration: a frozen dataclass and the paper's defaults for each setting."""

from __future__ import annotations

import dataclasses
import os

# The classifiers (`mwnet_tf.models` builds them; named here so that flags can be defined
# without importing TensorFlow).
MODELS = ("resnet32", "wrn28_10", "resnet50", "mlp", "cnn", "tiny")
# Every training method, in the order tables list them (modules in mwnet_tf/methods/).
METHODS = ("ce", "focal", "class_balanced", "reed_hard", "self_paced", "fine_tune", "l2rw",
           "glc", "co_teaching", "confident_learning", "mwnet")
META_OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_PRECISION = ("none", "bfloat16", "float16")
# float16 needs loss scaling, which the steps of these methods apply (mwnet_tf.steps); the
# others (l2rw, glc, co_teaching) write their own gradient steps without it.
FLOAT16_METHODS = ("ce", "focal", "class_balanced", "reed_hard", "self_paced", "fine_tune",
                   "confident_learning", "mwnet")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; built by `mwnet_tf.train` from flags, or by hand."""

    dataset: str = "digits"
    data_dir: str | None = None
    noise: str = "uniform"
    rate: float = 0.4
    # Human noise (noise="human"): the label file and, in a CIFAR-N .pt, the set to use.
    noise_labels: str | None = None
    noise_label_set: str | None = None
    # Clothing1M: the side of the square crops (None: the paper's 224) and, for ResNet-50,
    # the local HDF5 file of ImageNet weights for its backbone.
    image_size: int | None = None
    pretrained: str | None = None
    imbalance: float = 1.0
    meta_per_class: int = 10
    method: str = "mwnet"
    model: str = "mlp"
    epochs: int = 30
    batch_size: int = 100
    meta_batch_size: int = 100
    eval_batch_size: int = 500
    lr: float = 0.1
    lr_decay_epochs: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    meta_lr: float = 1e-3
    meta_optimizer: str = "adam"
    meta_momentum: float = 0.9
    meta_nesterov: bool = False
    meta_weight_decay: float = 1e-4
    weight_norm: str = "batch"
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    jit_compile: bool = False
    mixed_precision: str = "none"   # none | bfloat16 | float16 (mwnet_tf.precision)
    keep_checkpoints: int = 2
    progress_seconds: float = 30.0
    tensorboard_images: bool = True  # the per-epoch figures as TensorBoard images
    steps_per_call: int = 10
    checkpoint_every_steps: int = 0      # 0: off
    checkpoint_every_minutes: float = 10.0  # 0: off
    # The method's own hyperparameters (`mwnet_tf.methods`), flag name -> value; a name left
    # out takes the method's default.
    method_params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        errors = validate(self)
        if errors:
            raise ValueError("; ".join(errors))

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Flat: the method's hyperparameters are top-level keys, as their flags are."""
        d = dataclasses.asdict(self)
        d["lr_decay_epochs"] = list(self.lr_decay_epochs)
        d.update(d.pop("method_params"))
        return d


def validate(c: Config) -> list[str]:
    """Returns one message per invalid field (empty when the config is valid)."""
    from mwnet_tf.data import DATASETS, LABEL_NOISES
    from mwnet_tf.data.human_noise import check_settings
    from mwnet_tf.steps import WEIGHT_NORMS

    checks = [
        (c.dataset in DATASETS, f"dataset must be one of {DATASETS}"),
        (c.noise in LABEL_NOISES, f"noise must be one of {LABEL_NOISES}"),
        (c.noise == "human" or (c.noise_labels is None and c.noise_label_set is None),
         "--noise_labels and --noise_label_set go with --noise=human"),
        (c.noise != "human" or c.rate == 0.0,
         "--rate does not apply to --noise=human (its noise is the file's labels)"),
        (0.0 <= c.rate <= 1.0, "rate must lie in [0, 1]"),
        (c.imbalance >= 1.0, "imbalance must be >= 1 (1 = balanced)"),
        (c.dataset != "clothing1m" or (c.noise == "none" and c.imbalance == 1.0),
         "clothing1m's noise is its own labels: --noise=none, --imbalance=1"),
        (c.image_size is None or (c.dataset == "clothing1m" and c.image_size >= 32),
         "--image_size goes with --dataset=clothing1m and must be >= 32"),
        (c.pretrained is None or c.model == "resnet50",
         "--pretrained holds ResNet-50 weights: it goes with --model=resnet50"),
        (c.meta_per_class >= 1, "meta_per_class must be >= 1"),
        (c.method in METHODS, f"method must be one of {METHODS}"),
        (c.model in MODELS, f"model must be one of {MODELS}"),
        (c.epochs >= 1, "epochs must be >= 1"),
        (min(c.batch_size, c.meta_batch_size, c.eval_batch_size) >= 1,
         "batch sizes must be >= 1"),
        (c.lr > 0 and c.meta_lr >= 0, "lr must be > 0 and meta_lr >= 0"),
        (all(0 < e < c.epochs for e in c.lr_decay_epochs)
         and list(c.lr_decay_epochs) == sorted(set(c.lr_decay_epochs)),
         "lr_decay_epochs must be increasing epochs between 1 and epochs - 1"),
        (0 < c.lr_decay_factor <= 1, "lr_decay_factor must lie in (0, 1]"),
        (c.weight_decay >= 0 and c.meta_weight_decay >= 0, "weight decays must be >= 0"),
        (0 <= c.momentum < 1 and 0 <= c.meta_momentum < 1, "momentum must lie in [0, 1)"),
        (c.meta_optimizer in META_OPTIMIZERS,
         f"meta_optimizer must be one of {META_OPTIMIZERS}"),
        (c.weight_norm in WEIGHT_NORMS, f"weight_norm must be one of {WEIGHT_NORMS}"),
        (c.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}"),
        (c.mixed_precision in MIXED_PRECISION,
         f"mixed_precision must be one of {MIXED_PRECISION}"),
        (c.mixed_precision != "float16" or c.method in FLOAT16_METHODS,
         f"mixed_precision=float16 (loss scaling) is implemented for {', '.join(FLOAT16_METHODS)}"
         f"; use bfloat16 with --method={c.method}"),
        (c.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        (c.steps_per_call >= 1, "steps_per_call must be >= 1"),
        (c.checkpoint_every_steps >= 0 and c.checkpoint_every_minutes >= 0,
         "checkpoint_every_steps and checkpoint_every_minutes must be >= 0 (0: off)"),
    ]
    errors = [msg for ok, msg in checks if not ok]
    if c.noise == "human":
        errors += check_settings(c.dataset, c.noise_labels, c.noise_label_set)
    if c.method in METHODS:
        from mwnet_tf import methods

        params = {p.name: p for p in methods.get(c.method).params}
        errors += [f"{name} is not a hyperparameter of {c.method}"
                   for name in c.method_params if name not in params]
        errors += [e for p in params.values()
                   if (e := p.check(c.method_params.get(p.name, p.default)))]
    return errors


# The class-imbalance code's weight-net optimizer (Table 1).
TABLE1_WEIGHT_NET = dict(meta_lr=1e-5, meta_optimizer="sgd", meta_momentum=0.9,
                         meta_nesterov=True, meta_weight_decay=5e-4)


def paper_defaults(dataset: str, noise: str, imbalance: float) -> dict:
    """The published protocol for a setting (see reference/official_settings.md).

    Settings: CIFAR uniform noise -> Table 2 (WRN-28-10, 40 epochs, the WRN script's
    Nesterov SGD for both nets); CIFAR flip/flip1/hierarchical/human/no noise -> Table 3
    (ResNet-32, 60 epochs, the stable script's Adam weight-net optimizer; human noise,
    CIFAR-10N/100N, is class-dependent noise near the flip cells' rates, so it takes their
    protocol); CIFAR with imbalance > 1 ->
    Table 1 (ResNet-32, 100 epochs, weight net SGD at 1e-5, 10 meta images per class).
    Clothing1M -> Table 4 (ResNet-50, 10 epochs, lr 0.01 divided by 10 after epoch 5, momentum
    0.9, weight decay 1e-3, batch 32; the weight net at the fixed 1e-3 of the paper, with the
    optimizer of the noisy-label "stable" script, Adam, wd 1e-4, since none is published for
    Clothing1M; meta batch 32 as the official scripts take the meta batch size equal to the
    training one). Digits and Fashion-MNIST are this project's offline settings; with a long
    tail they train for more epochs (the tail leaves fewer images per epoch) and take Table 1's
    meta set (10 per class) and weight-net optimizer (SGD 1e-5, Nesterov): on long-tailed
    Fashion-MNIST the noisy-label Adam at 1e-3 drove the weight function to a step that kept
    only the largest losses of each batch and lost 2.4 points (README, "Fashion-MNIST").
    """
    d = dict(batch_size=100, meta_batch_size=100, lr=0.1, momentum=0.9, weight_decay=5e-4,
             nesterov=False, meta_lr=1e-3, meta_optimizer="adam", meta_momentum=0.9,
             meta_nesterov=False, meta_weight_decay=1e-4, weight_norm="batch")
    if dataset == "clothing1m":
        d.update(noise="none", rate=0.0, model="resnet50", epochs=10, lr_decay_epochs=(5,),
                 batch_size=32, meta_batch_size=32, eval_batch_size=100, lr=0.01,
                 weight_decay=1e-3)
    elif dataset in ("cifar10", "cifar100"):
        classes = 10 if dataset == "cifar10" else 100
        if imbalance > 1:
            d.update(model="resnet32", epochs=100, lr_decay_epochs=(80, 90), meta_per_class=10,
                     **TABLE1_WEIGHT_NET)
        elif noise == "uniform":
            d.update(model="wrn28_10", epochs=40, lr_decay_epochs=(36, 38),
                     meta_per_class=1000 // classes, nesterov=True, meta_optimizer="sgd",
                     meta_nesterov=True, meta_weight_decay=5e-4)
        else:
            d.update(model="resnet32", epochs=60, lr_decay_epochs=(40, 50),
                     meta_per_class=1000 // classes)
    elif dataset == "fashion_mnist":
        d.update(model="cnn", epochs=12, lr_decay_epochs=(8, 10), meta_per_class=100)
        if imbalance > 1:  # a long tail has ~1/4 of the images: twice the epochs
            d.update(epochs=24, lr_decay_epochs=(16, 20), meta_per_class=10, **TABLE1_WEIGHT_NET)
    else:  # digits
        d.update(model="mlp", epochs=30, lr_decay_epochs=(20, 25), meta_per_class=10)
        if imbalance > 1:
            d.update(epochs=60, lr_decay_epochs=(40, 50), **TABLE1_WEIGHT_NET)
    return d


def run_name(c: Config) -> str:
    """A folder name that says the setting, e.g. `cifar100-flip0.4-mwnet-s0`."""
    if c.dataset == "clothing1m":  # its own noisy labels: no bias to name
        return f"clothing1m-{c.method}-s{c.seed}"
    bias = f"{c.noise}{c.rate:g}" if c.noise != "none" else "clean"
    if c.noise == "human":  # cifar10-human_worst-..., or -human_file- for a .npy / .csv
        bias = f"human_{c.noise_label_set or 'file'}"
    if c.imbalance > 1:
        bias += f"-lt{c.imbalance:g}"
    return f"{c.dataset}-{bias}-{c.method}-s{c.seed}"


def default_workdir(c: Config, root: str = "runs") -> str:
    return os.path.join(root, run_name(c))
