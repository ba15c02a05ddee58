"""BaseModel: plain cross-entropy on the (biased) training set."""

from __future__ import annotations

from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


class CrossEntropy(Method):
    """The paper's BaseModel: SGD on the mean cross-entropy of the training labels."""

    reference = "BaseModel of Shu et al. 2019"

    def replica_step(self, stage):
        clf, opt, options = self.ctx.classifier, self.ctx.optimizer, self.ctx.options

        def step(batch, meta_batch=None):
            return steps.ce_step(clf, opt, batch, options)
        return step


METHOD = CrossEntropy
