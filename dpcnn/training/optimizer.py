"""The authors' SGD: Nesterov momentum, coupled weight decay, per-parameter LR multipliers (PAPER_SPEC §5).

MatConvNet's ``cnn_train_dag.m`` update, with ``g`` the batch-mean gradient:

    v ← μ v − (g + wd · m_wd · w)
    Δ = μ v − (g + wd · m_wd · w)        (Nesterov; plain momentum: Δ = v)
    w ← w + lr · m_lr · Δ

The learning rate is applied *outside* the momentum buffer, so a step change of the schedule
takes effect at once (Keras' SGD keeps lr inside the buffer). Multipliers are looked up per
variable; variables with m_lr = 0 are simply not given to the optimiser (no gradient computed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
from keras import ops

from dpcnn.config import Schedule, TrainConfig


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """One variable with its learning-rate and weight-decay multipliers, and the rule that chose them."""

    variable: keras.Variable
    lr_mult: float
    wd_mult: float
    role: str


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


def _is_bn(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def _walk(model: keras.Model):
    """Yield (layer, inside_backbone) for every leaf layer of the dual-path model."""
    from dpcnn.model.image_branch import BACKBONE_NAME

    def visit(layer, in_backbone):
        children = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and children is not None:
            for child in children:
                yield from visit(child, in_backbone or layer.name == BACKBONE_NAME)
        else:
            yield layer, in_backbone

    for child in model.image_encoder.layers:
        yield from visit(child, False)
    for child in model.text_encoder.layers:
        yield from visit(child, False)
    yield model.classifier, False


def parameter_groups(model, stage: int, cfg: TrainConfig) -> list[ParamGroup]:
    """Every trainable variable of ``model`` (a DualPath) with its stage's multipliers (PAPER_SPEC §5).

    New layers: conv/dense kernels ``lr_conv``; BN γ/β ``lr_bn_gamma``/``lr_bn_beta``;
    embedding (weights and bias) ``lr_embedding``; classifier W/b ``lr_classifier_w``/``_b``.
    Backbone: stage I ``stage1_backbone_lr`` for everything (0 = frozen); stage II conv
    kernels and biases ``stage2_backbone_conv``, first conv kernel ``stage2_backbone_first_conv``,
    BN γ/β ``stage2_backbone_gamma``/``_beta``. Weight-decay multiplier 1 everywhere.
    Variables with a zero multiplier are left out.
    """
    from dpcnn.model.image_branch import BACKBONE_NAME, first_conv_layer_name

    first_conv = first_conv_layer_name(model.image_encoder.get_layer(BACKBONE_NAME))
    groups: list[ParamGroup] = []
    seen: set[int] = set()
    for layer, in_backbone in _walk(model):
        for var in layer.trainable_weights:
            if id(var) in seen:
                continue
            seen.add(id(var))
            is_kernel = var.name in ("kernel", "embeddings")
            if in_backbone:
                if stage == 1:
                    lr, role = cfg.stage1_backbone_lr, "backbone (stage I)"
                elif _is_bn(layer):
                    lr = cfg.stage2_backbone_gamma if var.name == "gamma" else cfg.stage2_backbone_beta
                    role = f"backbone BN {var.name}"
                elif layer.name == first_conv and is_kernel:
                    lr, role = cfg.stage2_backbone_first_conv, "backbone first conv"
                else:
                    lr, role = cfg.stage2_backbone_conv, f"backbone {var.name}"
            elif layer is model.classifier:
                lr = cfg.lr_classifier_w if is_kernel else cfg.lr_classifier_b
                role = f"classifier {var.name}"
            elif layer.name == "fc2":
                lr, role = cfg.lr_embedding, f"word embedding {var.name}"
            elif _is_bn(layer):
                lr = cfg.lr_bn_gamma if var.name == "gamma" else cfg.lr_bn_beta
                role = f"BN {var.name}"
            else:
                lr, role = cfg.lr_conv, f"new {var.name}"
            if lr > 0:
                groups.append(ParamGroup(var, float(lr), 1.0, role))
    return groups


def make_optimizer(groups: Sequence[ParamGroup], cfg: TrainConfig, schedule: Schedule, steps_per_epoch: int) -> MultiplierSGD:
    """The stage's optimiser: the official SGD over ``groups`` with the piecewise schedule."""
    return MultiplierSGD(
        learning_rate=piecewise_schedule(schedule, steps_per_epoch),
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        coupled_weight_decay=cfg.weight_decay,
        multipliers={g.variable.path: (g.lr_mult, g.wd_mult) for g in groups},
    )
