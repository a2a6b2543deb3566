"""The per-parameter learning-rate multipliers as a table (PAPER_SPEC §5), first match wins."""

import dataclasses

import keras
import numpy as np
import pytest
from helpers import dual_path

from dpcnn.config import (
    PAPER_STAGE1,
    PAPER_STAGE2,
    ConfigError,
    ModelConfig,
    apply_overrides,
    update_rules,
)
from dpcnn.presets import preset
from dpcnn.training.multipliers import match, parameter_groups, variable_keys


def paper_multiplier(key: str, stage: int) -> float:
    """The multiplier PAPER_SPEC §5 gives a variable, from its key, written out by hand."""
    scope, kind, layer, var = key.split("/")
    if scope.startswith("backbone."):
        if stage == 1:
            return 0.0  # frozen
        if kind == "first_conv" and var == "kernel":
            return 1e-4  # params(1)
        if scope.startswith("backbone.vgg"):  # resnet52_new_hope_word_Rankloss_vgg19.m:7-14
            return 0.001 if var == "kernel" else 0.02
        return {"gamma": 0.001, "beta": 0.02}.get(var, 0.02)
    if scope == "classifier":
        return 0.01 if var == "kernel" else 0.02
    if kind == "embedding":
        return 1e-3
    return {"gamma": 0.2, "beta": 0.1}.get(var, 0.1)


@pytest.fixture(scope="module")
def small_model():
    return dual_path(preset("tiny"), 10, 12, 4)


@pytest.mark.parametrize("stage", [1, 2])
def test_paper_tables_give_every_variable_its_official_multiplier(stage, small_model):
    keys = variable_keys(small_model, "small")
    assert {k.split("/")[0] for k, _, _ in keys} == {"backbone.small", "image", "text", "classifier"}
    rules = PAPER_STAGE1 if stage == 1 else PAPER_STAGE2
    for key, _, _ in keys:
        assert match(key, rules)[0] == paper_multiplier(key, stage), key
    trained = {g.key for g in parameter_groups(small_model, rules, "small")}
    assert trained == {k for k, _, _ in keys if paper_multiplier(k, stage) > 0}


def official_numbers(backbone: keras.Model, conv_biases: bool) -> dict[str, int]:
    """{"layer/variable": n}: the backbone's parameters numbered as MatConvNet's ``net.params`` holds
    them: conv by conv in network order, each conv's filter, then its bias where the official
    network has one (``conv_biases``: every VGG conv; ResNet: conv1 only), then its BN's multiplier
    (γ), bias (β) and moments (not trainable in Keras: numbered, not returned). Keras lists a
    ResNet block's shortcut and last convs before their BNs, so each BN is paired by name."""
    layers = {layer.name: layer for layer in backbone.layers}
    numbers, n = {}, 0
    for conv in [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]:
        n += 1
        numbers[f"{conv.name}/kernel"] = n
        if conv.use_bias and (conv_biases or n == 1):
            n += 1
            numbers[f"{conv.name}/bias"] = n
        bn = layers.get(conv.name.removesuffix("_conv") + "_bn")
        if isinstance(bn, keras.layers.BatchNormalization):
            numbers[f"{bn.name}/gamma"], numbers[f"{bn.name}/beta"] = n + 1, n + 2
            n += 3
    numbers["count"] = n
    return numbers


@pytest.mark.parametrize("backbone, conv_biases, count", [("resnet50", False, 213), ("vgg16", True, 30),
                                                          ("vgg19", True, 36)])
def test_stage_two_backbone_multipliers_follow_the_official_parameter_numbers(backbone, conv_biases, count):
    # resnet52_new_hope_word_Rankloss.m:7-14 (and the _vgg19 / cuhk _vgg16 copies): for i = 1:213
    # (VGG-19 1:36, VGG-16 1:30), params(i) gets x0.02 if i is even and x0.001 if odd, then
    # params(1) (the first filter) x1e-4 (PAPER_SPEC §5). The numbering is MatConvNet's, rebuilt
    # here from the Keras layers; its count must be the loop's bound. Keras' ResNet convs have
    # biases the official network lacks: they take their filter's multiplier.
    from dpcnn.model.image_branch import build_image_encoder

    cfg = dataclasses.replace(ModelConfig(), image_backbone=backbone, image_weights="none", image_head_dim=64,
                              embed_dim=32)
    encoder = build_image_encoder(cfg, 224, (0.0, 0.0, 0.0))
    numbers = official_numbers(encoder.get_layer("backbone"), conv_biases)
    assert numbers.pop("count") == count

    def official(n: int) -> float:
        return 1e-4 if n == 1 else 0.02 if n % 2 == 0 else 0.001

    class Holder:  # the three scopes variable_keys walks
        image_encoder = encoder
        text_encoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="t")])
        classifier = keras.layers.Dense(3, name="classifier")

    Holder.classifier.build((None, 32))
    keys = [k for k, _, _ in variable_keys(Holder, backbone) if k.startswith("backbone.")]
    assert len(keys) == len(numbers) + (0 if conv_biases else 52)  # + the 52 Keras-only ResNet conv biases
    for key in keys:
        layer, var = key.split("/")[2:]
        name = f"{layer}/{var}" if f"{layer}/{var}" in numbers else f"{layer}/kernel"  # Keras-only bias: its filter's
        n = numbers[name]
        assert match(key, PAPER_STAGE2)[0] == official(n), (key, n)


def test_first_match_wins_and_set_changes_or_adds_a_row():
    rules = (("a/*", 1.0), ("*", 0.5))
    assert match("a/x", rules) == (1.0, "a/*") and match("b/x", rules) == (0.5, "*")
    assert update_rules(rules, [("a/*", 2.0)]) == (("a/*", 2.0), ("*", 0.5))
    assert update_rules(rules, [("a/x", 3.0)]) == (("a/x", 3.0), ("a/*", 1.0), ("*", 0.5))
    cfg = apply_overrides(preset("coco"), ["train.stage2_multipliers=backbone.*:0.01"])
    assert dict(cfg.train.stage2_multipliers)["backbone.*"] == 0.01
    assert len(cfg.train.stage2_multipliers) == len(PAPER_STAGE2)
    with pytest.raises(ConfigError, match="catch-all"):
        apply_overrides(preset("coco"), ['train.stage1_multipliers=[["backbone.*", 0]]'])


def test_a_zero_row_freezes_and_the_optimiser_never_sees_those_variables(small_model):
    groups = parameter_groups(small_model, (("text/*", 0.0), ("*", 0.1)), "small")
    assert groups and not any(g.key.startswith("text/") for g in groups)
    assert np.all([g.lr_mult == 0.1 for g in groups])
