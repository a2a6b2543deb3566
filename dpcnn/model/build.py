"""Assemble a :class:`DualPath` from a config and the prepared data's sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dpcnn.config import Config
from dpcnn.model.dual_path import DualPath
from dpcnn.model.image_branch import build_image_encoder
from dpcnn.model.text_branch import build_text_encoder


def build_dual_path(
    cfg: Config,
    num_classes: int,
    vocab_size: int,
    word_dim: int,
    pixel_mean: Sequence[float],
    word_vectors: np.ndarray | None = None,
) -> DualPath:
    """A built DualPath (weights created) for ``cfg``: the one code path for every preset."""
    image_encoder = build_image_encoder(cfg.model, cfg.data.image_size, pixel_mean)
    text_encoder = build_text_encoder(cfg.model, vocab_size, word_dim, cfg.data.max_len, word_vectors)
    model = DualPath(
        image_encoder, text_encoder, num_classes,
        classifier_bias=cfg.model.classifier_bias, dropout=cfg.model.dropout, seed=cfg.train.seed,
        name="dual_path",
    )
    size = cfg.data.image_size
    model({"images": np.zeros((2, size, size, 3), "float32"),
           "tokens": np.zeros((2, cfg.data.max_len), "int32")})
    return model
