"""The Meta-Weight-Net step (Algorithm 1 of Shu et al. 2019) and the plain cross-entropy step.

Both steps are replica functions: call them directly on one device, or inside
`strategy.run` under a `tf.distribute` strategy. Batch sizes are *global*: every sum over a
replica's samples is divided by the global batch size, and Keras optimizers sum the
gradients over replicas.

One MW-Net step:
1. forward the training batch (train mode), per-sample losses `l`, weights `v = V(l)`;
2. virtual SGD step `w_hat = w - lr * grad_w sum(v * l) / n` with nested tapes, the inner
   gradient all-reduced over replicas so that it is the gradient of the global batch;
3. meta loss: mean cross-entropy of `w_hat` on the meta batch; update the weight net;
4. real step: weights from the *updated* weight net (constant), SGD-momentum on the
   classifier, reusing the first forward; batch-norm statistics updated once, from step 1.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from mwnet_tf.config import WEIGHT_NORMS
from mwnet_tf.methods import precision


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """Settings of a training step.

    Weight decay is not here: it is the optimizers' (coupled L2 as in `torch.optim`, see
    `mwnet_tf.methods.optim`), applied once to the gradient summed over replicas.

    Attributes:
        global_batch_size: training examples per step over all replicas.
        global_meta_batch_size: meta examples per step over all replicas.
        weight_norm: "none" for `sum(v * l) / n`, "batch" for `sum(v / sum(v) * l)`.
    """

    global_batch_size: int
    global_meta_batch_size: int
    weight_norm: str = "batch"

    def __post_init__(self):
        if self.weight_norm not in WEIGHT_NORMS:
            raise ValueError(f"weight_norm must be one of {WEIGHT_NORMS}, got {self.weight_norm!r}")
        sizes = (self.global_batch_size, self.global_meta_batch_size)
        if all(isinstance(n, int) for n in sizes) and min(sizes) < 1:  # tensors: Keras' fit
            raise ValueError("batch sizes must be positive")


def per_sample_ce(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of each sample, [batch], in float32 or the logits' float type."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits)


def num_replicas() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def replica_sum(value):
    """Sum over replicas (differentiable); the identity on one device."""
    if num_replicas() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce("SUM", value)


def normalized(v: tf.Tensor, options: StepOptions) -> tf.Tensor:
    """Per-sample coefficients of the weighted loss: v / n or v / sum(v) (global)."""
    if options.weight_norm == "none":
        return v / tf.cast(options.global_batch_size, v.dtype)
    total = replica_sum(tf.reduce_sum(v))
    # Guard as the authors' code does: a zero sum leaves the weights unnormalized.
    return v / tf.where(total == 0, tf.ones_like(total), total)


def weight_stats(v, batch) -> dict[str, tf.Tensor]:
    """Sums that the trainer turns into mean weights of clean and corrupted samples."""
    stats = {"weight_sum": tf.reduce_sum(v)}
    if "corrupted" in batch:
        bad = tf.cast(batch["corrupted"], v.dtype)
        stats.update(weight_sum_corrupted=tf.reduce_sum(v * bad),
                     count_corrupted=tf.reduce_sum(bad))
    return stats


def num_correct(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """How many argmax predictions equal the labels (float32 scalar)."""
    hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
    return tf.reduce_sum(tf.cast(hits, tf.float32))


def mwnet_step(classifier: keras.Model, weight_net: keras.Model,
               optimizer: keras.optimizers.Optimizer,
               meta_optimizer: keras.optimizers.Optimizer,
               batch: dict, meta_batch: dict, options: StepOptions,
               head: "HeadSplit | None" = None) -> dict[str, tf.Tensor]:
    """One MW-Net iteration on this replica's share of a global batch.

    With `head` (`split_head(classifier)`), an approximation (`--meta_scope=head`): the
    virtual step moves the classifier's last layer only, and the meta batch is forwarded
    through the rest with the current weights, so the meta-gradient reaches the weight net
    through the last layer's gradient alone (no second-order pass through the body).

    Args:
        classifier: Keras model mapping images to logits (batch norm in train mode here).
        weight_net: Keras model mapping losses [n, 1] to weights [n, 1].
        optimizer: the classifier's optimizer (SGD with momentum in the paper); its current
            learning rate is also the virtual step's learning rate.
        meta_optimizer: the weight net's optimizer.
        batch: {"x", "y"} and optionally {"corrupted"} for diagnostics.
        meta_batch: {"x", "y"} from the clean meta set.
        options: batch sizes, weight decays, weight normalization.
        head: None for the exact step (the paper's), else the classifier's split.

    Returns:
        Per-replica sums (divide by the global batch after reducing over replicas):
        "loss_sum" (cross-entropy), "correct", "meta_loss" (already a global mean share),
        "weight_sum" and, when the batch says which samples are corrupted,
        "weight_sum_corrupted" and "count_corrupted".
    """
    if head is not None:
        return _mwnet_head_step(head, weight_net, optimizer, meta_optimizer, batch, meta_batch,
                                options)
    trainable = classifier.trainable_variables
    non_trainable = classifier.non_trainable_variables
    tv = [v.value for v in trainable]
    ntv = [v.value for v in non_trainable]
    lr = tf.cast(optimizer.learning_rate, tv[0].dtype)
    with tf.GradientTape() as outer:  # watches the weight net's variables as it reads them
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as inner:
            inner.watch(tv)
            logits, new_ntv = classifier.stateless_call(tv, ntv, batch["x"], training=True)
            losses = per_sample_ce(logits, batch["y"])                     # [n]
            scaled_virtual = _virtual_loss(weight_net, losses, optimizer, options)
        grads = precision.unscaled(replica_sum(inner.gradient(scaled_virtual, tv)), optimizer)
        w_hat = [w - lr * tf.cast(g, w.dtype) for w, g in zip(tv, grads)]
        meta_logits, _ = classifier.stateless_call(w_hat, ntv, meta_batch["x"], training=True)
        meta_loss, scaled_meta = _meta_loss(meta_logits, meta_batch["y"], meta_optimizer,
                                            options)
    meta_loss = _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer)
    grads, v_new = _reweighted_gradients(inner, losses, tv, weight_net, optimizer, options)
    del inner
    optimizer.apply(grads, trainable)  # a LossScaleOptimizer divides by its scale
    for var, value in zip(non_trainable, new_ntv):
        var.assign(value)

    return {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
            "meta_loss": meta_loss, **weight_stats(v_new, batch)}


def _virtual_loss(weight_net, losses, optimizer, options) -> tf.Tensor:
    """The virtual step's loss (Eq. 3): the losses weighted by the weight net, which reads
    them as data (stop-gradient), normalized and loss-scaled. Inside both tapes."""
    v = weight_net(tf.stop_gradient(losses)[:, None], training=True)[:, 0]
    return precision.scaled(tf.reduce_sum(normalized(v, options) * losses), optimizer)


def _meta_loss(meta_logits, labels, meta_optimizer, options) -> tuple[tf.Tensor, tf.Tensor]:
    """(this replica's share of the mean meta loss, the same loss-scaled), inside the outer
    tape."""
    meta_loss = tf.reduce_sum(per_sample_ce(meta_logits, labels)) / tf.cast(
        options.global_meta_batch_size, meta_logits.dtype)
    return meta_loss, precision.scaled(meta_loss, meta_optimizer)


def _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer) -> tf.Tensor:
    """Applies the meta-gradient (Eq. 4) to the weight net; returns the meta loss to report."""
    theta = weight_net.trainable_variables
    meta_optimizer.apply(outer.gradient(scaled_meta, theta), theta)
    return _skipped_as_zero(meta_loss, meta_optimizer)


def _reweighted_gradients(inner, losses, variables, weight_net, optimizer, options):
    """(gradients of the losses weighted by the UPDATED weight net (Eq. 5), its weights): the
    weights are constants, so the inner tape's first-order graph serves again."""
    v_new = tf.stop_gradient(weight_net(tf.stop_gradient(losses)[:, None])[:, 0])
    grads = inner.gradient(losses, variables, output_gradients=precision.scaled(
        normalized(v_new, options), optimizer))
    return grads, v_new


def _skipped_as_zero(meta_loss: tf.Tensor, meta_optimizer) -> tf.Tensor:
    """Under loss scaling (float16) a non-finite meta loss is an overflow that the
    `LossScaleOptimizer` has just skipped (and lowered its scale for), not a diverged run:
    report it as 0. Without loss scaling it is returned as it is (the trainer stops on it)."""
    if precision.scale(meta_optimizer) is None:
        return meta_loss
    return tf.where(tf.math.is_finite(meta_loss), meta_loss, tf.zeros_like(meta_loss))


@dataclasses.dataclass(frozen=True)
class HeadSplit:
    """A classifier as `body` (a Keras model to the last layer's input, sharing its layers)
    and its last layer, a linear `Dense` (`logits = features @ kernel + bias`)."""

    body: keras.Model
    kernel: keras.Variable
    bias: keras.Variable
    variables: tuple  # the classifier's trainable variables, body's first


def split_head(classifier: keras.Model) -> HeadSplit:
    """The body and last layer of a functional classifier ending in a linear `Dense`, or a
    `ValueError`."""
    last = classifier.layers[-1]
    if (not isinstance(last, keras.layers.Dense) or not last.use_bias
            or last.activation is not keras.activations.linear):
        raise ValueError(f"--meta_scope=head needs a classifier whose last layer is a linear "
                         f"Dense with bias; {classifier.name}'s is {type(last).__name__}")
    body = keras.Model(classifier.input, last.input, name=f"{classifier.name}_body")
    return HeadSplit(body, last.kernel, last.bias,
                     (*body.trainable_variables, last.kernel, last.bias))


def _mwnet_head_step(head: HeadSplit, weight_net, optimizer, meta_optimizer, batch,
                     meta_batch, options) -> dict[str, tf.Tensor]:
    """`mwnet_step` with the virtual step on the last layer only (see there)."""
    body = head.body
    tv = [v.value for v in body.trainable_variables]
    ntv = [v.value for v in body.non_trainable_variables]
    kernel, bias = head.kernel.value, head.bias.value
    lr = tf.cast(optimizer.learning_rate, kernel.dtype)
    meta_features, _ = body.stateless_call(tv, ntv, meta_batch["x"], training=True)
    meta_features = tf.stop_gradient(tf.cast(meta_features, kernel.dtype))
    with tf.GradientTape() as outer:
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as inner:
            inner.watch(tv + [kernel, bias])
            features, new_ntv = body.stateless_call(tv, ntv, batch["x"], training=True)
            logits = tf.matmul(tf.cast(features, kernel.dtype), kernel) + bias
            losses = per_sample_ce(logits, batch["y"])
            scaled_virtual = _virtual_loss(weight_net, losses, optimizer, options)
        g_kernel, g_bias = precision.unscaled(
            replica_sum(inner.gradient(scaled_virtual, [kernel, bias])), optimizer)
        meta_logits = (tf.matmul(meta_features, kernel - lr * g_kernel) + bias - lr * g_bias)
        meta_loss, scaled_meta = _meta_loss(meta_logits, meta_batch["y"], meta_optimizer,
                                            options)
    meta_loss = _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer)
    grads, v_new = _reweighted_gradients(inner, losses, tv + [kernel, bias], weight_net,
                                         optimizer, options)
    del inner
    optimizer.apply(grads, list(head.variables))
    for var, value in zip(body.non_trainable_variables, new_ntv):
        var.assign(value)
    return {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
            "meta_loss": meta_loss, **weight_stats(v_new, batch)}


def weighted_step(classifier: keras.Model, weight_net: keras.Model,
                  optimizer: keras.optimizers.Optimizer, batch: dict,
                  options: StepOptions) -> dict[str, tf.Tensor]:
    """MW-Net's real step alone: SGD on the loss weighted by the current weight net, no
    meta update (the steps between meta updates of `--meta_interval`, and a frozen weight
    function). The same sums as `mwnet_step`, with `meta_loss` 0."""
    trainable = classifier.trainable_variables
    with tf.GradientTape() as tape:
        logits = classifier(batch["x"], training=True)
        losses = per_sample_ce(logits, batch["y"])
        v = tf.stop_gradient(weight_net(tf.stop_gradient(losses)[:, None])[:, 0])
        loss = precision.scaled(tf.reduce_sum(normalized(v, options) * losses), optimizer)
    optimizer.apply(tape.gradient(loss, trainable), trainable)
    return {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
            "meta_loss": tf.zeros((), losses.dtype), **weight_stats(v, batch)}


@dataclasses.dataclass(frozen=True)
class Alternating:
    """A replica step that is `first` on every `every`-th step and `other` on the rest,
    counted by `counter` (an int64 variable, checkpointed by its owner). Both return dicts
    with the same keys. The choice is made outside the replicas, around `strategy.run`:
    control flow inside a replica function cannot hold an optimizer's cross-replica sync."""

    first: Callable
    other: Callable
    every: int
    counter: tf.Variable


def loss_step(classifier: keras.Model, optimizer: keras.optimizers.Optimizer, batch: dict,
              options: StepOptions, loss_fn: Callable) -> dict[str, tf.Tensor]:
    """One SGD step on `sum(loss_fn(logits, batch)) / n`, a per-sample training objective.

    `loss_fn(logits, batch)` returns the per-sample objective [n] and the per-sample weights it
    used (or None), which are logged like MW-Net's. Returns the sums of `mwnet_step`, with
    `loss_sum` the plain cross-entropy against the training labels.
    """
    trainable = classifier.trainable_variables
    with tf.GradientTape() as tape:
        logits = classifier(batch["x"], training=True)
        objective, weights = loss_fn(logits, batch)
        loss = tf.reduce_sum(objective) / tf.cast(options.global_batch_size, objective.dtype)
        loss = precision.scaled(loss, optimizer)
    optimizer.apply(tape.gradient(loss, trainable), trainable)
    out = {"loss_sum": tf.reduce_sum(per_sample_ce(logits, batch["y"])),
           "correct": num_correct(logits, batch["y"])}
    if weights is not None:
        out.update(weight_stats(tf.cast(weights, tf.float32), batch))
    return out


def ce_step(classifier: keras.Model, optimizer: keras.optimizers.Optimizer,
            batch: dict, options: StepOptions) -> dict[str, tf.Tensor]:
    """One plain cross-entropy SGD step (the paper's BaseModel); same returns as `mwnet_step`."""
    return loss_step(classifier, optimizer, batch, options,
                     lambda logits, b: (per_sample_ce(logits, b["y"]), None))


def compile_step(replica_fn: Callable, strategy: tf.distribute.Strategy | None = None,
                 jit_compile: bool = False) -> Callable:
    """`replica_fn(*args) -> dict of sums` as one `tf.function`, run on every replica under
    `strategy` (metrics summed over replicas). Build the optimizers inside the strategy's scope
    first (`opt.build(vars)`)."""
    if strategy is None and not isinstance(replica_fn, Alternating):
        return tf.function(replica_fn, jit_compile=jit_compile)
    one = _one_step(replica_fn, strategy, jit_compile)
    return tf.function(lambda *args: one(args))


def _one_step(replica_fn, strategy, jit_compile):
    """`one(element) -> dict of sums`: one step, in cross-replica context."""
    if isinstance(replica_fn, Alternating):
        first, other = (_one_step(f, strategy, jit_compile)
                        for f in (replica_fn.first, replica_fn.other))
        counter, every = replica_fn.counter, replica_fn.every

        def alternating(element):
            out = tf.cond(counter % every == 0, lambda: first(element),
                          lambda: other(element))
            counter.assign_add(1)
            return out
        return alternating
    if strategy is None:
        step = tf.function(replica_fn, jit_compile=jit_compile)
        return lambda element: step(*element)
    per_replica = tf.function(replica_fn, jit_compile=True) if jit_compile else replica_fn

    def distributed(element):
        out = strategy.run(per_replica, args=tuple(element))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in out.items()}
    return distributed


