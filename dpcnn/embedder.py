"""Embed images and sentences with a trained model: the object a run and an export both give.

An :class:`Embedder` holds the two test-time feature models of :mod:`dpcnn.model.features`
(final, L2-normalised embeddings) and the vocabulary. It batches them over image files (decoded
and pre-resized in a tf.data pipeline, grouped by size), image arrays, token matrices and
strings; every result is float32 [N, D] with unit rows, and a score is a dot product (cosine).

    emb = dpcnn.load("exports/demo")            # or dpcnn.run.Run.open("runs/demo").embedder()
    images = emb.encode_images(["a.jpg", "b.png"])
    texts = emb.encode_texts(["a red circle above a blue square"])
    hits = emb.search(texts[0], images, k=5)    # [(score, index)] best first
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dpcnn.data.images import decode_image
from dpcnn.data.vocab import Vocabulary
from dpcnn.errors import SearchError
from dpcnn.model.layers import pre_resize_image, pre_resize_size

log = logging.getLogger(__name__)


class Embedder:
    """Test-time features of images and captions (PAPER_SPEC §6) from two feature models."""

    def __init__(self, image_model, text_model, vocab: Vocabulary, batch_size: int = 32, identity: str = "",
                 captions_file=None):
        self.image_model = image_model
        self.identity = identity
        """Names the model and its test-time settings (feature caches are keyed on it)."""
        self.captions_file = captions_file
        """The model's own training captions, one per line (the default caption corpus), or None."""
        self.text_model = text_model
        self.vocab = vocab
        self.batch_size = int(batch_size)
        resize = image_model.get_layer("pre_resize")
        self.shorter, self.square, self.crop = resize.shorter, resize.square, resize.crop
        self.max_len = int(text_model.input_shape[-1])
        self._images = tf.function(lambda x: image_model(x, training=False), reduce_retracing=True,
                                   input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        self._texts = tf.function(lambda t: text_model(t, training=False),
                                  input_signature=[tf.TensorSpec([None, self.max_len], tf.int32)])

    @property
    def dim(self) -> int:
        return int(self.text_model.output_shape[-1])

    def smallest_side(self, probe_up_to: int = 64) -> int:
        """The smallest square image side the image model accepts: 1 where it pre-resizes or crops;
        else found once by trying zero images up to ``probe_up_to`` px (a backbone that keeps the
        image's own size fails on images smaller than its total stride)."""
        if self.shorter > 0 or self.crop > 0:
            return 1
        if getattr(self, "_smallest_side", None) is None:
            def works(side: int) -> bool:
                try:
                    out = self.image_model(np.zeros((1, side, side, 3), np.float32), training=False)
                    return bool(np.isfinite(np.asarray(out)).all())
                except (tf.errors.OpError, ValueError):
                    return False

            lo, hi = 1, probe_up_to
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if works(mid) else (mid + 1, hi)
            self._smallest_side = lo
        return self._smallest_side

    # -- images --------------------------------------------------------------------------------
    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height`` × ``width`` has after the pre-resize (and crop)."""
        if self.crop:
            return self.crop, self.crop
        h, w = pre_resize_size(int(height), int(width), self.shorter, self.square)
        return int(h), int(w)

    def encode_image_files(self, paths: Sequence[str], sizes: np.ndarray, progress: bool = False,
                           desc: str = "images") -> np.ndarray:
        """Decodable image files (``sizes`` int [N, 2]: their decoded height, width) → float32 [N, D].

        Images are decoded and pre-resized in parallel and batched with others of the same size.
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(np.asarray(sizes).reshape(-1, 2)):
            groups.setdefault(self.target_size(h, w), []).append(i)
        out = np.zeros((len(paths), self.dim), np.float32)
        paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        with tqdm(total=len(paths), desc=f"encoding {desc}", unit="img", disable=not progress, leave=False) as bar:
            for (h, w), idx in sorted(groups.items()):
                index = np.asarray(idx, dtype=np.int64)
                ds = tf.data.Dataset.from_tensor_slices(paths[index].astype(str))
                ds = ds.map(lambda p, h=h, w=w: tf.ensure_shape(
                    pre_resize_image(decode_image(p), self.shorter, self.square, self.crop), [h, w, 3]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                start = 0
                for batch in ds.batch(self.batch_size).prefetch(tf.data.AUTOTUNE):
                    feats = self._images(batch).numpy()
                    out[index[start:start + len(feats)]] = feats
                    start += len(feats)
                    bar.update(len(feats))
        return out

    def encode_images(self, images) -> np.ndarray:
        """Image files (paths) or RGB 0-255 arrays ([H, W, 3], a list of them, or [B, H, W, 3]) → [N, D].

        Files must be decodable (see :func:`dpcnn.data.images.check_images` for a folder of them).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = images[None]
        if len(images) == 0:
            raise SearchError("encode_images: no images given")
        if all(isinstance(x, (str, os.PathLike)) for x in images):
            from dpcnn.data.images import check_images

            paths = [os.fspath(p) for p in images]
            good, bad = check_images(paths, progress=False)
            if bad:
                i = min(bad)
                raise SearchError(f"cannot read {len(bad)} of the {len(paths)} images, e.g. {paths[i]}: {bad[i]}")
            return self.encode_image_files(paths, np.asarray([[good[i].height, good[i].width] for i in range(len(paths))]))
        out = np.zeros((len(images), self.dim), np.float32)
        for i, image in enumerate(images):
            x = np.asarray(image, dtype=np.float32)
            if x.ndim != 3 or x.shape[-1] != 3:
                raise SearchError(f"an image must be [H, W, 3] RGB, got shape {x.shape}")
            out[i] = self._images(pre_resize_image(x[None], self.shorter, self.square, self.crop)).numpy()[0]
        return out

    # -- texts ---------------------------------------------------------------------------------
    def encode_tokens(self, tokens: np.ndarray, progress: bool = False, desc: str = "captions") -> np.ndarray:
        """Left-aligned ids int [M, L] → float32 [M, D] (an empty row gives the bias-only feature)."""
        tokens = np.asarray(tokens, np.int32)
        if tokens.ndim != 2 or tokens.shape[1] != self.max_len:
            raise SearchError(f"tokens must be [M, {self.max_len}], got {tokens.shape}")
        out = np.zeros((len(tokens), self.dim), np.float32)
        step = self.batch_size
        with tqdm(total=len(tokens), desc=f"encoding {desc}", unit="caption", disable=not progress, leave=False) as bar:
            for start in range(0, len(tokens), step):
                out[start:start + step] = self._texts(tf.constant(tokens[start:start + step])).numpy()
                bar.update(min(step, len(tokens) - start))
        return out

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Captions → (ids int32 [M, L], in-vocabulary lengths int32 [M]) with the model's vocabulary."""
        if isinstance(texts, str):
            raise TypeError("expected a list of captions, got one string: wrap it in a list")
        return self.vocab.encode_many(list(texts), self.max_len)

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Captions → float32 [M, D]. SearchError for a caption with no word in the vocabulary."""
        tokens, lengths = self.tokenize(texts)
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            shown = "; ".join(f"{texts[i]!r} → tokens {self.vocab.tokenize(texts[i])}" for i in empty[:3])
            sample = ", ".join(self.vocab.words[:12])
            raise SearchError(f"{empty.size} caption(s) have no word in the model's vocabulary of "
                              f"{len(self.vocab)} words (e.g. {sample}): {shown}")
        return self.encode_tokens(tokens, progress=progress)

    # -- search --------------------------------------------------------------------------------
    @staticmethod
    def search(query: np.ndarray, candidates: np.ndarray, k: int = 5) -> list[tuple[float, int]]:
        """The k candidates [N, D] most similar to ``query`` [D]: [(cosine, index)], best first."""
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        scores = np.asarray(candidates) @ np.asarray(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(float(scores[i]), int(i)) for i in order]
