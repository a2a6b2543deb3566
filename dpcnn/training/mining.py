"""Negatives for the ranking loss (PAPER_SPEC §4.2): the candidate pool rule and the hardest choice.

The pool rule runs in the stage-II input pipeline (:func:`pool_images`, :func:`different_identity`:
pure functions of index tensors, drawn statelessly by (seed, epoch)); the choice runs in the
stage-II step (:func:`mine`):

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


def pool_images(perm: tf.Tensor, base: tf.Tensor, batch: int, n: int, uniform: tf.Tensor) -> tf.Tensor:
    """Training images outside a step's batch, with replacement.

    perm int [n] (the epoch's image order), base int [...] (each step's first position in it),
    uniform float [..., P] → image indices int [..., P] at positions base + batch + r, r in [0, n − batch).
    """
    r = tf.cast(tf.floor(uniform * float(n - batch)), tf.int32)
    return tf.gather(perm, (base[..., None] + batch + tf.minimum(r, n - batch - 1)) % n)


def different_identity(perm, base, batch: int, n: int, uniform, identities, anchor_ids) -> tf.Tensor:
    """For each anchor, the first of ``tries`` images outside the batch whose identity differs.

    uniform float [S, A, tries], identities int [n], anchor_ids int [S, A] → image indices [S, A]
    (with a person that fills the whole training set the last draw is kept).
    """
    candidates = pool_images(perm, base[:, None], batch, n, uniform)  # [S, A, tries]
    differs = tf.not_equal(tf.gather(identities, candidates), anchor_ids[..., None])
    first = tf.argmax(tf.cast(differs, tf.int32), axis=-1, output_type=tf.int32)
    return tf.gather(candidates, first, batch_dims=2)


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
