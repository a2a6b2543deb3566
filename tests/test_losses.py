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
