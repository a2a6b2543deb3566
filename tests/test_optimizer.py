"""The official SGD update rule and the piecewise schedule (PAPER_SPEC §5, cnn_train_dag.m)."""

import keras
import numpy as np
import tensorflow as tf

from dpcnn.training.optimizer import MultiplierSGD, piecewise_schedule


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


def test_plain_momentum_and_weight_decay_multiplier():
    w = keras.Variable([1.0], name="w")
    opt = MultiplierSGD(0.5, momentum=0.5, nesterov=False, coupled_weight_decay=0.1, multipliers={w.path: (1.0, 0.0)})
    for _ in range(2):
        opt.apply_gradients([(tf.constant([1.0]), w)])
    # no decay (multiplier 0): v1 = -1, w = 0.5; v2 = 0.5·(-1) - 1 = -1.5, w = 0.5 - 0.75 = -0.25
    np.testing.assert_allclose(w.numpy(), [-0.25], atol=1e-7)


def test_schedule_switches_at_epoch_boundaries():
    schedule = piecewise_schedule(((2, 0.1), (1, 0.01), (1, 0.001)), steps_per_epoch=3)
    rates = [float(schedule(step)) for step in range(12)]
    np.testing.assert_allclose(rates, [0.1] * 6 + [0.01] * 3 + [0.001] * 3, rtol=1e-6)
