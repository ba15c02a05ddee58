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
    if options.weight_norm == "batch_detached":  # CMW-Net's code: `sum(v).detach()`
        total = tf.stop_gradient(total)
    # Guard as the authors' code does: a zero sum leaves the weights unnormalized.
    return v / tf.where(total == 0, tf.ones_like(total), total)


def weigh(weight_net: keras.Model, losses: tf.Tensor, labels: tf.Tensor,
          training: bool = False) -> tf.Tensor:
    """The weights [n] of per-sample losses, read as data (stop-gradient), from a weight net
    of the loss alone (MW-Net, one input) or of the loss and the training label (CMW-Net's
    `models.class_weight_net`, two inputs)."""
    x = tf.stop_gradient(losses)[:, None]
    if len(weight_net.inputs) == 2:
        x = [x, tf.reshape(tf.cast(labels, tf.int32), [-1, 1])]
    return weight_net(x, training=training)[:, 0]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A training objective `sum(coefficients(v) * terms)` of per-sample terms [n, k] whose
    coefficients [n, k] depend on the weights `v` [n] the weight net gives the samples'
    cross-entropy losses. Linear in the terms, the real step's gradient is the first forward's
    gradient of the terms with the coefficients as output gradients.

    MW-Net's (`MWNET`, the default): one term, the cross-entropy, its coefficient `v`
    normalized (`normalized`). CMW-Net-SL's (`methods.cmwnet_sl`): mixup and soft pseudo-labels.

    Attributes:
        terms: `(logits, batch, losses) -> [n, k]`, `losses` the cross-entropy against the
            training labels.
        coefficients: `(v, batch, options) -> [n, k]`, differentiable in `v`.
        meta_losses: `(meta_logits, meta_batch) -> [m]`, summed and divided by the global
            meta batch.
    """

    terms: Callable
    coefficients: Callable
    meta_losses: Callable


MWNET = Objective(
    terms=lambda logits, batch, losses: losses[:, None],
    coefficients=lambda v, batch, options: normalized(v, options)[:, None],
    meta_losses=lambda logits, batch: per_sample_ce(logits, batch["y"]))


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
               head: "HeadSplit | None" = None,
               objective: Objective | None = None, gates=None) -> dict[str, tf.Tensor]:
    """One MW-Net iteration on this replica's share of a global batch.

    With `head` (`split_head(classifier)`), an approximation (`--meta_scope=head`): the
    virtual step moves the classifier's last layer only, and the meta batch is forwarded
    through the rest with the current weights, so the meta-gradient reaches the weight net
    through the last layer's gradient alone (no second-order pass through the body).

    Args:
        classifier: Keras model mapping images to logits (batch norm in train mode here).
        weight_net: Keras model mapping losses [n, 1] to weights [n, 1], or (losses [n, 1],
            training labels [n, 1]) to weights (CMW-Net's class-aware net, `weigh`).
        optimizer: the classifier's optimizer (SGD with momentum in the paper); its current
            learning rate is also the virtual step's learning rate.
        meta_optimizer: the weight net's optimizer.
        batch: {"x", "y"} and optionally {"corrupted"} for diagnostics.
        meta_batch: {"x", "y"} from the clean meta set.
        options: batch sizes, weight decays, weight normalization.
        head: None for the exact step (the paper's), else the classifier's split.
        objective: the training objective (`Objective`; None: MW-Net's, `MWNET`). The head
            approximation takes MW-Net's only.
        gates: None (every variable carries the meta-gradient), or which variables do
            (`layer_gates.LastGates`, `layer_gates.SampledGates`: `--meta_scope=last|sampled`).

    Returns:
        Per-replica sums (divide by the global batch after reducing over replicas):
        "loss_sum" (cross-entropy), "correct", "meta_loss" (already a global mean share),
        "weight_sum" and, when the batch says which samples are corrupted,
        "weight_sum_corrupted" and "count_corrupted".
    """
    if head is not None:
        if objective not in (None, MWNET):
            raise ValueError("the head approximation takes MW-Net's objective only")
        return _mwnet_head_step(head, weight_net, optimizer, meta_optimizer, batch, meta_batch,
                                options)
    trainable = classifier.trainable_variables
    non_trainable = classifier.non_trainable_variables
    tv = [v.value for v in trainable]
    ntv = [v.value for v in non_trainable]
    objective = objective or MWNET
    lr = tf.cast(optimizer.learning_rate, tv[0].dtype)
    with tf.GradientTape() as outer:  # watches the weight net's variables as it reads them
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as inner:
            inner.watch(tv)
            logits, new_ntv = classifier.stateless_call(tv, ntv, batch["x"], training=True)
            losses = per_sample_ce(logits, batch["y"])                     # [n]
            terms = objective.terms(logits, batch, losses)                 # [n, k]
            scaled_virtual = _virtual_loss(weight_net, losses, terms, batch, optimizer,
                                           options, objective)
        grads = precision.unscaled(replica_sum(inner.gradient(scaled_virtual, tv)), optimizer)
        if gates is not None:
            grads, layers, count = gates.apply(grads, meta_optimizer.iterations)
        w_hat = [w - lr * tf.cast(g, w.dtype) for w, g in zip(tv, grads)]
        sampled = gates is not None and gates.sampled
        with tf.GradientTape(watch_accessed_variables=False) as last_tape:
            if sampled:  # FaMUS's gradient match: the meta loss's gradient at w_hat's
                last_tape.watch(w_hat[-2:])  # output layer
            meta_logits, _ = classifier.stateless_call(w_hat, ntv, meta_batch["x"],
                                                       training=True)
            meta_loss, scaled_meta = _meta_loss(meta_logits, meta_batch, meta_optimizer,
                                                options, objective)
        if sampled:
            meta_last = replica_sum(last_tape.gradient(meta_loss, w_hat[-2:]))
            scaled_meta += precision.scaled(gates.extra_loss(count, grads[-2:], meta_last),
                                            meta_optimizer)
    meta_loss = _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer,
                                   gates if sampled else None)
    grads, v_new = _reweighted_gradients(inner, losses, terms, batch, tv, weight_net,
                                         optimizer, options, objective)
    del inner
    optimizer.apply(grads, trainable)  # a LossScaleOptimizer divides by its scale
    for var, value in zip(non_trainable, new_ntv):
        var.assign(value)

    out = {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
           "meta_loss": meta_loss, **weight_stats(v_new, batch)}
    if gates is not None:  # a share per replica, as "meta_steps"
        out["meta_layers"] = tf.cast(layers, tf.float32) / num_replicas()
    return out


def _virtual_loss(weight_net, losses, terms, batch, optimizer, options,
                  objective) -> tf.Tensor:
    """The virtual step's loss (Eq. 3): the objective's terms weighted by coefficients of the
    weight net's weights of the losses, which it reads as data (stop-gradient); MW-Net's: the
    losses weighted, normalized. Loss-scaled. Inside both tapes."""
    v = weigh(weight_net, losses, batch["y"], training=True)
    coefficients = tf.cast(objective.coefficients(v, batch, options), terms.dtype)
    return precision.scaled(tf.reduce_sum(coefficients * terms), optimizer)


def _meta_loss(meta_logits, meta_batch, meta_optimizer, options,
               objective) -> tuple[tf.Tensor, tf.Tensor]:
    """(this replica's share of the mean meta loss, the same loss-scaled), inside the outer
    tape."""
    meta_loss = tf.reduce_sum(objective.meta_losses(meta_logits, meta_batch)) / tf.cast(
        options.global_meta_batch_size, meta_logits.dtype)
    return meta_loss, precision.scaled(meta_loss, meta_optimizer)


def _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer,
                       gates=None) -> tf.Tensor:
    """Applies the meta-gradient (Eq. 4) to the weight net (and, with FaMUS's `gates`, the
    gradient of the same loss to its layer samplers); returns the meta loss to report."""
    theta = weight_net.trainable_variables
    if gates is None:
        meta_optimizer.apply(outer.gradient(scaled_meta, theta), theta)
        return _skipped_as_zero(meta_loss, meta_optimizer)
    phi = gates.variables
    grads = outer.gradient(scaled_meta, theta + phi,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
    meta_optimizer.apply(grads[:len(theta)], theta)
    gates.optimizer.apply(precision.unscaled(grads[len(theta):], meta_optimizer), phi)
    return _skipped_as_zero(meta_loss, meta_optimizer)


def _reweighted_gradients(inner, losses, terms, batch, variables, weight_net, optimizer,
                          options, objective):
    """(gradients of the objective with the weights of the UPDATED weight net (Eq. 5), its
    weights): the coefficients are constants, so the inner tape's first-order graph serves
    again (the terms' gradient with the coefficients as output gradients)."""
    v_new = tf.stop_gradient(weigh(weight_net, losses, batch["y"]))
    coefficients = tf.cast(objective.coefficients(v_new, batch, options), terms.dtype)
    grads = inner.gradient(terms, variables, output_gradients=precision.scaled(
        coefficients, optimizer))
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
            terms = MWNET.terms(logits, batch, losses)
            scaled_virtual = _virtual_loss(weight_net, losses, terms, batch, optimizer,
                                           options, MWNET)
        g_kernel, g_bias = precision.unscaled(
            replica_sum(inner.gradient(scaled_virtual, [kernel, bias])), optimizer)
        meta_logits = (tf.matmul(meta_features, kernel - lr * g_kernel) + bias - lr * g_bias)
        meta_loss, scaled_meta = _meta_loss(meta_logits, meta_batch, meta_optimizer, options,
                                            MWNET)
    meta_loss = _update_weight_net(outer, meta_loss, scaled_meta, weight_net, meta_optimizer)
    grads, v_new = _reweighted_gradients(inner, losses, terms, batch, tv + [kernel, bias],
                                         weight_net, optimizer, options, MWNET)
    del inner
    optimizer.apply(grads, list(head.variables))
    for var, value in zip(body.non_trainable_variables, new_ntv):
        var.assign(value)
    return {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
            "meta_loss": meta_loss, **weight_stats(v_new, batch)}


def weighted_step(classifier: keras.Model, weight_net: keras.Model,
                  optimizer: keras.optimizers.Optimizer, batch: dict,
                  options: StepOptions, objective: Objective | None = None
                  ) -> dict[str, tf.Tensor]:
    """MW-Net's real step alone: SGD on the loss weighted by the current weight net, no
    meta update (the steps between meta updates of `--meta_interval`, and a frozen weight
    function); `objective` as for `mwnet_step`. The same sums as `mwnet_step`, with
    `meta_loss` 0."""
    objective = objective or MWNET
    trainable = classifier.trainable_variables
    with tf.GradientTape() as tape:
        logits = classifier(batch["x"], training=True)
        losses = per_sample_ce(logits, batch["y"])
        terms = objective.terms(logits, batch, losses)
        v = tf.stop_gradient(weigh(weight_net, losses, batch["y"]))
        coefficients = tf.cast(objective.coefficients(v, batch, options), terms.dtype)
        loss = precision.scaled(tf.reduce_sum(coefficients * terms), optimizer)
    optimizer.apply(tape.gradient(loss, trainable), trainable)
    return {"loss_sum": tf.reduce_sum(losses), "correct": num_correct(logits, batch["y"]),
            "meta_loss": tf.zeros((), losses.dtype), **weight_stats(v, batch)}


@dataclasses.dataclass(frozen=True)
class Alternating:
    """A replica step that is `first` on every `every`-th step and `other` on the rest,
    counted by `counter` (an int64 variable, checkpointed by its owner). Both return dicts
    with the same keys. `compile_step` and `compile_loop` compile the two as separate
    functions and choose between them on the host, from the counter: one graph never holds
    both steps (a `tf.cond` of the two would keep both branches' buffers live, and its peak
    memory would exceed the larger step's), and control flow never wraps an optimizer's
    cross-replica sync."""

    first: Callable
    other: Callable
    every: int
    counter: tf.Variable

    def segments(self, n: int):
        """[(is_first, steps)]: the next `n` steps from the counter's value, as runs of
        `other` steps split by single `first` steps."""
        out, c, done = [], int(self.counter.numpy()), 0
        while done < n:
            k = 1 if c % self.every == 0 else min(n - done, self.every - c % self.every)
            out.append((c % self.every == 0, k))
            c, done = c + k, done + k
        return out


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
    `strategy` (metrics summed over replicas); an `Alternating` step as two, chosen on the
    host. Build the optimizers inside the strategy's scope first (`opt.build(vars)`)."""
    if isinstance(replica_fn, Alternating):
        first, other = (compile_step(f, strategy, jit_compile)
                        for f in (replica_fn.first, replica_fn.other))

        def alternating(*args):
            ((is_first, _),) = replica_fn.segments(1)
            out = (first if is_first else other)(*args)
            replica_fn.counter.assign_add(1)
            return out
        return alternating
    if strategy is None:
        return tf.function(replica_fn, jit_compile=jit_compile)
    one = _one_step(replica_fn, strategy, jit_compile)
    return tf.function(lambda *args: one(args))


def _one_step(replica_fn, strategy, jit_compile):
    """`one(element) -> dict of sums`: one step, in cross-replica context."""
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
    is a tensor (another value does not retrace).

    An `Alternating` step is two such loops, called in turn from the host (one call per run
    of `other` steps and one per `first` step), its counter advanced between calls."""
    if isinstance(replica_fn, Alternating):
        loops = {True: compile_loop(replica_fn.first, strategy, jit_compile),
                 False: compile_loop(replica_fn.other, strategy, jit_compile)}

        def alternating(iterator, n):
            sums = None
            for is_first, k in replica_fn.segments(int(n)):
                out = loops[is_first](iterator, tf.constant(k))
                replica_fn.counter.assign_add(k)
                sums = out if sums is None else {key: sums[key] + out[key] for key in sums}
            return sums
        return alternating
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
