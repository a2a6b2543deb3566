"""Small serialisable layers and initialisers shared by both branches.

- :class:`PixelNormalization`: 0-255 RGB → mean-subtracted input (optionally BGR for Caffe-origin
  ImageNet weights), inside the model so exported encoders take raw pixels (PAPER_SPEC §1).
- :class:`WordEmbedding`: the one-hot × ``fc2`` 1×1 conv of the official text branch, i.e. an
  embedding look-up with an all-zero row for empty slots plus one bias added at every position
  (PAPER_SPEC §2.1: empty positions output the bias, not zero; no masking).
- The test-time feature layers of PAPER_SPEC §6 (:mod:`dpcnn.model.features` assembles them):
  :class:`PreResize` (the one evaluation pre-resize), :class:`HorizontalFlip`, :class:`SpatialSum`,
  :class:`ShiftExpand` / :class:`SegmentSum` (every valid position shift of a caption, summed) and
  :class:`L2Normalize` (the official ``dagnn.LRN([4096, 1e-8, 1, 0.5])``).
- :func:`msra_fan_out` / :func:`classifier_init`: MatConvNet's ``initParams.m`` (PAPER_SPEC §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

PACKAGE = "dpcnn"


def msra_fan_out() -> keras.initializers.Initializer:
    """N(0, 2 / (k_h·k_w·C_out)): new conv weights in the authors' modified MatConvNet (PAPER_SPEC §5)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def classifier_init() -> keras.initializers.Initializer:
    """The shared classifier's initialisation: the MSRA fan-out normal scaled by 0.1 (variance × 0.01)."""
    return keras.initializers.VarianceScaling(0.02, mode="fan_out", distribution="untruncated_normal")


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNormalization(keras.layers.Layer):
    """Subtract a per-channel mean from 0-255 RGB pixels; optionally reorder to BGR.

    Input  [B, H, W, 3] float (RGB, 0-255) → output [B, H, W, 3] float.
    ``bgr=True`` reorders channels after the subtraction (Keras' Caffe-origin ImageNet weights
    expect BGR); the mean is always given in RGB order.
    """

    def __init__(self, mean: Sequence[float] = (0.0, 0.0, 0.0), bgr: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        if len(self.mean) != 3:
            raise ValueError(f"PixelNormalization needs 3 mean values (RGB), got {self.mean}")
        self.bgr = bool(bgr)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype) - ops.convert_to_tensor(
            np.asarray(self.mean, dtype="float32"), dtype=self.compute_dtype
        )
        if self.bgr:
            x = ops.flip(x, axis=-1)
        return x

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean), "bgr": self.bgr}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WordEmbedding(keras.layers.Layer):
    """Embedding with a fixed zero row for the empty slot plus one bias at every position.

    Input  tokens int [B, L] with 0 = empty and 1..V = vocabulary ids.
    Output float [B, L, D]: ``W[token-1]`` (or 0 for empty slots) ``+ bias``.

    This is exactly the official ``fc2`` 1×1 conv V→D with bias applied to a one-hot input
    (PAPER_SPEC §2.1). The weights are initialised from the word-vector matrix.
    """

    def __init__(self, vocab_size: int, dim: int, initial_vectors=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self._initial_vectors = initial_vectors

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=0.1),
        )
        self.bias = self.add_weight(name="bias", shape=(self.dim,), initializer="zeros")
        if self._initial_vectors is not None:
            matrix = np.asarray(self._initial_vectors, dtype="float32")
            if matrix.shape != (self.vocab_size, self.dim):
                raise ValueError(
                    f"word-vector matrix has shape {matrix.shape}, expected ({self.vocab_size}, {self.dim})"
                )
            self.embeddings.assign(matrix)
            self._initial_vectors = None  # do not keep a second copy of the matrix around

    def call(self, tokens):
        tokens = ops.cast(tokens, "int32")
        present = ops.cast(ops.greater(tokens, 0), self.compute_dtype)[..., None]
        vectors = ops.take(ops.cast(self.embeddings, self.compute_dtype), ops.maximum(tokens - 1, 0), axis=0)
        return vectors * present + ops.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2Normalize(keras.layers.Layer):
    """y = x / sqrt(eps + Σx²) over the last axis (the official ``dagnn.LRN([4096,1e-8,1,0.5])``);
    float32 out whatever the compute dtype."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        return l2_normalize(x, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def l2_normalize(x, epsilon: float = 1e-8):
    """x [..., D] → x / sqrt(eps + Σx²), float32 (the ranking features and every test-time feature)."""
    x = ops.cast(x, "float32")
    return x / ops.sqrt(epsilon + ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialSum(keras.layers.Layer):
    """Sum a feature map over its spatial positions: [B, H, W, D] → float32 [B, D] (PAPER_SPEC §6)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        return ops.sum(ops.cast(x, "float32"), axis=(1, 2))


