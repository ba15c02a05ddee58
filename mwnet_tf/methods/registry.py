"""The training methods by name, and their hyperparameters, without importing TensorFlow.

The names are in the order the tables list methods; each method's implementation is
`mwnet_tf/methods/<name>.py` (its class `METHOD`, loaded by `mwnet_tf.methods.get`), and its
hyperparameters (`Param`, one flag each) are declared here, so that the command line can
define and check its flags before any method module (and TensorFlow) is imported.
"""

from __future__ import annotations

import dataclasses

METHODS = ("ce", "focal", "class_balanced", "reed_hard", "self_paced", "fine_tune", "l2rw",
           "glc", "co_teaching", "confident_learning", "mwnet", "cmwnet", "cmwnet_sl")
# The methods that train a weight net (the "meta" optimizer, `--meta_*` and `--weight_norm`).
WEIGHT_NET_METHODS = ("mwnet", "cmwnet", "cmwnet_sl")
# float16 needs loss scaling, which the steps of these methods apply (mwnet_tf.methods.steps); the
# others (l2rw, glc, co_teaching) write their own gradient steps without it.
FLOAT16_METHODS = ("ce", "focal", "class_balanced", "reed_hard", "self_paced", "fine_tune",
                   "confident_learning", "mwnet", "cmwnet", "cmwnet_sl")


