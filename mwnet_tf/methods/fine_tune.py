"""Fine-tuning: cross-entropy on the biased training set, then on the clean meta set only."""

from __future__ import annotations

import math

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method, Stage

# The official L2RW fine-tuning baseline (uber-research/learning-to-reweight-examples,
# cifar/cifar_train.py `finetune_model` with cifar/configs/cifar-resnet-32.prototxt):
# 5000 steps on the clean set after an 80000-step run, i.e. 1/16 of the first stage's steps.
FT_STEP_FRACTION = 5000 / 80000


class FineTune(Method):
    """The "Fine-tuning" baseline of Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping
    For Sample Weighting", NeurIPS 2019 (Tables 1-3): the BaseModel (cross-entropy on the biased
    training set, the run's schedule), then fine-tuned on the clean meta set.

    The MW-Net paper gives no fine-tuning schedule; the defaults follow the fine-tuning baseline
    of the official code of Ren, Zeng, Yang and Urtasun, "Learning to Reweight Examples for
    Robust Deep Learning", ICML 2018 (uber-research/learning-to-reweight-examples,
    `cifar/cifar_train.py --finetune`): the trained model goes on with the same optimizer and
    its state (momentum buffers kept, `fresh=False`) on the clean set only, at the last learning
    rate of the training schedule (1e-3 there), for 5000 steps after an 80000-step run. Here
    the second stage ("fine-tune") lasts `ft_epochs` epochs of the meta set, by default as many
    as give 1/16 of the first stage's steps (rounded up, at least one), at `ft_lr`, by default
    the run's final decayed learning rate, without decay.

    Only the second stage counts for the run's results (test accuracy and best test accuracy):
    the first one is the BaseModel. Neither stage gets meta batches beside its training
    batches; the second one trains on the meta set as its data (`stage_data`).
    """

    uses_meta = True
    reference = "Fine-tuning baseline of Shu et al. 2019; schedule of Ren et al. 2018's code"

    def __init__(self, ctx):
        super().__init__(ctx)
        meta_size, batch = len(ctx.data.meta_y), self.config.batch_size
        if meta_size < batch:
            more = ("--select_per_class" if self.config.meta_source == "selected"
                    else "--meta_per_class")
            raise ValueError(f"fine_tune trains on the meta set ({meta_size} images), which is "
                             f"smaller than one batch ({batch}): lower --batch_size or raise "
                             f"{more}")

    def ft_epochs(self) -> int:
        if self.hp["ft_epochs"] is not None:
            return int(self.hp["ft_epochs"])
        c = self.config
        train_steps = c.epochs * (len(self.ctx.data.train_y) // c.batch_size)
        meta_steps = len(self.ctx.data.meta_y) // c.batch_size
        return max(1, math.ceil(math.ceil(train_steps * FT_STEP_FRACTION) / meta_steps))

    def ft_lr(self) -> float:
        if self.hp["ft_lr"] is not None:
            return float(self.hp["ft_lr"])
        c = self.config
        return c.lr * c.lr_decay_factor ** len(c.lr_decay_epochs)

    def stages(self):
        c = self.config
        return [Stage("train", c.epochs, tuple(c.lr_decay_epochs), reported=False),
                Stage("fine-tune", self.ft_epochs(), source="meta", fresh=False,
                      lr=self.ft_lr())]

    def meta_batches(self, stage):
        return False

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options

        def step(batch, meta_batch=None):
            return steps.ce_step(clf, opt, batch, options)
        return step


METHOD = FineTune
