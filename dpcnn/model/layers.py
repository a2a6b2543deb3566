"""Small serialisable layers and initialisers shared by both branches.

- :class:`PixelNormalization`: 0-255 RGB → mean-subtracted input (optionally BGR for Caffe-origin
  ImageNet weights), inside the model so exported encoders take raw pixels (PAPER_SPEC §1).
- :class:`WordEmbedding`: the one-hot × ``fc2`` 1×1 conv of the official text branch, i.e. an
  embedding look-up with an all-zero row for empty slots plus one bias added at every position
  (PAPER_SPEC §2.1: empty positions output the bias, not zero; no masking).
- :class:`L2Normalize`, :class:`SpatialSum`.
- :func:`msra_fan_out` / :func:`classifier_init`: MatConvNet's ``initParams.m`` (PAPER_SPEC §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
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
    """y = x / sqrt(eps + Σx²) over the last axis (the official ``dagnn.LRN([4096,1e-8,1,0.5])``)."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x = ops.cast(x, "float32")
        return x / ops.sqrt(self.epsilon + ops.sum(ops.square(x), axis=-1, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def l2_normalize(x, epsilon: float = 1e-8):
    """Functional form of :class:`L2Normalize` (float32 result)."""
    x = ops.cast(x, "float32")
    return x / ops.sqrt(epsilon + ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialSum(keras.layers.Layer):
    """Sum a feature map over its spatial positions: [B, H, W, D] → [B, D] (PAPER_SPEC §6)."""

    def call(self, x):
        return ops.sum(ops.cast(x, "float32"), axis=(1, 2))
