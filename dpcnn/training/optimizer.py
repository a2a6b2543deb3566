"""The authors' SGD: Nesterov momentum, coupled weight decay, per-parameter LR multipliers (PAPER_SPEC §5).

MatConvNet's ``cnn_train_dag.m`` update, with ``g`` the batch-mean gradient:

    v ← μ v − (g + wd · m_wd · w)
    Δ = μ v − (g + wd · m_wd · w)        (Nesterov; plain momentum: Δ = v)
    w ← w + lr · m_lr · Δ

The learning rate is applied *outside* the momentum buffer, so a step change of the schedule
takes effect at once (Keras' SGD keeps lr inside the buffer). Multipliers come from the stage's
table (:mod:`dpcnn.training.multipliers`); variables with m_lr = 0 are simply not given to the
optimiser (no gradient computed).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from dpcnn.config import Schedule, TrainConfig


@keras.saving.register_keras_serializable(package="dpcnn")
class MultiplierSGD(keras.optimizers.Optimizer):
    """SGD with the official update rule and per-variable multipliers (see module docstring).

    ``multipliers`` maps ``variable.path`` → (lr_mult, wd_mult); variables not in it get (1, 1).
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        coupled_weight_decay: float = 1e-4,
        multipliers: dict[str, tuple[float, float]] | None = None,
        name: str = "multiplier_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.multipliers = {k: (float(a), float(b)) for k, (a, b) in (multipliers or {}).items()}

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]
        self._mults = [self.multipliers.get(v.path, (1.0, 1.0)) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr_mult, wd_mult = self._mults[index]
        dtype = variable.dtype
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        lr = ops.cast(learning_rate, dtype)
        if self.coupled_weight_decay and wd_mult:
            gradient = gradient + ops.cast(self.coupled_weight_decay * wd_mult, dtype) * variable
        momentum = self.momentums[index]
        mu = ops.cast(self.momentum, dtype)
        new_v = mu * momentum - gradient
        self.assign(momentum, new_v)
        delta = mu * new_v - gradient if self.nesterov else new_v
        self.assign_add(variable, lr * ops.cast(lr_mult, dtype) * delta)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "coupled_weight_decay": self.coupled_weight_decay,
            "multipliers": {k: list(v) for k, v in self.multipliers.items()},
        }


def piecewise_schedule(schedule: Schedule, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Global LR per epoch, ``((epochs, lr), ...)`` → a step-indexed piecewise-constant schedule.

    Step k (0-based optimiser iterations) of epoch e = k // steps_per_epoch uses that epoch's rate.
    """
    boundaries, values, total = [], [], 0
    for epochs, lr in schedule:
        values.append(float(lr))
        total += int(epochs)
        boundaries.append(total * steps_per_epoch - 1)  # Keras switches *after* a boundary step
    boundaries = boundaries[:-1]
    if not boundaries:
        return keras.optimizers.schedules.PiecewiseConstantDecay([10**12], [values[0], values[0]])
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def schedule_epochs(schedule: Schedule) -> int:
    return sum(int(e) for e, _ in schedule)


def make_optimizer(groups: Sequence, cfg: TrainConfig, schedule: Schedule, steps_per_epoch: int) -> MultiplierSGD:
    """The stage's optimiser: the official SGD with each group's multiplier (``groups``: the
    :class:`dpcnn.training.multipliers.ParamGroup` list of the stage) and the piecewise schedule."""
    return MultiplierSGD(
        learning_rate=piecewise_schedule(schedule, steps_per_epoch),
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        coupled_weight_decay=cfg.weight_decay,
        multipliers={g.variable.path: (g.lr_mult, g.wd_mult) for g in groups},
    )
