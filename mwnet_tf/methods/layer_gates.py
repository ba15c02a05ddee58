"""Which layers carry the meta-gradient of MW-Net's virtual step (`--meta_scope=last|sampled`).

The meta-gradient reaches the weight net through every variable's gradient in the virtual step
`w_hat = w - lr * g(theta)`: it is a sum of one term per variable (FaMUS, Xu et al., "Faster
Meta Update Strategy for Noise-Robust Deep Learning", CVPR 2021, Eq. 7-9). A gate keeps a
variable's term (its gradient stays a function of the weight net) or drops it (its gradient
enters `w_hat` as a constant, `stop_gradient`); the virtual step itself moves every variable.

- `last` (`LastGates`): the last `--meta_layers` trainable variables keep their term, the others
  drop it. The choice is fixed when the step is traced, so the second-order pass stops at the
  first kept variable: the cheaper schedule. With `--meta_layers` at least the classifier's
  count it is the exact step.
- `sampled` (`SampledGates`): FaMUS's learned sampler, as its code has it
  (youjiangxu/FaMUS, `grad_operator_layer.py`, `train_famus_redminiimage.py`): of the last
  `--meta_layers` variables (`top_k`, 15), the last two (the output layer) always keep their
  term; each other one has a sampler (`models.build_layer_sampler`: its gradient summed over all
  but the output axis, standardized, through Linear-PReLU-Linear-PReLU-Linear to two logits)
  whose hard Gumbel-softmax draw (temperature 5, straight-through) opens or closes its gate. A
  closed gate still passes the sampler's gradient: `act * g` when open, `(1 - act) *
  stop_gradient(g)` when closed, `act` being 1 or 0 in value. Two losses join the meta loss:
  `count_factor * (sum(act) - expected)^2` (the expected number of open gates, K = 4) and
  `match_factor * ` the last layer's gradient match (per output unit, the squared differences
  of mean and standard deviation between the virtual step's gradient and the meta loss's
  gradient at `w_hat`, the latter a constant; 0.1 each). The samplers learn by SGD (0.1,
  momentum 0.9, Nesterov). FaMUS's code adds only the last sampler's draw to the count; the
  sum over all samplers here is the paper's Eq. 10.

  The draws are a data-dependent choice inside one compiled graph, so TensorFlow computes the
  second-order pass of every candidate variable and multiplies the closed ones by zero: the
  learned choice saves no time over `last` with the same `--meta_layers` (the bench measures
  it). Variables before the candidates drop their term, which is where the time is saved.
"""

from __future__ import annotations

import tensorflow as tf

from mwnet_tf.methods import optim
from mwnet_tf.methods.steps import num_replicas
from mwnet_tf.models import build_layer_sampler


class LastGates:
    """`--meta_scope=last`: the last `n` trainable variables keep their meta-gradient term."""

    sampled = False

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"--meta_layers must be >= 1, got {n}")
        self.n = n

    def apply(self, grads: list, step) -> tuple[list, tf.Tensor, tf.Tensor]:
        """(the gated gradients, the number of variables that keep their term, 0: no count
        regularizer), as `SampledGates.apply`."""
        start = max(0, len(grads) - self.n)
        gated = [tf.stop_gradient(g) for g in grads[:start]] + list(grads[start:])
        return gated, tf.constant(float(len(grads) - start)), tf.zeros((), grads[-1].dtype)


def _reduced(g: tf.Tensor) -> tf.Tensor:
    """A gradient summed over all but its output axis (Keras keeps it last; PyTorch's first),
    [1, units], standardized as FaMUS's sampler input (`input_norm`, unbiased std)."""
    x = tf.reshape(g, [-1, g.shape[-1]]) if g.shape.rank >= 2 else tf.reshape(g, [1, -1])
    x = tf.reduce_sum(x, axis=0, keepdims=True) if g.shape.rank >= 2 else x
    return (x - tf.reduce_mean(x)) / (_std(x) + 1e-9)


def _std(x: tf.Tensor, axis=None) -> tf.Tensor:
    """torch.std: the unbiased standard deviation (0 for a single element)."""
    n = tf.cast(tf.size(x) if axis is None else tf.shape(x)[axis], x.dtype)
    mean = tf.reduce_mean(x, axis=axis, keepdims=True)
    var = tf.reduce_sum(tf.square(x - mean), axis=axis) / tf.maximum(n - 1.0, 1.0)
    return tf.sqrt(var)


def _rows(t: tf.Tensor) -> tf.Tensor:
    """A kernel as rows per output unit, [units, rest] (PyTorch's weight layout)."""
    perm = [t.shape.rank - 1] + list(range(t.shape.rank - 1))
    return tf.reshape(tf.transpose(t, perm), [t.shape[-1], -1])


