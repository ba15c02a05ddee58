"""Per-sample gradients, for the tests that check a step against its formula (Eq. 6, L2RW)."""

import tensorflow as tf

from mwnet_tf.methods import steps


def per_sample_gradients(clf, batch):
    """(trainable values, non-trainable values, per-sample cross-entropy [n], the gradient of
    each sample's loss [n x trainable]) of `clf` on `batch` in train mode, computed one sample
    at a time (no nested tapes)."""
    tv = [v.value for v in clf.trainable_variables]
    ntv = [v.value for v in clf.non_trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tv)
        logits, _ = clf.stateless_call(tv, ntv, batch["x"], training=True)
        losses = steps.per_sample_ce(logits, batch["y"])
        per_sample = [losses[j] for j in range(losses.shape[0])]
    return tv, ntv, losses, [tape.gradient(loss, tv) for loss in per_sample]
