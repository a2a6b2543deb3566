"""Text branch: the deep text CNN of PAPER_SPEC §2.2.

    tokens [B, L] int (0 = empty slot)
      → fc2: word-vector embedding + one bias at every position (no mask) → BN, no ReLU
      → 4 stages of bottleneck blocks (3/4/6/1 in the paper) with 1×2 kernels
      → max over word positions → fc5_2 (no bias) → BN ``fc5_2bn``
    output: [B, D] before ReLU (the test feature; ReLU + L2 give the ranking feature).

Every convolution has no bias and is followed by BN. A block is
``1×1 (in→mid) BN ReLU · left-pad 1 · 1×2 (mid→mid, stride s) BN ReLU · 1×1 (mid→out) BN``, plus a
shortcut (a 1×1 stride-s projection + BN in each stage's first block, identity otherwise), then
ReLU after the add. The 1×2 convolutions pad on the left only (MatConvNet ``pad [0,0,1,0]``), so
with stride 2 output j's window covers slots (2j − 1, 2j) and the stride-2 projection reads slot
2j: at an even length (L = 32 or 56, and half of it at the next stride-2 stage) the last slot is
seen by neither path. Reproduced with an explicit ``ZeroPadding1D((1, 0))`` and a ``valid``
convolution (Keras ``same`` would differ); over the two stride-2 stages the last three slots never
reach the output.

Layer names follow the stage/block structure; the official names are ``fc2_1..fc2_3`` (stage A),
``fc2_4, fc3_2..4`` (B), ``fc3_5, fc4_2..6`` (C), ``fc4_7`` (D), ``fc5_2``.
"""

from __future__ import annotations

import keras
import numpy as np

from dpcnn.config import ModelConfig
from dpcnn.model.layers import WordEmbedding, msra_fan_out


def build_text_encoder(
    cfg: ModelConfig,
    vocab_size: int,
    word_dim: int,
    max_len: int,
    word_vectors: np.ndarray | None = None,
) -> keras.Model:
    """The text branch up to ``fc5_2bn``: tokens int [B, max_len] → pre-ReLU [B, embed_dim].

    ``word_vectors`` float [vocab_size, word_dim] initialises the embedding (PAPER_SPEC §2.1).
    """

    def bn(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=name)

    def conv(ch: int, k: int, stride: int, name: str) -> keras.layers.Layer:
        return keras.layers.Conv1D(ch, k, strides=stride, padding="valid", use_bias=False,
                                   kernel_initializer=msra_fan_out(), name=name)

    tokens = keras.Input((max_len,), dtype="int32", name="tokens")
    x = WordEmbedding(vocab_size, word_dim, initial_vectors=word_vectors, name="fc2")(tokens)
    x = bn("fc2_bn")(x)  # no ReLU: it is commented out in the official model
    stages = zip(cfg.text_blocks, cfg.text_widths, cfg.text_first_mid, cfg.text_mid, cfg.text_strides)
    for s, (n_blocks, width, first_mid, mid, stride) in enumerate(stages, start=1):
        for b in range(1, n_blocks + 1):
            p = f"txt_s{s}_b{b}"
            block_mid = first_mid if b == 1 else mid
            block_stride = stride if b == 1 else 1
            y = keras.layers.ReLU(name=f"{p}_relu1")(bn(f"{p}_bn1")(conv(block_mid, 1, 1, f"{p}_conv1")(x)))
            y = keras.layers.ZeroPadding1D((1, 0), name=f"{p}_pad")(y)
            y = keras.layers.ReLU(name=f"{p}_relu2")(bn(f"{p}_bn2")(conv(block_mid, 2, block_stride, f"{p}_conv2")(y)))
            y = bn(f"{p}_bn3")(conv(width, 1, 1, f"{p}_conv3")(y))
            shortcut = x
            if b == 1:
                shortcut = bn(f"{p}_proj_bn")(conv(width, 1, block_stride, f"{p}_proj")(x))
            x = keras.layers.ReLU(name=f"{p}_out")(keras.layers.Add(name=f"{p}_add")([y, shortcut]))
    if cfg.text_pool == "max":
        x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dense(cfg.embed_dim, use_bias=False, kernel_initializer=msra_fan_out(), name="fc5_2")(x)
    x = bn("fc5_2_bn")(x)
    return keras.Model(tokens, x, name="text_encoder")


def stage_lengths(max_len: int, strides: tuple[int, ...]) -> list[int]:
    """Sequence length after each text stage (MatConvNet: floor((L + 1 - 2) / s) + 1)."""
    out, length = [], max_len
    for s in strides:
        length = (length + 1 - 2) // s + 1
        out.append(length)
    return out