@keras.saving.register_keras_serializable(package=PACKAGE)
class HorizontalFlip(keras.layers.Layer):
    """Mirror images left-right: [B, H, W, C] → [B, H, W, C] (the test-time flip, ``fliplr``)."""

    def call(self, images):
        return ops.flip(images, axis=2)


def pre_resize_size(height, width, shorter: int, square: bool):
    """Target (h, w) of the evaluation pre-resize: shorter side ``shorter`` with the aspect kept, or
    ``shorter`` × ``shorter`` (CUHK-PEDES); ``shorter`` ≤ 0 keeps the size. Works on ints and tensors."""
    if shorter <= 0:
        return height, width
    if square:
        return shorter, shorter
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = shorter / tf.minimum(h, w)
    return (tf.cast(tf.maximum(tf.round(h * scale), 1.0), tf.int32),
            tf.cast(tf.maximum(tf.round(w * scale), 1.0), tf.int32))


@keras.saving.register_keras_serializable(package=PACKAGE)
class PreResize(keras.layers.Layer):
    """The evaluation pre-resize of PAPER_SPEC §1/§6 (``dataset/*/resize_image.m``), inside the model.

    pixels float [B, H, W, 3] (0-255) → [B, h, w, 3]: bicubic with antialiasing to shorter side
    ``shorter`` (aspect kept) or to ``shorter`` × ``shorter`` (``square``); then, with ``crop`` > 0,
    the central ``crop`` × ``crop`` square (``eval.image_mode=center``). A batch that already has
    the output size passes through untouched, so the evaluation pipeline, which pre-resizes while
    decoding (:func:`pre_resize_image`, the same function), is not resized twice.
    """

    def __init__(self, shorter: int = 0, square: bool = False, crop: int = 0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # pixels stay float32 under a mixed-precision policy
        super().__init__(**kwargs)
        self.shorter, self.square, self.crop = int(shorter), bool(square), int(crop)

    def call(self, images):
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        if self.crop:
            done = tf.logical_and(tf.equal(shape[1], self.crop), tf.equal(shape[2], self.crop))
        else:
            h, w = pre_resize_size(shape[1], shape[2], self.shorter, self.square)
            done = tf.logical_and(tf.equal(shape[1], h), tf.equal(shape[2], w))
        return tf.cond(done, lambda: images, lambda: pre_resize_image(images, self.shorter, self.square, self.crop))

    def compute_output_shape(self, input_shape):
        if self.crop:
            return (input_shape[0], self.crop, self.crop, input_shape[-1])
        if self.square and self.shorter > 0:
            return (input_shape[0], self.shorter, self.shorter, input_shape[-1])
        return (input_shape[0], None, None, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "shorter": self.shorter, "square": self.square, "crop": self.crop}


def pre_resize_image(images, shorter: int, square: bool, crop: int = 0):
    """[H, W, 3] or [B, H, W, 3] pixels → pre-resized (then centre-cropped with ``crop`` > 0), float
    0-255. The one implementation of the evaluation pre-resize (the pipeline and :class:`PreResize`)."""
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    h, w = pre_resize_size(shape[-3], shape[-2], shorter, square)
    if shorter > 0:
        images = tf.image.resize(images, tf.stack([h, w]), method="bicubic", antialias=True)
    if crop:
        images = tf.image.resize_with_crop_or_pad(images, crop, crop)
    return tf.clip_by_value(images, 0.0, 255.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ShiftExpand(keras.layers.Layer):
    """Every valid position shift of each caption (PAPER_SPEC §6 text feature; the official
    ``win = L + 1 - len`` copies).

    tokens int [B, L], left-aligned (0 = empty) → (shifted int [R, L], owner int [R]) where caption
    i appears L − len_i + 1 times at starts 0 … L − len_i (an empty caption L + 1 times), or once
    at start 0 with ``all_shifts=False``.
    """

    def __init__(self, all_shifts: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.all_shifts = bool(all_shifts)

    def call(self, tokens):
        tokens = tf.cast(tokens, tf.int32)
        batch, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
        if not self.all_shifts:
            return tokens, tf.range(batch)
        lengths = tf.reduce_sum(tf.cast(tokens > 0, tf.int32), axis=1)
        copies = length - lengths + 1
        owner = tf.repeat(tf.range(batch), copies)
        first = tf.cumsum(copies, exclusive=True)
        starts = tf.range(tf.shape(owner)[0]) - tf.gather(first, owner)
        cols = tf.math.floormod(tf.range(length)[None, :] - starts[:, None], length)
        return tf.gather(tf.gather(tokens, owner), cols, batch_dims=1), owner

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1]), (None,)

    def get_config(self):
        return {**super().get_config(), "all_shifts": self.all_shifts}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentSum(keras.layers.Layer):
    """Sum the rows of each caption: (features [R, D], owner int [R], tokens [B, L]) → float32 [B, D]."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, features, owner, tokens):
        return tf.math.unsorted_segment_sum(tf.cast(features, tf.float32), owner, tf.shape(tokens)[0])

    def compute_output_shape(self, features_shape, owner_shape, tokens_shape):
        return (tokens_shape[0], features_shape[-1])
