"""CMW-Net (Shu et al., TPAMI 2023): a class-aware weight net learned through MW-Net's step."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mwnet_tf.data import BiasedData
from mwnet_tf.methods import steps
from mwnet_tf.methods.base import split_run
from mwnet_tf.methods.mwnet import MetaWeightNet
from mwnet_tf.models import build_class_weight_net, weight_function

GROUPS = 3  # KMeans(3) over the per-class counts, as LT1.py and cmwn.py
# LT1.py trains 160 of its 200 epochs with plain cross-entropy before the meta stage.
PLAIN_FRACTION = 160 / 200


def class_groups(counts, groups: int = GROUPS) -> np.ndarray:
    """The group of each class [C] (int32) from its number of training labels `counts` [C]:
    `KMeans(groups)` over the counts as the authors' code clusters them
    (`section4/Class_Imbalance/LT1.py`, `Feature-independent_Label_Noise/cmwn.py`), with a
    fixed `random_state` (0) and `n_init` (10), the groups numbered by ascending cluster centre
    (group 0 holds the rarest classes), so that the same counts always give the same groups.

    Counts with at most `groups` distinct values give one group per distinct value (balanced
    data, every count equal: one group; KMeans would leave clusters empty there). Counts that
    are near-equal but not equal are clustered as given, as the authors' code does: three
    groups of nearly the same size, each with a head of its own."""
    counts = np.asarray(counts, np.float64).reshape(-1)
    distinct = np.unique(counts)
    if len(distinct) <= groups:
        return np.searchsorted(distinct, counts).astype(np.int32)
    from sklearn.cluster import KMeans
    km = KMeans(groups, random_state=0, n_init=10).fit(counts[:, None])
    rank = np.empty(groups, np.int32)
    rank[np.argsort(km.cluster_centers_[:, 0], kind="stable")] = np.arange(groups)
    return rank[km.labels_]


def group_names(groups: np.ndarray, counts) -> list[str]:
    """A label per group: its classes and their range of counts."""
    counts = np.asarray(counts, np.int64)
    names = []
    for g in range(int(groups.max()) + 1):
        members = np.flatnonzero(groups == g)
        lo, hi = int(counts[members].min()), int(counts[members].max())
        span = f"{lo}" if lo == hi else f"{lo}-{hi}"
        names.append(f"group {g}: {len(members)} classes, {span} labels each")
    return names


def balanced_subset(labels: np.ndarray, num_classes: int, seed: int, epoch: int) -> np.ndarray:
    """LT1.py's meta set: every class of the training labels cut to the smallest class's
    count, drawn afresh each epoch (seeded by `seed` and `epoch`); sorted indices."""
    labels = np.asarray(labels)
    present = [c for c in range(num_classes) if np.any(labels == c)]
    smallest = min(int(np.sum(labels == c)) for c in present)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 0xC3]))
    rows = [rng.permutation(np.flatnonzero(labels == c))[:smallest] for c in present]
    return np.sort(np.concatenate(rows))


class ClassAwareMetaWeightNet(MetaWeightNet):
    """Shu, Yuan, Meng and Xu, "CMW-Net: Learning a Class-Aware Sample Weighting Mapping for
    Robust Deep Learning", TPAMI 2023 (code: xjtushujun/CMW-Net).

    The weight net is class-aware (`models.class_weight_net`): a shared Linear(1->100) + ReLU
    trunk and one Linear(100->1) + sigmoid head per class group; a sample's weight is the head
    of its training label's group. The groups are `class_groups` of the training labels'
    per-class counts. The step is MW-Net's (`steps.mwnet_step`, the same nested tapes), the
    weight net reading (loss, training label); the authors' code divides the weighted losses
    by the sum of the weights held constant (`--weight_norm=batch_detached`, this method's
    default).

    The long-tail protocol of LT1.py: `--cmw_plain_epochs` of plain cross-entropy first (by
    default 4/5 of the run when `--imbalance` > 1, LT1.py's 160 of 200; else none), then the
    meta stage; `--cmw_meta_set=balanced` takes the meta set from the training set itself,
    every class cut to the smallest class's count, drawn again each epoch (a subset chosen by
    the method, not held out). `--weight_fn` reuses an exported class-aware weight function,
    frozen: its heads applied to this data's groups (by the same rule)."""

    uses_meta = True
    reference = "Shu et al. 2023 (CMW-Net)"

    def __init__(self, ctx):
        self._check_classes(ctx.data)
        self.counts = np.bincount(np.asarray(ctx.data.train_y, np.int64),
                                  minlength=ctx.data.num_classes)
        self.groups = class_groups(self.counts)
        super().__init__(ctx)
        self.epoch = 0
        if self.hp.get("cmw_meta_set") == "balanced" and ctx.config.meta_source == "selected":
            raise ValueError("--cmw_meta_set=balanced is a meta set of its own: it does not go "
                             "with --meta_source=selected")
        if self.hp.get("cmw_meta_set") == "balanced" and not self.frozen:
            size = len(balanced_subset(ctx.data.train_y, ctx.data.num_classes, 0, 0))
            if size < ctx.config.meta_batch_size:
                raise ValueError(
                    f"--cmw_meta_set=balanced: the balanced subset of the training set "
                    f"({size} images, every class cut to the smallest's count) is smaller than "
                    f"one meta batch ({ctx.config.meta_batch_size}): lower --meta_batch_size")
        plain = self.plain_epochs()
        if plain >= ctx.config.epochs:
            raise ValueError(f"--cmw_plain_epochs={plain} leaves no meta stage in a run of "
                             f"--epochs={ctx.config.epochs}")

    def _check_classes(self, data: BiasedData) -> None:
        present = np.unique(np.asarray(data.train_y))
        if len(present) < 2:
            raise ValueError(f"--method={self.name} weighs samples by class: the training "
                             f"labels hold a single class ({int(present[0])})")

    # --- the weight net ------------------------------------------------------------------
    def _build_weight_net(self, seed):
        return build_class_weight_net(self.groups, seed=seed)

    def _read_frozen(self, path):
        return weight_function.read_class_weight_net(path, self.groups)

    # --- the run's shape -----------------------------------------------------------------
    def plain_epochs(self) -> int:
        value = self.hp.get("cmw_plain_epochs")
        if value is not None:
            return int(value)
        c = self.config
        return int(round(PLAIN_FRACTION * c.epochs)) if c.imbalance > 1 else 0

    def stages(self):
        return split_run(self.config, "plain", self.plain_epochs(), "meta")

    def meta_batches(self, stage):
        return stage.name == "meta" and not self.frozen

    def begin_epoch(self, stage, epoch):
        self.epoch = epoch

    def stage_data(self, stage) -> BiasedData:
        data = self.ctx.data
        if stage.name != "meta" or self.hp.get("cmw_meta_set") != "balanced" or self.frozen:
            return data
        rows = balanced_subset(data.train_y, data.num_classes, self.config.part_seed("meta"),
                               self.epoch)
        return dataclasses.replace(data, meta_x=data.train_x[rows], meta_y=data.train_y[rows],
                                   meta_index=data.train_index[rows])

    def replica_step(self, stage):
        if stage.name == "plain":
            ctx = self.ctx
            return lambda batch: steps.ce_step(ctx.classifier, ctx.optimizer, batch, ctx.options)
        return super().replica_step(stage)

    # --- what it learned -----------------------------------------------------------------
    def _weights(self, losses, classes) -> np.ndarray:
        x = np.asarray(losses, np.float32).reshape(-1, 1)
        y = np.asarray(classes, np.int32).reshape(-1, 1)
        return self.weight_net([x, y], training=False).numpy()[:, 0].astype(np.float64)

    def group_weights_of(self, losses) -> dict[str, np.ndarray]:
        """Each group's weight at each loss, keyed by `group_names`."""
        losses = np.asarray(losses, np.float64)
        out = {}
        for g, name in enumerate(group_names(self.groups, self.counts)):
            member = int(np.flatnonzero(self.groups == g)[0])
            out[name] = self._weights(losses, np.full(len(losses), member))
        return out

    def weight_of(self, losses):
        """The mean over the training samples of their weight at each loss: each group's
        function weighted by its share of the training labels."""
        share = np.bincount(self.groups, weights=self.counts) / self.counts.sum()
        curves = list(self.group_weights_of(losses).values())
        return np.sum([s * w for s, w in zip(share, curves)], axis=0)

    def sample_weights(self, x, y, losses):
        return self._weights(losses, np.asarray(y))

    def results(self):
        curves = {}
        grid = weight_function.DEFAULT_LOSSES
        for name, weights in self.group_weights_of(np.asarray(grid)).items():
            curves[name] = {f"{loss:g}": round(float(w), 6) for loss, w in zip(grid, weights)}
        return {"weight_curves": curves, "class_groups": [int(g) for g in self.groups],
                "class_counts": [int(n) for n in self.counts]}

    def export(self, workdir):
        weight_function.export_weight_fn(self.weight_net, os.path.join(workdir, "weight_fn"))

    def label_scores(self, losses, probabilities, labels):
        """The weight of each sample's loss by its class's head; a low weight is suspect."""
        weight = self._weights(np.asarray(losses, np.float64), labels)
        return {"suspicion": 1.0 - weight, "weight": weight}


METHOD = ClassAwareMetaWeightNet
