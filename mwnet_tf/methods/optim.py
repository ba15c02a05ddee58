"""Keras 3 optimizers with `torch.optim`'s update rules.

The paper's numbers come from PyTorch, whose SGD and Adam differ from Keras' in ways that matter
once training runs long enough:

- Keras' `SGD` keeps its momentum buffer in learning-rate units
  (`velocity = momentum * velocity - lr * g; w += velocity`), PyTorch in gradient units
  (`buf = momentum * buf + g; w -= lr * buf`). The two agree while the learning rate is constant,
  but after a decay Keras keeps moving with the old rate's velocity while PyTorch's step
  shrinks at once.
- Keras' `Adam` folds both bias corrections into the step size and adds `epsilon` (1e-7) to
  `sqrt(v)`; PyTorch adds `eps` (1e-8) to `sqrt(v_hat) = sqrt(v) / sqrt(1 - beta_2^t)`. With small
  gradients (such as the weight net's) the two steps differ markedly.
- PyTorch's `weight_decay` is coupled L2 (`g + wd * w`, fed through momentum / the moments);
  Keras' base-class `weight_decay` is decoupled (`w -= lr * wd * w`). These classes implement the
  coupled one and leave Keras' unset.

`TorchSGD` and `TorchAdam` are ordinary `keras.optimizers.Optimizer` subclasses: learning-rate
schedules, `tf.function` / `jit_compile=True`, `tf.distribute` (the base class sums the replicas'
gradients before `update_step`) and `tf.train.Checkpoint` (all state lives in Keras variables
created in `build`) work as for the built-in optimizers.
"""

import keras
import tensorflow as tf
from keras import ops


def _to_dtype(value, dtype):
    """`value` as a tensor of `dtype`; Python numbers converted directly, not via float32."""
    if isinstance(value, (int, float)):
        return ops.convert_to_tensor(value, dtype=dtype)
    return ops.cast(value, dtype)


def _dense(gradient, dtype):
    """Gradient as a dense tensor of `dtype` (coupled L2 touches every entry anyway)."""
    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    return ops.cast(gradient, dtype)


class _CoupledL2(keras.optimizers.Optimizer):
    """A Keras optimizer with torch.optim's coupled L2: `g + weight_decay * w` is what the
    update rule sees (Keras' own, decoupled `weight_decay` stays unset)."""

    def __init__(self, learning_rate, weight_decay, name, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.coupled_weight_decay = float(weight_decay)

    def _gradient(self, gradient, variable):
        """The dense gradient in the variable's dtype, with the coupled L2 term added."""
        g = _dense(gradient, variable.dtype)
        if self.coupled_weight_decay:
            g = ops.add(g, ops.multiply(_to_dtype(self.coupled_weight_decay, variable.dtype),
                                        variable))
        return g

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.coupled_weight_decay
        return config


class TorchSGD(_CoupledL2):
    """SGD with `torch.optim.SGD`'s rule (dampening 0).

    Per step: `g += weight_decay * w`; with momentum, `buf = momentum * buf + g` (buf starts at 0)
    and `g = g + momentum * buf` (Nesterov) or `g = buf`; then `w -= lr * g`.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum factor >= 0; the buffer is kept in gradient units.
        nesterov: Nesterov momentum (needs `momentum > 0`).
        weight_decay: coupled L2 factor added to every variable's gradient.
        name: optimizer name.
        **kwargs: other `keras.optimizers.Optimizer` arguments (e.g. `clipnorm`); a decoupled
            `weight_decay` is not accepted.
    """

    def __init__(self, learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0,
                 name="torch_sgd", **kwargs):
        super().__init__(learning_rate, weight_decay, name, **kwargs)
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        """Creates one momentum buffer per variable (none when `momentum` is 0)."""
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        """Applies one torch-SGD step to `variable`."""
        dtype = variable.dtype
        lr = _to_dtype(learning_rate, dtype)
        g = self._gradient(gradient, variable)
        if self.momentum != 0:
            buf = self.momentums[self._get_variable_index(variable)]
            momentum = _to_dtype(self.momentum, dtype)
            new_buf = ops.add(ops.multiply(momentum, buf), g)
            self.assign(buf, new_buf)
            g = ops.add(g, ops.multiply(momentum, new_buf)) if self.nesterov else new_buf
        self.assign_sub(variable, ops.multiply(lr, g))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class TorchAdam(_CoupledL2):
    """Adam with `torch.optim.Adam`'s rule (amsgrad off).

    Per step, with `t = iterations + 1`: `g += weight_decay * w`;
    `m = beta_1 m + (1 - beta_1) g`; `v = beta_2 v + (1 - beta_2) g^2`;
    `w -= lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)`.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        beta_1: decay rate of the first moment.
        beta_2: decay rate of the second moment.
        epsilon: added to the bias-corrected `sqrt(v_hat)`, as in PyTorch.
        weight_decay: coupled L2 factor added to every variable's gradient.
        name: optimizer name.
        **kwargs: other `keras.optimizers.Optimizer` arguments (e.g. `clipnorm`); a decoupled
            `weight_decay` is not accepted.
    """

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                 name="torch_adam", **kwargs):
        super().__init__(learning_rate, weight_decay, name, **kwargs)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{arg} must be in [0, 1), got {value}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def build(self, variables):
        """Creates the first and second moment of every variable."""
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(
            variables, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        """Applies one torch-Adam step to `variable`."""
        dtype = variable.dtype
        lr = _to_dtype(learning_rate, dtype)
        g = self._gradient(gradient, variable)
        beta_1 = _to_dtype(self.beta_1, dtype)
        beta_2 = _to_dtype(self.beta_2, dtype)
        one = _to_dtype(1.0, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        bias_correction_1 = ops.subtract(one, ops.power(beta_1, t))
        bias_correction_2 = ops.subtract(one, ops.power(beta_2, t))

        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        new_m = ops.add(ops.multiply(beta_1, m), ops.multiply(ops.subtract(one, beta_1), g))
        new_v = ops.add(ops.multiply(beta_2, v),
                        ops.multiply(ops.subtract(one, beta_2), ops.square(g)))
        self.assign(m, new_m)
        self.assign(v, new_v)
        denom = ops.add(ops.divide(ops.sqrt(new_v), ops.sqrt(bias_correction_2)),
                        _to_dtype(self.epsilon, dtype))
        step_size = ops.divide(lr, bias_correction_1)
        self.assign_sub(variable, ops.multiply(step_size, ops.divide(new_m, denom)))

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
