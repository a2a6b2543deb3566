"""The stage-II candidate pool rule (PAPER_SPEC §4.2), drawn in the input pipeline.

Pure functions of index tensors, drawn statelessly by (seed, epoch) in
:func:`dpcnn.data.pipeline.stage2_dataset`; the choice among the candidates (the hardest, or
row i for ``random``) is made in the stage-II step by :mod:`dpcnn.training.mining`.

- ``hard`` (Flickr30k, MSCOCO): candidate captions of training images outside the step's batch,
  drawn with replacement (:func:`pool_images`).
- ``random`` (CUHK-PEDES): for each anchor an image of another person, outside the batch
  (:func:`different_identity`, ``rand_diff_class2/3.m``).
"""

from __future__ import annotations

import tensorflow as tf


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
