"""Per-parameter learning-rate multipliers applied to a model, and the BN-momentum rule beside them (PAPER_SPEC §5).

A stage's multipliers are a table (the paper's: :data:`dpcnn.config.PAPER_STAGE1` / ``PAPER_STAGE2``;
the CPU presets': :mod:`dpcnn.presets`) of ``(pattern, multiplier)`` rows (``train.stage1_multipliers``,
``train.stage2_multipliers``); every trainable variable takes the multiplier of the **first**
row whose pattern (``fnmatch`` syntax, ``*`` matches anything, ``/`` included) matches its key

    <scope>/<kind>/<layer>/<variable>

scope: ``backbone.<model.image_backbone>`` (``backbone.resnet50``, ``backbone.vgg19``,
``backbone.small``), ``image`` (the fc1/fc1_1 head), ``text`` or ``classifier``; kind: ``first_conv``
(the backbone's first convolution), ``conv``, ``dense``, ``bn``, ``embedding`` (``fc2``); e.g.
``backbone.resnet50/bn/conv2_block1_1_bn/gamma``, ``text/embedding/fc2/embeddings``,
``classifier/dense/classifier/kernel``. A variable with multiplier 0 is not trained (no gradient is
computed for it). The weight-decay multiplier is 1 for every trained variable (PAPER_SPEC §5).

BN running statistics (the rule beside the table, :func:`configure_backbone_bn`): new layers use
``model.bn_momentum`` (MatConvNet rate 0.05 → 0.95). A backbone whose every variable has
multiplier 0 in stage I is frozen: with ``model.backbone_bn=batch_stats`` (MatConvNet) its BN uses
batch statistics and leaves the running statistics untouched (momentum 1); with ``frozen`` it is
Keras' ``trainable=False`` (running statistics). Otherwise the backbone BN momentum is
``model.bn_momentum`` in stage I and ``train.stage2_backbone_bn_momentum`` in stage II.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dpcnn.config import PAPER_STAGE1, PAPER_STAGE2, Rules  # noqa: F401  (the tables live with the config)


@dataclass(frozen=True)
class ParamGroup:
    """One trained variable, its key, its learning-rate multiplier and the row that chose it."""

    variable: Any
    """A ``keras.Variable``."""
    key: str
    lr_mult: float
    rule: str
    wd_mult: float = 1.0


# keras is imported inside the functions: importing this module costs no TensorFlow.


def _leaves(layer) -> Iterator:
    import keras

    if isinstance(layer, keras.Model):
        for child in layer.layers:
            yield from _leaves(child)
    else:
        yield layer


def _kind(layer) -> str:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if layer.name == "fc2":
        return "embedding"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return "conv"


def backbone_of(model):
    """The ``backbone`` sub-model of a DualPath's image encoder."""
    from dpcnn.model.image_branch import BACKBONE_NAME

    return model.image_encoder.get_layer(BACKBONE_NAME)


def variable_keys(model, backbone_family: str) -> list[tuple[str, Any, Any]]:
    """(key, variable, layer) for every trainable variable of a DualPath, in a stable order."""
    import keras

    backbone = backbone_of(model)
    backbone_layers = {id(layer) for layer in _leaves(backbone)}
    first_conv = next(layer for layer in _leaves(backbone) if isinstance(layer, keras.layers.Conv2D))
    scopes = [("image", model.image_encoder), ("text", model.text_encoder), ("classifier", model.classifier)]
    out, seen = [], set()
    for scope, root in scopes:
        for layer in _leaves(root):
            in_backbone = id(layer) in backbone_layers
            kind = "first_conv" if layer is first_conv else _kind(layer)
            name = f"backbone.{backbone_family}" if in_backbone else scope
            for var in layer.trainable_weights:
                if id(var) not in seen:
                    seen.add(id(var))
                    out.append((f"{name}/{kind}/{layer.name}/{var.name}", var, layer))
    return out


def match(key: str, rules: Rules) -> tuple[float, str]:
    """(multiplier, pattern) of the first row of ``rules`` that matches ``key``."""
    for pattern, mult in rules:
        if fnmatch.fnmatchcase(key, pattern):
            return float(mult), pattern
    raise ValueError(f"no multiplier row matches {key}: end the table with a catch-all row ('*', m)")


def parameter_groups(model, rules: Rules, backbone_family: str) -> list[ParamGroup]:
    """Every trainable variable with its multiplier; variables with multiplier 0 are left out."""
    groups = []
    for key, var, _ in variable_keys(model, backbone_family):
        mult, rule = match(key, rules)
        if mult > 0:
            groups.append(ParamGroup(var, key, mult, rule))
    return groups


def backbone_frozen(model, rules: Rules, backbone_family: str) -> bool:
    """True if every backbone variable has multiplier 0 under ``rules``."""
    keys = [k for k, _, _ in variable_keys(model, backbone_family) if k.startswith("backbone.")]
    return all(match(k, rules)[0] == 0 for k in keys)


def configure_backbone_bn(model, rules: Rules, cfg, stage: int) -> str:
    """Trainability and BN momentum of the backbone for ``stage`` (module docstring); returns the mode."""
    import keras

    backbone = backbone_of(model)
    bns = [layer for layer in _leaves(backbone) if isinstance(layer, keras.layers.BatchNormalization)]
    if stage == 1 and backbone_frozen(model, rules, cfg.model.image_backbone):
        if cfg.model.backbone_bn == "frozen":
            backbone.trainable = False
            return "frozen (running statistics)"
        backbone.trainable = True
        for layer in bns:
            layer.momentum = 1.0
        return "frozen weights, batch statistics, running statistics untouched"
    backbone.trainable = True
    momentum = cfg.model.bn_momentum if stage == 1 else cfg.train.stage2_backbone_bn_momentum
    for layer in bns:
        layer.momentum = momentum
    return f"trained, BN momentum {momentum}"
