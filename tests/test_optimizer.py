"""The official SGD update and the per-parameter multipliers (PAPER_SPEC §5)."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from dpcnn.config import apply_overrides, preset
from dpcnn.optimizer import MultiplierSGD, parameter_groups, piecewise_schedule


def test_update_rule_by_hand_with_lr_outside_the_momentum_buffer():
    schedule = piecewise_schedule(((1, 0.1), (1, 0.01)), steps_per_epoch=1)  # lr 0.1, then 0.01
    kw = keras.Variable([1.0, 2.0], name="w")
    opt = MultiplierSGD(schedule, momentum=0.9, nesterov=True, coupled_weight_decay=0.01,
                        multipliers={kw.path: (2.0, 1.0)})
    g = tf.constant([0.5, -1.0])
    opt.apply_gradients([(g, kw)])
    # g' = g + 0.01 w = [0.51, -0.98]; v = -g'; Δ = 0.9 v - g' = [-0.969, 1.862]; w += 0.1·2·Δ
    np.testing.assert_allclose(kw.numpy(), [0.8062, 2.3724], atol=1e-6)
    opt.apply_gradients([(g, kw)])
    # g' = [0.508062, -0.976276]; v = 0.9·[-0.51, 0.98] - g' = [-0.967062, 1.858276]
    # Δ = 0.9 v - g' = [-1.3784178, 2.6487244]; w += 0.01·2·Δ (the new lr applies at once)
    np.testing.assert_allclose(kw.numpy(), [0.778631644, 2.425374488], atol=1e-6)


def paper_multiplier(role_of: dict, var, stage: int) -> float:
    """The expected multiplier of a variable, from its name (PAPER_SPEC §5 table)."""
    path = var.path
    if id(var) in role_of:  # backbone
        if stage == 1:
            return 0.0
        if "gamma" in path:
            return 0.001
        if "beta" in path:
            return 0.02
        if path.startswith("stem_conv/kernel"):
            return 1e-4
        return 0.02
    if "classifier/kernel" in path:
        return 0.01
    if "classifier/bias" in path:
        return 0.02
    if path.startswith("fc2/"):
        return 1e-3
    if "gamma" in path:
        return 0.2
    if "beta" in path:
        return 0.1
    return 0.1


@pytest.mark.parametrize("stage", [1, 2])
def test_one_step_moves_each_group_by_its_multiplier(stage, tiny_cfg, tiny_data):
    from dpcnn.training import build_for

    cfg = dataclasses.replace(tiny_cfg, train=preset("flickr30k").train)  # the paper's multipliers
    model = build_for(cfg, tiny_data)
    backbone = {id(v): v for v in model.image_encoder.get_layer("backbone").trainable_weights}
    groups = parameter_groups(model, stage, cfg.train)
    chosen = {id(g.variable) for g in groups}
    every = {id(v): v for v in model.trainable_variables}
    for vid, var in every.items():
        expected = paper_multiplier(backbone, var, stage)
        assert (vid in chosen) == (expected > 0), var.path
    lr, mu, wd = 0.5, 0.9, 1e-4
    opt = MultiplierSGD(lr, momentum=mu, coupled_weight_decay=wd,
                        multipliers={g.variable.path: (g.lr_mult, g.wd_mult) for g in groups})
    variables = [g.variable for g in groups]
    before = [v.numpy().copy() for v in variables]
    opt.apply_gradients([(tf.ones_like(v), v) for v in variables])
    for var, old in zip(variables, before):
        # first step: Δ = -(1 + μ)(g + wd·w) with g = 1, so the move / (lr·Δ) is the multiplier
        step = -(1 + mu) * (1.0 + wd * old)
        ratio = (var.numpy() - old) / (lr * step)
        np.testing.assert_allclose(ratio, paper_multiplier(backbone, var, stage), rtol=1e-3, err_msg=var.path)


def test_frozen_backbone_keeps_weights_and_running_stats_but_uses_batch_statistics(tiny_cfg, tiny_data):
    from dpcnn.data.pipeline import stage1_dataset
    from dpcnn.optimizer import make_optimizer
    from dpcnn.training import build_for, configure_backbone

    cfg = apply_overrides(tiny_cfg, ["train.stage1_backbone_lr=0", "model.backbone_bn=batch_stats"])
    model = build_for(cfg, tiny_data)
    configure_backbone(model, cfg, 1)
    backbone = model.image_encoder.get_layer("backbone")
    bn = backbone.get_layer("stem_bn")
    assert bn.momentum == 1.0 and backbone.trainable
    groups = parameter_groups(model, 1, cfg.train)
    model.configure_stage(1, [g.variable for g in groups], (0, 1, 1), 1.0, "hard")
    model.compile(optimizer=make_optimizer(groups, cfg.train, ((1, 0.1),), 2), jit_compile=False)
    frozen = [v.numpy().copy() for v in backbone.weights]
    head = model.image_encoder.get_layer("fc1").kernel.numpy().copy()
    batch = next(iter(stage1_dataset(tiny_data.splits["train"], cfg, 0, 1)))
    # training-mode features differ from inference-mode ones: batch statistics are used
    train_feats = model.image_encoder(batch["images"], training=True).numpy()
    infer_feats = model.image_encoder(batch["images"], training=False).numpy()
    assert np.abs(train_feats - infer_feats).max() > 1e-3
    model.fit(stage1_dataset(tiny_data.splits["train"], cfg, 0, 1), steps_per_epoch=2, shuffle=False, verbose=0)
    for old, var in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(var.numpy(), old, err_msg=var.path)
    assert np.abs(model.image_encoder.get_layer("fc1").kernel.numpy() - head).max() > 0

    frozen_cfg = apply_overrides(cfg, ["model.backbone_bn=frozen"])
    configure_backbone(model, frozen_cfg, 1)
    assert not backbone.trainable
    configure_backbone(model, frozen_cfg, 2)
    assert backbone.trainable and bn.momentum == frozen_cfg.train.stage2_backbone_bn_momentum


def test_schedule_switches_at_epoch_boundaries():
    schedule = piecewise_schedule(((2, 0.1), (1, 0.01), (1, 0.001)), steps_per_epoch=3)
    rates = [float(schedule(step)) for step in range(12)]
    np.testing.assert_allclose(rates, [0.1] * 6 + [0.01] * 3 + [0.001] * 3, rtol=1e-6)
