"""Test-time features of PAPER_SPEC §6, batched over tf.data, as L2-normalised numpy arrays.

- Image: the ``fc1_1bn`` map (before ReLU) of the pre-resized image, summed over positions, plus
  the same for its horizontal flip (``eval.flip``), then L2-normalised. ``eval.image_mode=center``
  uses a centre crop of the training size instead of the whole image.
- Text: ``fc5_2bn`` (before ReLU) at every valid position shift of the caption (``eval.all_shifts``),
  summed, then L2-normalised. Without all_shifts the caption is used left-aligned (start 0).

Both run the encoders in inference mode (BN running statistics, no dropout).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dpcnn.config import Config
from dpcnn.data.pipeline import eval_image_batches
from dpcnn.data.vocab import expand_shifts


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(1e-8 + np.sum(x * x, axis=1, keepdims=True))


class Encoders:
    """Traced, shape-relaxed inference calls of a model's two encoders (built once, reused).

    ``images(paths, sizes)`` → float32 [N, D]; ``texts(tokens, lengths)`` → float32 [M, D];
    both L2-normalised test-time features (see the module docstring).
    """

    def __init__(self, image_encoder, text_encoder, cfg: Config):
        self.cfg = cfg
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self._image_fn = tf.function(self._image_features, reduce_retracing=True,
                                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        self._text_fn = tf.function(lambda t: tf.cast(text_encoder(t, training=False), tf.float32),
                                    input_signature=[tf.TensorSpec([None, cfg.data.max_len], tf.int32)])

    def _image_features(self, images):
        feats = tf.reduce_sum(tf.cast(self.image_encoder(images, training=False), tf.float32), axis=(1, 2))
        if self.cfg.eval.flip:
            flipped = tf.reverse(images, axis=[2])
            feats += tf.reduce_sum(tf.cast(self.image_encoder(flipped, training=False), tf.float32), axis=(1, 2))
        return feats

    def image_batch(self, images) -> np.ndarray:
        """Un-normalised summed features of a batch: float [B, H, W, 3] → [B, D]."""
        return self._image_fn(tf.convert_to_tensor(images, tf.float32)).numpy()

    def images(self, paths: np.ndarray, sizes: np.ndarray, progress: bool = True, desc: str = "images") -> np.ndarray:
        """paths str [N], decoded sizes int [N, 2] → float32 [N, D], L2-normalised."""
        cfg = self.cfg
        out: np.ndarray | None = None
        groups = eval_image_batches(paths, sizes, cfg.data, cfg.eval.image_mode, cfg.eval.batch_size)
        with tqdm(total=len(paths), desc=f"encoding {desc}", unit="img", disable=not progress, leave=False) as bar:
            for index, ds in groups:
                start = 0
                for batch in ds:
                    feats = self.image_batch(batch)
                    if out is None:
                        out = np.zeros((len(paths), feats.shape[1]), np.float32)
                    out[index[start:start + len(feats)]] = feats
                    start += len(feats)
                    bar.update(len(feats))
        if out is None:
            raise ValueError("no images to encode")
        return _normalize(out)

    def texts(self, tokens: np.ndarray, lengths: np.ndarray, progress: bool = True, desc: str = "captions") -> np.ndarray:
        """tokens int [M, L], lengths int [M] → float32 [M, D], L2-normalised."""
        shifted, owner = expand_shifts(tokens, lengths, self.cfg.eval.all_shifts)
        batch = self.cfg.eval.batch_size * 8
        out: np.ndarray | None = None
        with tqdm(total=len(shifted), desc=f"encoding {desc}", unit="shift", disable=not progress, leave=False) as bar:
            for start in range(0, len(shifted), batch):
                feats = self._text_fn(tf.constant(shifted[start:start + batch], tf.int32)).numpy()
                if out is None:
                    out = np.zeros((len(tokens), feats.shape[1]), np.float64)
                owners, first = np.unique(owner[start:start + batch], return_index=True)  # owner is sorted
                out[owners] += np.add.reduceat(feats.astype(np.float64), first, axis=0)
                bar.update(len(feats))
        if out is None:
            raise ValueError("no captions to encode")
        return _normalize(out.astype(np.float32))