@dataclasses.dataclass(frozen=True)
class Param:
    """A method hyperparameter, exposed as the flag `--<name>`.

    `default=None` means "derived from the setting" (the method says how in `help`).
    """

    name: str
    default: float | int | str | None
    help: str
    lower: float | None = None
    upper: float | None = None
    kind: type = float
    choices: tuple[str, ...] | None = None  # kind str: the allowed values
    # added after runs were kept (a kept run without it ran with `default`), and an
    # approximation or variant of the method: the tables give its runs a row of their own
    added: bool = False

    def check(self, value) -> str | None:
        """An error message for a bad value, else None."""
        if value is None:
            return None if self.default is None else f"{self.name} must be set"
        if self.kind is str and self.choices is None:
            return None
        if self.choices is not None:
            return None if value in self.choices else (
                f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.lower is not None and value < self.lower:
            return f"{self.name} must be >= {self.lower:g}, got {value:g}"
        if self.upper is not None and value > self.upper:
            return f"{self.name} must be <= {self.upper:g}, got {value:g}"
        return None


# MW-Net's own flags, shared with CMW-Net.
_MWNET = (
    Param("meta_scope", "full", "which variables carry the meta-gradient of the virtual "
          "step: all (full, exact); the last layer alone, on fixed features (head); the last "
          "--meta_layers (last); or those FaMUS's learned sampler draws among them (sampled); "
          "head, last and sampled are approximations", kind=str,
          choices=("full", "head", "last", "sampled"), added=True),
    Param("meta_layers", 15, "--meta_scope=last|sampled: the classifier's last N trainable "
          "variables are candidates (FaMUS's top_k, 15); the earlier ones' gradients enter "
          "the virtual step as constants", lower=2, kind=int, added=True),
    Param("famus_k", 4.0, "--meta_scope=sampled: FaMUS's K, the number of sampled variables "
          "the count regularizer expects (its num_act, 4)", lower=0.0, added=True),
    Param("famus_count_factor", 0.1, "--meta_scope=sampled: weight of the count regularizer "
          "(FaMUS's act_factor, 0.1)", lower=0.0, added=True),
    Param("famus_match_factor", 0.1, "--meta_scope=sampled: weight of the last layer's "
          "gradient match (FaMUS's mse_factor, 0.1)", lower=0.0, added=True),
    Param("famus_lr", 0.1, "--meta_scope=sampled: learning rate of the samplers' SGD "
          "(momentum 0.9, Nesterov; FaMUS's go_lr, 0.1)", lower=0.0, added=True),
    Param("meta_interval", 1, "update the weight net every K steps (1: every step, "
          "exact; K > 1 an approximation)", lower=1, kind=int, added=True),
    Param("weight_fn", None, "train with this frozen weight function instead (the "
          "weight_fn/ SavedModel of an earlier run of the same method, its variables read "
          "as data): no meta step, no meta set", kind=str, added=True),
)

# Each method's hyperparameters (a method left out has none).
PARAMS: dict[str, tuple[Param, ...]] = {
    "focal": (
        Param("focal_gamma", 2.0, "focal loss focusing parameter gamma (0 = cross-entropy)",
              lower=0.0),
    ),
    "class_balanced": (
        Param("cb_beta", 0.9999, "class-balanced loss beta in [0, 1]: class weights "
              "(1 - beta) / (1 - beta^n_c) for n_c training labels of class c, normalized to "
              "sum to the number of classes (0 = cross-entropy, 1 = inverse class frequency)",
              lower=0.0, upper=1.0),
    ),
    "reed_hard": (
        Param("reed_beta", 0.8, "hard bootstrapping: weight of the training label in the "
              "target beta * label + (1 - beta) * argmax prediction (1 = cross-entropy)",
              lower=0.0, upper=1.0),
    ),
    "self_paced": (
        Param("spl_start", 0.5, "self-paced learning: fraction of each batch (smallest losses) "
              "admitted in the first epoch", lower=0.01, upper=1.0),
        Param("spl_growth", None, "self-paced learning: increase of the admitted fraction per "
              "epoch, capped at 1 (default: (1 - spl_start) / (epochs - 1), all samples in the "
              "last epoch)", lower=0.0, upper=1.0),
    ),
    "fine_tune": (
        Param("ft_epochs", None, "epochs of the fine-tuning stage on the meta set (default: "
              "enough for 1/16 of the training stage's steps, the official L2RW fine-tuning "
              "proportion, at least 1)", lower=1, kind=int),
        Param("ft_lr", None, "learning rate of the fine-tuning stage, constant (default: the "
              "run's final decayed learning rate, lr * lr_decay_factor ** len(lr_decay_epochs))",
              lower=0.0),
    ),
    "glc": (
        Param("glc_estimate_epochs", None,
              "epochs of GLC's first stage (cross-entropy on the noisy labels, whose softmax "
              "estimates the corruption matrix); default: the run's --epochs with the run's "
              "--lr_decay_epochs (another value scales the decay epochs proportionally)",
              lower=1, kind=int),
    ),
    "co_teaching": (
        Param("ct_forget_rate", None,
              "Co-teaching's final forget rate (fraction of each batch dropped); default: the "
              "run's --rate (0 with --noise none), as the official code uses the noise rate",
              lower=0.0, upper=1.0),
        Param("ct_num_gradual", 10,
              "Co-teaching: epochs over which the forget rate rises linearly from 0 (T_k)",
              lower=0, kind=int),
        Param("ct_exponent", 1.0,
              "Co-teaching: exponent c of the rise (linspace(0, forget_rate ** c, T_k))",
              lower=0.0),
    ),
    "confident_learning": (
        Param("cl_folds", 5, "confident_learning: cross-validation folds for the out-of-fold "
              "probabilities (cleanlab's cv_n_folds default 5; the paper's CIFAR runs used 4)",
              lower=2, kind=int),
        Param("cl_fold_epochs", None, "confident_learning: epochs of each fold model; default: "
              "the run's --epochs and --lr_decay_epochs (a value given scales the decay "
              "epochs in proportion)", lower=1, kind=int),
    ),
    "mwnet": _MWNET,
    # CMW-Net shares MW-Net's step and its flags (the same Param objects)
    "cmwnet": (
        *_MWNET,
        Param("cmw_plain_epochs", None, "CMW-Net: epochs of plain cross-entropy before the "
              "meta stage (default: 4/5 of --epochs with --imbalance > 1, LT1.py's 160 of "
              "200; else 0)", lower=0, kind=int),
        Param("cmw_meta_set", "trusted", "CMW-Net's meta set: trusted (the run's meta set) "
              "or balanced (LT1.py: the training set itself, every class cut to the smallest "
              "class's count, drawn again each epoch)", kind=str,
              choices=("trusted", "balanced")),
    ),
    "cmwnet_sl": (
        Param("sl_ema", 0.997, "CMW-Net-SL: decay of the classifier's EMA copy per step, "
              "whose softmax is the soft pseudo-label", lower=0.0, upper=1.0),
        Param("sl_alpha", 1.0, "CMW-Net-SL: mixup's Beta(alpha, alpha) on the training "
              "batch", lower=1e-3),
        Param("sl_warmup_epochs", None, "CMW-Net-SL: epochs of plain cross-entropy first "
              "(default: 1/30 of --epochs for up to 10 classes, 1/10 for more, as cmwn.py's "
              "10 and 30 of 300; at least 1, less than --epochs)", lower=0, kind=int),
        Param("sl_meta_interval", 10, "CMW-Net-SL: update the weight net every K steps "
              "(cmwn.py: 10)", lower=1, kind=int),
    ),
}
PARAMS.update({name: () for name in METHODS if name not in PARAMS})


def all_params() -> dict[str, tuple[tuple[str, ...], Param]]:
    """Every method hyperparameter: flag name -> (the methods that take it, Param). Methods
    share a flag by sharing its `Param` object; two different Params of one name are an
    error."""
    out: dict[str, tuple[tuple[str, ...], Param]] = {}
    for name in METHODS:
        for p in PARAMS[name]:
            if p.name in out and out[p.name][1] is not p:
                raise RuntimeError(f"flag {p.name} is declared by two methods")
            owners = out[p.name][0] if p.name in out else ()
            out[p.name] = ((*owners, name), p)
    return out
