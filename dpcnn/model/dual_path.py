"""The dual-path model: image encoder, text encoder and one shared instance classifier (PAPER_SPEC §1-3).

A pure, serialisable Keras model with no training state: the stages of
:mod:`dpcnn.training.stages` own the steps, the loss weights and the variables they train.

    image_embedding(images [B, S, S, 3])  → fc1_1bn averaged over positions, before ReLU  [B, D]
    text_embedding(tokens [B, L])         → fc5_2bn, before ReLU                          [B, D]
    ranking_features(embedding)           → L2(ReLU(embedding)): what the ranking loss and
                                            hard-negative mining compare (PAPER_SPEC §1, §4.1)
    logits(embedding, dropout_seed)       → ReLU → dropout (only here, at ``dropout``) →
                                            the shared classifier [B, C] (float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from dpcnn.model.layers import PACKAGE, classifier_init, l2_normalize


def stateless_dropout(x, rate: float, seed):
    """Inverted dropout with a stateless mask: x [..., D], seed int32 [2] → same shape."""
    if rate <= 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed, dtype=tf.float32) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


@keras.saving.register_keras_serializable(package=PACKAGE)
class DualPath(keras.Model):
    """Image and text encoders plus the shared classifier (the official ``fcsharef``/``fcshareb``)."""

    def __init__(self, image_encoder: keras.Model, text_encoder: keras.Model, num_classes: int,
                 classifier_bias: bool = True, dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.num_classes = int(num_classes)
        self.classifier_bias = bool(classifier_bias)
        self.dropout_rate = float(dropout)
        # One Dense layer called on both branches (PAPER_SPEC §3.2).
        self.classifier = keras.layers.Dense(
            self.num_classes, use_bias=self.classifier_bias, kernel_initializer=classifier_init(),
            dtype="float32", name="classifier",
        )

    def image_embedding(self, images, training: bool = False):
        """Pre-ReLU ``fc1_1bn`` averaged over positions: [B, H, W, 3] → float32 [B, D] (1×1 at the crop)."""
        return ops.mean(ops.cast(self.image_encoder(images, training=training), "float32"), axis=(1, 2))

    def text_embedding(self, tokens, training: bool = False):
        """Pre-ReLU ``fc5_2bn``: [B, L] → float32 [B, D]."""
        return ops.cast(self.text_encoder(tokens, training=training), "float32")

    @staticmethod
    def ranking_features(embedding):
        """L2-normalised post-ReLU, pre-dropout features ``fc1_1bnx`` / ``fc5_2bnx``: [B, D] → [B, D]."""
        return l2_normalize(ops.relu(embedding))

    def _classifier_input(self, embedding, dropout_seed=None):
        x = ops.relu(embedding)
        return stateless_dropout(x, self.dropout_rate, dropout_seed) if dropout_seed is not None else x

    def logits(self, embedding, dropout_seed=None):
        """ReLU, dropout (when a stateless ``dropout_seed`` int32 [2] is given), shared classifier → [B, C]."""
        return self.classifier(self._classifier_input(embedding, dropout_seed))

    def logits_pair(self, image_embedding, text_embedding, image_seed=None, text_seed=None):
        """:meth:`logits` of both branches in one call of the shared classifier: ([B, C], [B', C]).

        The same values as two calls, but the classifier's kernel gradient is one [D, C] product
        over the [B + B', D] rows instead of two summed: for COCO's 113,287 classes each such
        tensor is 0.93 GB of host or GPU memory (benchmarks/bench_memory.py).
        """
        x = ops.concatenate([self._classifier_input(image_embedding, image_seed),
                             self._classifier_input(text_embedding, text_seed)], axis=0)
        logits = self.classifier(x)
        n = ops.shape(image_embedding)[0]
        return logits[:n], logits[n:]

    def call(self, inputs, training: bool = False):
        """{"images", "tokens"} → {"image_logits", "text_logits"} [B, C] without dropout (building, inspection)."""
        return {"image_logits": self.logits(self.image_embedding(inputs["images"], training)),
                "text_logits": self.logits(self.text_embedding(inputs["tokens"], training))}

    def get_config(self):
        return {
            **super().get_config(),
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
            "num_classes": self.num_classes,
            "classifier_bias": self.classifier_bias,
            "dropout": self.dropout_rate,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("image_encoder", "text_encoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)


@dataclass(frozen=True)
class ModelSizes:
    """What a DualPath is built from besides the config: its data's sizes and statistics."""

    num_classes: int
    """Instance classes of the shared classifier (training images, or person IDs)."""
    vocab_size: int
    word_dim: int
    pixel_mean: tuple[float, ...]
    """RGB mean subtracted by the image branch."""
    word_vectors: np.ndarray | None = None
    """float [vocab_size, word_dim]: the initial fc2 weights (word2vec); None: random (a model
    whose weights are loaded next)."""

    @classmethod
    def of(cls, data) -> ModelSizes:
        """From prepared data (:class:`dpcnn.data.prepare.PreparedData`), or ``data`` itself."""
        if isinstance(data, ModelSizes):
            return data
        return cls(data.num_classes, len(data.vocab), data.word_dim, tuple(data.pixel_mean), data.embeddings)


def build_dual_path(cfg, data) -> DualPath:
    """A built DualPath (weights created) for a config and its data (prepared data or
    :class:`ModelSizes`): the one code path for every preset and size."""
    from dpcnn.model.image_branch import build_image_encoder
    from dpcnn.model.text_branch import build_text_encoder

    sizes = ModelSizes.of(data)
    image_encoder = build_image_encoder(cfg.model, cfg.data.image_size, sizes.pixel_mean)
    text_encoder = build_text_encoder(cfg.model, sizes.vocab_size, sizes.word_dim, cfg.data.max_len, sizes.word_vectors)
    model = DualPath(image_encoder, text_encoder, sizes.num_classes, classifier_bias=cfg.model.classifier_bias,
                     dropout=cfg.model.dropout, name="dual_path")
    size = cfg.data.image_size
    model({"images": np.zeros((2, size, size, 3), "float32"), "tokens": np.zeros((2, cfg.data.max_len), "int32")})
    return model
