"""Negatives for the ranking loss (PAPER_SPEC §4.2): the hardest choice, in the stage-II step.

The candidate pool is drawn in the stage-II input pipeline (:mod:`dpcnn.data.negatives`); the
choice runs in the stage-II step (:func:`mine`):

- ``hard`` (Flickr30k, MSCOCO): 256 candidate captions per step, each of a training image outside
  the step's batch, drawn with replacement, each with its own position shift. The anchors' and the
  candidates' ranking features are computed in inference mode (BN running statistics, no dropout,
  no gradient); each anchor's negative text is its most similar candidate
  (:func:`hardest_negatives`), and its label is that candidate's. The negative *image* is the
  batch's second half, not mined.
- ``random`` (CUHK-PEDES): no mining. Row i of the pool is a caption of a person other than anchor
  i's, and the negative image is an image of another person (``rand_diff_class2/3.m``).
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops


def hardest_negatives(anchor_features, candidate_features):
    """Index of the most similar candidate for each anchor (cosine of L2-normalised features).

    anchor_features float [A, D], candidate_features float [P, D] → int32 [A].
    """
    sims = ops.matmul(ops.cast(anchor_features, "float32"), ops.transpose(ops.cast(candidate_features, "float32")))
    return ops.cast(ops.argmax(sims, axis=-1), "int32")


def mine(model, anchor_images, pool_tokens, pool_labels, mode: str):
    """The negative texts of the anchors and their labels: ([A, L] tokens, [A] labels), no gradient.

    ``hard``: encode in inference mode, take each anchor's hardest candidate; ``random``: pool row i.
    """
    if mode == "random":
        return tf.stop_gradient(pool_tokens), pool_labels
    anchors = model.ranking_features(model.image_embedding(anchor_images, training=False))
    candidates = model.ranking_features(model.text_embedding(pool_tokens, training=False))
    index = hardest_negatives(tf.stop_gradient(anchors), tf.stop_gradient(candidates))
    return tf.stop_gradient(tf.gather(pool_tokens, index)), tf.gather(pool_labels, index)
