"""Learning to Reweight Examples (L2RW): per-batch weights from one virtual step's meta-gradient.

Ren, Zeng, Yang and Urtasun, "Learning to Reweight Examples for Robust Deep Learning", ICML 2018
(official TensorFlow 1 code: uber-research/learning-to-reweight-examples).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mwnet_tf.data.pipeline import load_images, normalize
from mwnet_tf.methods import steps
from mwnet_tf.methods.base import Method


def l2rw_weights(meta_grad: tf.Tensor) -> tf.Tensor:
    """The example weights of L2RW from `meta_grad[i] = d meta_loss / d eps_i` at eps = 0.

    `w_i = max(-meta_grad_i, 0) / sum_k max(-meta_grad_k, 0)`, the sum over the *global* batch
    (all replicas); when every clipped weight is 0 the weights stay 0 (no division), as the
    official code does (`sum += (sum == 0)`).
    """
    clipped = tf.maximum(-meta_grad, tf.zeros_like(meta_grad))
    total = steps.replica_sum(tf.reduce_sum(clipped))
    return clipped / tf.where(total == 0, tf.ones_like(total), total)


def l2rw_batch_weights(classifier, lr, x: tf.Tensor, y: tf.Tensor, meta_x: tf.Tensor,
                       meta_y: tf.Tensor) -> tf.Tensor:
    """The weights `n * w_i` [n] (1 the uniform weight) that `l2rw_step` would give the batch
    `(x, y)` against the meta batch `(meta_x, meta_y)` from the classifier's current state, on
    one device, changing nothing (`stateless_call`: the batch-norm statistics are not
    assigned). The run's figures use it to follow the weights of tracked samples (Fig. 6)."""
    tv = [v.value for v in classifier.trainable_variables]
    ntv = [v.value for v in classifier.non_trainable_variables]
    lr = tf.cast(lr, tv[0].dtype)
    with tf.GradientTape(watch_accessed_variables=False) as outer:
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(tv)
            logits, _ = classifier.stateless_call(tv, ntv, x, training=True)
            losses = steps.per_sample_ce(logits, y)
            eps = tf.zeros_like(losses)
            outer.watch(eps)
            virtual_loss = tf.reduce_sum(eps * losses)
        grads = inner.gradient(virtual_loss, tv)
        w_hat = [w - lr * g for w, g in zip(tv, grads)]
        meta_logits, _ = classifier.stateless_call(w_hat, ntv, meta_x, training=True)
        meta_loss = tf.reduce_mean(steps.per_sample_ce(meta_logits, meta_y))
    weights = l2rw_weights(outer.gradient(meta_loss, eps))
    return weights * tf.cast(tf.shape(weights)[0], weights.dtype)


def l2rw_step(classifier, optimizer, batch: dict, meta_batch: dict, options: steps.StepOptions,
              return_weights: bool = False) -> dict[str, tf.Tensor]:
    """One L2RW iteration (Algorithm 1 of Ren et al.) on this replica's share of a global batch.

    1. forward the training batch (train mode), per-sample losses `l`; perturbations
       `eps = 0` [n], watched by an outer tape;
    2. virtual plain SGD step `w_hat = w - lr * grad_w sum(eps * l)` (nested tapes, the inner
       gradient all-reduced over replicas; lr the optimizer's current learning rate);
    3. meta loss: mean cross-entropy of `w_hat` on the meta batch; `g = d meta_loss / d eps`;
    4. weights `l2rw_weights(g)` (constant), and the real step on `sum(w_i * l_i)` with the
       classifier's optimizer, reusing the first forward (its batch-norm statistics are
       assigned once).

    Returns the sums of `steps.mwnet_step`: "loss_sum", "correct", "meta_loss" (a global-mean
    share) and the weight sums of `steps.weight_stats`, logged as `n * w_i` (n the global batch,
    so 1 is the uniform weight); with `return_weights=True` also "weights", the `w_i` [n] the
    real step used (for tests: the trainer sums every output to a scalar).
    """
    trainable = classifier.trainable_variables
    non_trainable = classifier.non_trainable_variables
    tv = [v.value for v in trainable]
    ntv = [v.value for v in non_trainable]
    lr = tf.cast(optimizer.learning_rate, tv[0].dtype)
    with tf.GradientTape(watch_accessed_variables=False) as outer:
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as inner:
            inner.watch(tv)
            logits, new_ntv = classifier.stateless_call(tv, ntv, batch["x"], training=True)
            losses = steps.per_sample_ce(logits, batch["y"])                  # [n]
            eps = tf.zeros_like(losses)
            outer.watch(eps)
            virtual_loss = tf.reduce_sum(eps * losses)
        grads = steps.replica_sum(inner.gradient(virtual_loss, tv))
        w_hat = [w - lr * g for w, g in zip(tv, grads)]
        meta_logits, _ = classifier.stateless_call(w_hat, ntv, meta_batch["x"], training=True)
        meta_loss = tf.reduce_sum(steps.per_sample_ce(meta_logits, meta_batch["y"])) / tf.cast(
            options.global_meta_batch_size, meta_logits.dtype)
    weights = tf.stop_gradient(l2rw_weights(outer.gradient(meta_loss, eps)))

    grads = inner.gradient(losses, tv, output_gradients=weights)
    del inner
    optimizer.apply(grads, trainable)
    for var, value in zip(non_trainable, new_ntv):
        var.assign(value)

    logged = weights * tf.cast(options.global_batch_size, weights.dtype)
    out = {"loss_sum": tf.reduce_sum(losses), "correct": steps.num_correct(logits, batch["y"]),
           "meta_loss": meta_loss, **steps.weight_stats(logged, batch)}
    if return_weights:
        out["weights"] = weights
    return out


