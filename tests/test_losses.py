"""Losses on 3x3 toys with values worked out by hand (PAPER_SPEC §3.3, §4.1)."""

import math

import numpy as np
import pytest

from dpcnn import losses
from dpcnn.training import mining

# Anchors are the unit axes; every vector below has norm 1.
XP = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
YP = np.array([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8]], np.float32)
YN = np.array([[0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32)
XN = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32)
# s(Xp,Yp) = [1, 1, 0.8]; s(Xp,Yn) = [0, 0.8, 1]; s(Yp,Xn) = [0, 0, 0.6]
# margin 1: L1 = [0, 0.8, 1.2], L2 = [0, 0, 0.8] → sum 2.8, divided by the batch 2A = 6.
# margin 0.5: L1 = [0, 0.3, 0.7], L2 = [0, 0, 0.3] → sum 1.3 / 6.


@pytest.mark.parametrize("margin, expected", [(1.0, 2.8 / 6), (0.5, 1.3 / 6)])
def test_ranking_loss_by_hand(margin, expected):
    value = float(losses.ranking_loss(XP, YP, XN, YN, margin))
    assert value == pytest.approx(expected, abs=1e-6)


def test_ranking_loss_sign_rewards_similar_positives():
    # Positives equal to the anchors and orthogonal negatives cost nothing with margin 1; the
    # inverted sign of the unofficial port (-cos) would make this the worst case instead.
    good = float(losses.ranking_loss(XP, XP, XN, XN, 1.0))
    bad = float(losses.ranking_loss(XP, XN, XN, XP, 1.0))
    assert good == pytest.approx(0.0) and bad == pytest.approx(2.0)  # each term 1 - (0 - 1) = 2 → 12 / 6


def test_hardest_negative_is_the_most_similar_candidate():
    candidates = np.array([[0.6, 0.8, 0], [0, 0, 1], [1, 0, 0], [0, 0.6, 0.8]], np.float32)
    # anchor e1 · candidates = [0.6, 0, 1, 0] → 2; e2 → [0.8, 0, 0, 0.6] → 0; e3 → [0, 1, 0, 0.8] → 1
    assert np.asarray(mining.hardest_negatives(XP, candidates)).tolist() == [2, 0, 1]


def test_instance_loss_and_accuracy_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    # row 1: -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2); row 2: -log(1 / (e + 2)) = log(e + 2)
    expected = (math.log(1 + 2 * math.exp(-2)) + math.log(math.e + 2)) / 2
    assert float(losses.instance_loss(labels, logits)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.instance_accuracy(labels, logits)) == pytest.approx(0.5)


# --- VSE++ and InfoNCE (train.stage2_objective) on the same toys ---
# s = XP · YPᵀ: s[i, j] = YP[j][i] → rows [1, 0, 0], [0, 1, 0.6], [0, 0, 0.8]; positives diag = [1, 1, 0.8].


@pytest.mark.parametrize("margin, labels, expected", [
    # margin 1: image rows max_j≠i (1 - s_ii + s_ij) = [0, 0.6, 0.2]; text columns max_j≠i (1 - s_ii + s_ji)
    # = [0, 0, 0.8] (text 2 against image 1: 1 - 0.8 + 0.6) → 1.6 / 6
    (1.0, None, 1.6 / 6),
    # margin 0.5: only image 1 / text 2 (0.1) and text 2 / image 1 (0.3) violate → 0.4 / 6
    (0.5, None, 0.4 / 6),
    # labels [0, 1, 1]: pairs 1-2 are one class, not negatives; image 2 / text 0: 0.2, text 2 / image 0: 0.2
    (1.0, [0, 1, 1], 0.4 / 6),
])
def test_vsepp_loss_by_hand(margin, labels, expected):
    value = float(losses.vsepp_loss(XP, YP, margin, None if labels is None else np.array(labels)))
    assert value == pytest.approx(expected, abs=1e-6)


def test_vsepp_takes_the_hardest_negative_not_the_sum():
    # margin 1: image 1 violates against text 0 (1 - 1 + 0 = 0) and text 2 (0.6); the sum of
    # hinges would add image 2's two violations 0.2 + 0.2 and text 2's 0.2 + 0.8.
    summed = (0.6 + 0.2 + 0.2 + 0.2 + 0.8) / 6
    assert float(losses.vsepp_loss(XP, YP, 1.0)) != pytest.approx(summed, abs=1e-3)


def _softmax_ce(row, target):
    return math.log(sum(math.exp(v) for v in row)) - row[target]


@pytest.mark.parametrize("log_scale, scale", [(0.0, 1.0), (math.log(5.0), 5.0)])
def test_infonce_loss_by_hand(log_scale, scale):
    s = [[1, 0, 0], [0, 1, 0.6], [0, 0, 0.8]]
    rows = [_softmax_ce([scale * v for v in s[i]], i) for i in range(3)]
    cols = [_softmax_ce([scale * s[j][i] for j in range(3)], i) for i in range(3)]
    expected = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    assert float(losses.infonce_loss(XP, YP, np.float32(log_scale))) == pytest.approx(expected, rel=1e-5)


def test_infonce_scale_is_clipped_at_100():
    # texts 0 and 1 are 0.2 apart in cosine from each image: at scale 50 the loss is ≈ e^-10, at 100 ≈ e^-20
    texts = np.array([[0.8, 0.6, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32)
    at = lambda scale: float(losses.infonce_loss(XP, texts, np.float32(math.log(scale))))  # noqa: E731
    assert at(1000.0) == at(100.0) < at(50.0)
    assert at(50.0) == pytest.approx(2 / 3 * math.log(1 + math.exp(-10)), rel=1e-3)  # rows 0, 1 and columns 0, 1


def test_infonce_leaves_pairs_of_one_class_out_of_the_softmax():
    # labels [0, 1, 1], scale 1: image 1 sees texts {0, 1}, image 2 texts {0, 2}; text 1 images {0, 1}, text 2 {0, 2}
    rows = [math.log(1 + 2 / math.e), math.log(1 + math.exp(-1)), math.log(1 + math.exp(-0.8))]
    cols = [math.log(1 + 2 / math.e), math.log(1 + math.exp(-1)), math.log(1 + math.exp(-0.8))]
    expected = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    value = float(losses.infonce_loss(XP, YP, np.float32(0.0), np.array([0, 1, 1])))
    assert value == pytest.approx(expected, rel=1e-5)


def test_infonce_temperature_gets_a_gradient():
    import tensorflow as tf

    log_scale = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        loss = losses.infonce_loss(XP, YP, log_scale)
    assert abs(float(tape.gradient(loss, log_scale))) > 1e-3