def gradient_match(train_grads: list, meta_grads: list) -> tf.Tensor:
    """FaMUS's last-layer gradient match: for each variable, the mean over output units of
    the squared differences of the per-unit mean and standard deviation of the virtual step's
    gradient (`train_grads`, differentiable) and the meta loss's (`meta_grads`, constants); a
    vector is one unit."""
    total = tf.zeros((), train_grads[0].dtype)
    for t, m in zip(train_grads, meta_grads):
        m = tf.stop_gradient(tf.cast(m, t.dtype))
        if t.shape.rank >= 2:
            t, m = _rows(t), _rows(m)
            axis = 1
        else:
            axis = None
        d_mean = tf.reduce_mean(t, axis=axis) - tf.reduce_mean(m, axis=axis)
        d_std = _std(t, axis) - _std(m, axis)
        total += tf.reduce_mean(tf.square(d_mean) + tf.square(d_std))
    return total


class SampledGates:
    """`--meta_scope=sampled`: FaMUS's learned layer sampler (see the module docstring).

    Build it in the strategy's scope; its samplers and their optimizer are checkpointed by
    the method (`trackables`)."""

    sampled = True
    always = 2  # the output layer's kernel and bias keep their term

    def __init__(self, variables: list, n: int, *, expected: float = 4.0,
                 count_factor: float = 0.1, match_factor: float = 0.1, lr: float = 0.1,
                 temperature: float = 5.0, seed: int = 0):
        if n < 1:
            raise ValueError(f"--meta_layers must be >= 1, got {n}")
        self.n, self.expected = n, float(expected)
        self.count_factor, self.match_factor = float(count_factor), float(match_factor)
        self.temperature, self.seed = float(temperature), int(seed)
        total = len(variables)
        self.start = max(0, total - n)
        self.stop = max(self.start, total - self.always)
        self.samplers = [build_layer_sampler(int(v.shape[-1]) if len(v.shape) else 1,
                                       seed=self.seed * 1000 + i)
                         for i, v in enumerate(variables[self.start:self.stop])]
        self.optimizer = optim.TorchSGD(lr, momentum=0.9, nesterov=True)
        self.optimizer.build(self.variables)

    @property
    def variables(self) -> list:
        return [v for s in self.samplers for v in s.trainable_variables]

    def _draw(self, logits: tf.Tensor, step, i: int) -> tf.Tensor:
        """The hard Gumbel-softmax draw's "use" entry, 1.0 or 0.0, straight-through; its
        noise from a stateless seed (the weight net's step, the sampler), the same on every
        replica and after a resume."""
        seed = tf.stack([tf.constant(self.seed * 1000 + i, tf.int64), tf.cast(step, tf.int64)])
        u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, dtype=logits.dtype)
        eps = tf.constant(1e-20, logits.dtype)
        soft = tf.nn.softmax((logits - tf.math.log(-tf.math.log(u + eps) + eps))
                             / self.temperature, axis=-1)
        hard = tf.one_hot(tf.argmax(soft, -1), 2, dtype=soft.dtype)
        return (tf.stop_gradient(hard - soft) + soft)[0, 1]

    def apply(self, grads: list, step) -> tuple[list, tf.Tensor, tf.Tensor]:
        """(the gated gradients, the number of variables that keep their term, the count
        regularizer); `step` seeds the draws."""
        out = [tf.stop_gradient(g) for g in grads[:self.start]]
        acts = []
        for i, (g, sampler) in enumerate(zip(grads[self.start:self.stop], self.samplers)):
            act = tf.cast(self._draw(sampler(tf.stop_gradient(
                tf.cast(_reduced(g), sampler.dtype))), step, i), g.dtype)
            out.append(tf.where(act > 0.5, act * g, (1.0 - act) * tf.stop_gradient(g)))
            acts.append(act)
        out += list(grads[self.stop:])
        opened = tf.add_n(acts) if acts else tf.zeros((), grads[-1].dtype)
        count = tf.square(opened - self.expected) if acts else tf.zeros_like(opened)
        return out, opened + float(len(grads) - self.stop), count

    def extra_loss(self, count: tf.Tensor, train_last: list, meta_last: list) -> tf.Tensor:
        """This replica's share of the two auxiliary losses (each replica computes them whole;
        the optimizers sum over replicas)."""
        loss = self.count_factor * count
        if self.match_factor:
            loss += self.match_factor * gradient_match(train_last, meta_last)
        return loss / num_replicas()


def trackables(gates) -> dict:
    """What a checkpoint keeps of the gates (the samplers and their optimizer)."""
    if gates is None or not gates.sampled:
        return {}
    return {**{f"layer_sampler_{i}": s for i, s in enumerate(gates.samplers)},
            "layer_sampler_optimizer": gates.optimizer}