class LearningToReweight(Method):
    """Ren, Zeng, Yang and Urtasun, "Learning to Reweight Examples for Robust Deep Learning",
    ICML 2018. Each step weighs the training batch by the clipped, normalized negative gradient
    of the clean meta batch's loss after one virtual SGD step (`l2rw_step`).

    Taken from the official code (`models/reweight_model.py`, `cifar/cifar_train.py`): the
    perturbations start at 0 and enter the training loss as a sum `sum(eps * l)`; the clean
    pass is a mean over the meta batch; the weights are `max(-grad, 0)` divided by their sum,
    left at 0 when the sum is 0, and held constant (`stop_gradient`) in the real step, which
    trains the classifier on `sum(w_i * l_i)` with the run's optimizer (momentum SGD, weight
    decay in the optimizer). The official virtual step uses learning rate 1 (`w - grad`); this
    one uses the optimizer's current rate as MW-Net's step does, which changes nothing after
    normalization (any positive rate scales all of `g` alike).

    No hyperparameters of its own: the run's `--lr` schedule, `--batch_size` and
    `--meta_batch_size`; `--weight_norm` does not apply (the weights are always normalized by
    their sum, as in the paper).
    """

    uses_meta = True
    reference = "Ren et al. 2018"

    def sample_weights(self, x, y, losses):
        """L2RW's weights of the samples: `l2rw_batch_weights` on consecutive chunks of the
        run's global batch size (a last, shorter chunk as it is), each against the same meta
        batch (the first `--meta_batch_size` samples of the meta set, as it is now: a
        selected one changes each epoch), at the optimizer's current learning rate."""
        ctx = self.ctx
        if getattr(self, "_meta_of", None) is not ctx.data:  # a selected meta set changes
            data = self._meta_of = ctx.data
            m = ctx.options.global_meta_batch_size
            self._meta = (normalize(load_images(data, data.meta_x[:m]), data.mean, data.std),
                          tf.constant(data.meta_y[:m], tf.int32))
        if not hasattr(self, "_weights_fn"):
            self._weights_fn = tf.function(
                lambda x, y, mx, my, lr: l2rw_batch_weights(ctx.classifier, lr, x, y, mx, my))
        n = ctx.options.global_batch_size
        lr = tf.constant(float(ctx.optimizer.learning_rate.numpy()), tf.float32)
        out = [self._weights_fn(x[i:i + n], y[i:i + n], *self._meta, lr).numpy()
               for i in range(0, int(x.shape[0]), n)]
        return np.concatenate(out).astype(np.float64)

    def replica_step(self, stage):
        ctx = self.ctx

        def step(batch, meta_batch):
            return l2rw_step(ctx.classifier, ctx.optimizer, batch, meta_batch, ctx.options)
        return step

    def label_scores(self, losses, probabilities, labels):
        """L2RW's meta-gradient weights `n * w_i` of every training sample (`sample_weights`:
        consecutive batches of the run's global batch size in the training set's order, each
        against the same meta batch, at the last learning rate); a low weight is suspect
        (suspicion = -weight, equal weights, e.g. the many zeros, ranked by loss)."""
        data = self.ctx.data
        n = self.ctx.options.global_batch_size
        chunk = n * max(1, 2048 // n)  # whole batches of the run's size per image load
        losses = np.asarray(losses, np.float64)
        labels = np.asarray(labels)
        out = []
        for start in range(0, len(labels), chunk):
            rows = slice(start, start + chunk)
            x = normalize(load_images(data, data.train_x[rows]), data.mean, data.std)
            y = tf.constant(labels[rows], tf.int32)
            out.append(self.sample_weights(x, y, losses[rows]))
        weight = np.concatenate(out) if out else np.zeros(0)
        return {"suspicion": 0.0 - weight, "weight": weight}  # 0.0 -: no "-0" in the CSV


METHOD = LearningToReweight
