"""Losses of the dual-path model as pure functions of logits and embeddings.

- :func:`instance_loss`: softmax cross-entropy of the shared instance classifier, averaged over
  the batch (PAPER_SPEC §3.3: ``softmaxlog`` summed, gradients divided by the batch size).
- :func:`ranking_loss`: the bidirectional hinge of the official ``dagnn.RankLoss`` (PAPER_SPEC §4.1).
- :func:`vsepp_loss`, :func:`infonce_loss`: the stage-II objectives of VSE++ and CLIP, chosen by
  ``train.stage2_objective`` (not the paper: docs/fidelity.md).

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


# --- Stage-II objectives beside the paper's (train.stage2_objective; docs/fidelity.md: options, not the paper) ---


def _in_batch_similarities(images, texts, labels):
    """Cosines s[i, j] = x_i · y_j (float32 [A, A]) and the mask of the pairs that are negatives:
    j ≠ i and, where ``labels`` ([A] int) is given, a different label (bool [A, A])."""
    x = ops.cast(images, "float32")
    y = ops.cast(texts, "float32")
    sims = ops.matmul(x, ops.transpose(y))
    a = ops.shape(x)[0]
    negative = ops.logical_not(ops.eye(a, dtype="bool"))
    if labels is not None:
        labels = ops.cast(labels, "int32")
        negative = ops.logical_and(negative, ops.not_equal(labels[:, None], labels[None, :]))
    return sims, negative


def vsepp_loss(images, texts, margin: float = 0.2, labels=None):
    """VSE++ (Faghri et al. 2018, "max of hinges"): the hardest in-batch negative, both directions.

    images, texts: L2-normalised float [A, D], row i of each a positive pair; ``labels`` [A]
    (optional): pairs with equal labels are not negatives (several images of one class). With
    ``s = X Yᵀ``:

        L1_i = max_j∈neg(i) max(0, m - s_ii + s_ij)     image i, hardest negative text
        L2_i = max_j∈neg(i) max(0, m - s_ii + s_ji)     text i, hardest negative image

    Returns ``Σ_i (L1_i + L2_i) / (2A)``, normalised as :func:`ranking_loss` so that the same rank
    weight applies. A row without any negative contributes 0.
    """
    sims, negative = _in_batch_similarities(images, texts, labels)
    positive = ops.diagonal(sims)
    text_cost = ops.where(negative, ops.relu(margin - positive[:, None] + sims), 0.0)
    image_cost = ops.where(ops.transpose(negative), ops.relu(margin - positive[:, None] + ops.transpose(sims)), 0.0)
    a = ops.cast(ops.shape(sims)[0], "float32")
    return (ops.sum(ops.max(text_cost, axis=1)) + ops.sum(ops.max(image_cost, axis=1))) / (2.0 * a)


MAX_LOGIT_SCALE = 100.0
"""CLIP's clip of the learned logit scale (1 / temperature)."""


def infonce_loss(images, texts, log_scale, labels=None):
    """CLIP's symmetric contrastive loss over in-batch cosines with a learned temperature.

    images, texts: L2-normalised float [A, D], row i of each a positive pair; ``log_scale``: scalar,
    ``log(1 / temperature)`` (the scale is clipped at :data:`MAX_LOGIT_SCALE`); ``labels`` [A]
    (optional): other pairs with the anchor's label are left out of its softmax (they are not
    negatives). With ``z = scale · X Yᵀ``:

        loss = ½ · mean_i [ -log softmax(z[i, :])_i ] + ½ · mean_i [ -log softmax(z[:, i])_i ]

    Returns a scalar float32.
    """
    sims, negative = _in_batch_similarities(images, texts, labels)
    scale = ops.minimum(ops.exp(ops.cast(log_scale, "float32")), MAX_LOGIT_SCALE)
    keep = ops.logical_or(negative, ops.eye(ops.shape(sims)[0], dtype="bool"))
    logits = ops.where(keep, scale * sims, -1e9)
    targets = ops.arange(ops.shape(sims)[0], dtype="int32")
    image_to_text = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    text_to_image = ops.sparse_categorical_crossentropy(targets, ops.transpose(logits), from_logits=True)
    return 0.5 * (ops.mean(image_to_text) + ops.mean(text_to_image))
