"""The per-parameter learning-rate multipliers as a table (PAPER_SPEC §5), first match wins."""

import dataclasses

import keras
import numpy as np
import pytest

from dpcnn.config import ConfigError, ModelConfig, apply_overrides
from dpcnn.presets import preset
from dpcnn.training.multipliers import (
    PAPER_STAGE1,
    PAPER_STAGE2,
    match,
    parameter_groups,
    update_rules,
    variable_keys,
)


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
    from dpcnn.model.dual_path import build_dual_path

    return build_dual_path(preset("tiny"), 10, 12, 4, (0.0, 0.0, 0.0))


@pytest.mark.parametrize("stage", [1, 2])
def test_paper_tables_give_every_variable_its_official_multiplier(stage, small_model):
    keys = variable_keys(small_model, "small")
    assert {k.split("/")[0] for k, _, _ in keys} == {"backbone.small", "image", "text", "classifier"}
    rules = PAPER_STAGE1 if stage == 1 else PAPER_STAGE2
    for key, _, _ in keys:
        assert match(key, rules)[0] == paper_multiplier(key, stage), key
    trained = {g.key for g in parameter_groups(small_model, rules, "small")}
    assert trained == {k for k, _, _ in keys if paper_multiplier(k, stage) > 0}


def test_vgg_stage_two_filters_and_biases():
    # resnet52_new_hope_word_Rankloss_vgg19.m:7-14: for i = 1:36, even params (biases) x0.02, odd
    # params (filters) x0.001, params(1) (conv1_1's filter) x1e-4; ResNet's BN/filters are not used.
    from dpcnn.model.image_branch import build_image_encoder

    cfg = dataclasses.replace(ModelConfig(), image_backbone="vgg16", image_weights="none", image_head_dim=64, embed_dim=32)
    encoder = build_image_encoder(cfg, 224, (0.0, 0.0, 0.0))

    class Holder:  # the three scopes variable_keys walks
        image_encoder = encoder
        text_encoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="t")])
        classifier = keras.layers.Dense(3, name="classifier")

    Holder.classifier.build((None, 32))
    keys = {k: m for k, _, _ in variable_keys(Holder, "vgg16") for m in [match(k, PAPER_STAGE2)[0]]}
    assert keys["backbone.vgg16/first_conv/block1_conv1/kernel"] == 1e-4
    assert keys["backbone.vgg16/first_conv/block1_conv1/bias"] == 0.02
    assert keys["backbone.vgg16/conv/block3_conv2/kernel"] == 0.001
    assert keys["backbone.vgg16/conv/fc7/kernel"] == 0.001 and keys["backbone.vgg16/conv/fc7/bias"] == 0.02


def test_resnet_stage_two_multipliers_follow_matconvnet_parameter_order():
    # MatConvNet resnet-50-dag order: conv W (even index after conv1's pair) x0.02, BN gamma x0.001,
    # beta x0.02; Keras' conv biases (MatConvNet has none but conv1's) get the filters' x0.02.
    assert match("backbone.resnet50/conv/conv2_block1_1_conv/kernel", PAPER_STAGE2)[0] == 0.02
    assert match("backbone.resnet50/conv/conv2_block1_1_conv/bias", PAPER_STAGE2)[0] == 0.02
    assert match("backbone.resnet50/bn/conv2_block1_1_bn/gamma", PAPER_STAGE2)[0] == 0.001
    assert match("backbone.resnet50/bn/conv2_block1_1_bn/beta", PAPER_STAGE2)[0] == 0.02
    assert match("backbone.resnet50/first_conv/conv1_conv/kernel", PAPER_STAGE2)[0] == 1e-4


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