def compile_loop(replica_fn: Callable, strategy: tf.distribute.Strategy | None = None,
                 jit_compile: bool = False) -> Callable:
    """`loop(iterator, n) -> dict of sums over n steps`: n steps of `replica_fn` in one
    `tf.function` call, each on the next element of `iterator` (a dataset or distributed
    iterator holding at least n more), the metrics summed on the device. The same steps as n
    calls of `compile_step(replica_fn, ...)`, without the host round trip between them; `n`
    is a tensor (another value does not retrace)."""
    one = _one_step(replica_fn, strategy, jit_compile)

    @tf.function
    def loop(iterator, n):
        sums = one(next(iterator))
        for _ in tf.range(n - 1):
            out = one(next(iterator))
            sums = {k: sums[k] + out[k] for k in sums}
        return sums

    return loop


def make_train_step(classifier: keras.Model, optimizer, options: StepOptions, *,
                    weight_net: keras.Model | None = None, meta_optimizer=None,
                    strategy: tf.distribute.Strategy | None = None,
                    jit_compile: bool = False) -> Callable:
    """`step(batch, meta_batch) -> dict of summed metrics`, one `tf.function`: MW-Net's exact
    step when given a `weight_net` (and its `meta_optimizer`), else the cross-entropy step (the
    meta batch unused). Every method's own step comes from `mwnet_tf.methods`."""
    if (weight_net is None) != (meta_optimizer is None):
        raise ValueError("MW-Net's step needs both weight_net and meta_optimizer")

    def replica_fn(batch, meta_batch):
        if weight_net is not None:
            return mwnet_step(classifier, weight_net, optimizer, meta_optimizer, batch,
                              meta_batch, options)
        return ce_step(classifier, optimizer, batch, options)

    return compile_step(replica_fn, strategy, jit_compile)


def make_eval_step(classifier: keras.Model, strategy: tf.distribute.Strategy | None = None,
                   num_classes: int | None = None) -> Callable:
    """Builds `eval(batch) -> {"loss_sum", "correct", "count"}` (sums over the batch), plus
    `class_correct`, `class_count` [num_classes] and `confusion` [true, predicted] when
    `num_classes` is given."""

    def replica_fn(batch):
        logits = classifier(batch["x"], training=False)
        labels = tf.cast(batch["y"], tf.int32)
        losses = per_sample_ce(logits, labels)
        out = {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, labels),
               "count": tf.cast(tf.size(losses), tf.float32)}
        if num_classes:
            hits = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                           tf.float32)
            out["class_correct"] = tf.math.unsorted_segment_sum(hits, labels, num_classes)
            out["class_count"] = tf.math.unsorted_segment_sum(tf.ones_like(hits), labels,
                                                              num_classes)
            out["confusion"] = tf.math.confusion_matrix(
                labels, tf.argmax(logits, -1, output_type=tf.int32), num_classes,
                dtype=tf.float32)
        return out

    return compile_step(replica_fn, strategy)
