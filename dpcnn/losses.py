"""Losses of the dual-path model as pure functions of logits and embeddings.

- :func:`instance_loss`: softmax cross-entropy of the shared instance classifier, averaged over
  the batch (PAPER_SPEC §3.3: ``softmaxlog`` summed, gradients divided by the batch size).
- :func:`ranking_loss`: the bidirectional hinge of the official ``dagnn.RankLoss`` (PAPER_SPEC §4.1).

Hard-negative mining is not a loss: it lives in :mod:`dpcnn.training.mining`.

All similarities are cosines of L2-normalised features: ``s(a, b) = a · b`` — the sign is the
one a similarity needs (the unofficial Keras port used ``-cos`` and got it inverted).
"""

from __future__ import annotations

from keras import ops


def instance_loss(labels, logits):
    """Mean softmax cross-entropy. labels int [N]; logits float [N, C] → scalar float32."""
    logits = ops.cast(logits, "float32")
    per_example = ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), logits, from_logits=True)
    return ops.mean(per_example)


def instance_accuracy(labels, logits):
    """Fraction of rows whose arg-max class is the label: labels [N], logits [N, C] → scalar."""
    predicted = ops.argmax(logits, axis=-1)
    return ops.mean(ops.cast(ops.equal(ops.cast(predicted, "int32"), ops.cast(labels, "int32")), "float32"))


def ranking_loss(anchor_images, positive_texts, negative_images, negative_texts, margin: float = 1.0):
    """The official two-way ranking loss with one negative per anchor (PAPER_SPEC §4.1).

    All inputs are L2-normalised float [A, D] (post-ReLU, pre-dropout features); row i of the
    negatives is the negative of anchor i. With ``s(a, b) = a·b``:

        L1_i = max(0, m - (s(Xp_i, Yp_i) - s(Xp_i, Yn_i)))   image anchor, negative text
        L2_i = max(0, m - (s(Xp_i, Yp_i) - s(Yp_i, Xn_i)))   text anchor, negative image

    Returns ``Σ_i (L1_i + L2_i) / (2A)``: the official sum over the A anchors divided by the
    whole batch of 2A images, so that the official loss weight (``derOutputs`` 2 for the rank
    term) applies unchanged and the effective objective is the mean over anchors of L1 + L2.
    """
    xp = ops.cast(anchor_images, "float32")
    yp = ops.cast(positive_texts, "float32")
    xn = ops.cast(negative_images, "float32")
    yn = ops.cast(negative_texts, "float32")
    s_pos = ops.sum(xp * yp, axis=-1)
    s_img_negtext = ops.sum(xp * yn, axis=-1)
    s_text_negimg = ops.sum(yp * xn, axis=-1)
    l1 = ops.relu(margin - (s_pos - s_img_negtext))
    l2 = ops.relu(margin - (s_pos - s_text_negimg))
    num_anchors = ops.cast(ops.shape(xp)[0], "float32")
    return ops.sum(l1 + l2) / (2.0 * num_anchors)
