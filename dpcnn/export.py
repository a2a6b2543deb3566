"""``dpcnn export``: the two encoders as ``.keras`` files plus the vocabulary, usable without the
training code.

    OUT/image_encoder.keras   pixels float [B, H, W, 3] (RGB 0-255, any size) → fc1_1bn map [B, h, w, D]
    OUT/text_encoder.keras    tokens int32 [B, L] (0 = empty slot) → fc5_2bn [B, D]
    OUT/vocab.json            the caption dictionary and its tokenisation settings
    OUT/config.json           the run's resolved config (test-time features: eval.*; L: data.max_len)
    OUT/README.md             how to load and call them

:func:`load_exported` reads those files with only Keras, ``dpcnn.model.layers`` (the custom
layers, registered on import) and ``dpcnn.data.vocab``, and applies the test-time features of
PAPER_SPEC §6 exactly as :class:`dpcnn.encoders.Encoders` does: the pre-resize of
``data.resize_shorter`` (``eval.image_mode`` full or center), the spatial sum, the flip
(``eval.flip``), every position shift of a caption (``eval.all_shifts``), L2 normalisation.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpcnn.data.vocab import expand_shifts
from dpcnn.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

IMAGE_ENCODER = "image_encoder.keras"
TEXT_ENCODER = "text_encoder.keras"
VOCAB = "vocab.json"
CONFIG = "config.json"
README = "README.md"


def _save_model(model, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` file in the same folder, then rename (atomic)."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_run(run: Path, out: Path, stage: int | None = None) -> str:
    """``dpcnn export``: write the five files of the module docstring to ``out``; returns a summary."""
    from dpcnn.config import Config
    from dpcnn.prepare import ensure_prepared
    from dpcnn.report import check_run, resolve_stage
    from dpcnn.training import load_trained

    run, out = Path(run), Path(out)
    check_run(run)
    stage = resolve_stage(run, stage)
    cfg = Config.load(run / "config.json")
    data = ensure_prepared(cfg, progress=False)
    cfg, model, data = load_trained(run, stage, data=data)
    out.mkdir(parents=True, exist_ok=True)
    _save_model(model.image_encoder, out / IMAGE_ENCODER)
    _save_model(model.text_encoder, out / TEXT_ENCODER)
    data.vocab.save(out / VOCAB)
    atomic_write_json(out / CONFIG, cfg.to_dict())
    atomic_write_text(out / README, readme_text(cfg.to_dict(), run, stage, len(data.vocab)))
    files = [out / n for n in (IMAGE_ENCODER, TEXT_ENCODER, VOCAB, CONFIG, README)]
    return f"exported stage {stage} of {run}:\n" + "\n".join(f"  {f}" for f in files)


def readme_text(cfg: dict, run: Path, stage: int, vocab_size: int) -> str:
    """OUT/README.md: what the files are, how to load them, the input formats."""
    d, e, m = cfg["data"], cfg["eval"], cfg["model"]
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    resize = ("kept at its size" if d["resize_shorter"] <= 0 else
              f"resized to {d['resize_shorter']}×{d['resize_shorter']}" if d["resize_square"] else
              f"resized so its shorter side is {d['resize_shorter']} px (bicubic, antialiased)")
    if e["image_mode"] == "center":
        resize += f", then centre-cropped to {d['image_size']}×{d['image_size']}"
    flip = ", plus the same for its horizontal flip" if e["flip"] else ""
    shifts = ("every valid position shift (start 0 … L − length), the outputs summed" if e["all_shifts"]
              else "start 0 (left-aligned)")
    dim, length = m["embed_dim"], d["max_len"]
    return f"""# dpcnn exported encoders

Dual-Path CNN (Zheng et al., arXiv 1711.05535) image and text encoders, exported from the run
`{run}` (stage {stage}, config `{cfg['name']}`) on {date}. Joint space: {dim} dimensions.

| file | what |
|---|---|
| `{IMAGE_ENCODER}` | pixels float [B, H, W, 3], RGB 0-255, any size → `fc1_1bn` map [B, h, w, {dim}] |
| `{TEXT_ENCODER}` | tokens int32 [B, {length}] (ids 1..{vocab_size}, 0 = empty slot) → `fc5_2bn` [B, {dim}] |
| `{VOCAB}` | the dictionary (`words[i]` has id i+1) and its tokenisation settings |
| `{CONFIG}` | the run's configuration (test-time settings in `eval`, L = `data.max_len`) |

The pixel mean is subtracted inside the image encoder: give it raw RGB values in 0-255.

## The easy way

```python
from dpcnn.export import load_exported

model = load_exported("path/to/this/folder")
image_feats = model.encode_images(images)        # float [B, H, W, 3] RGB 0-255 (or a list of [H, W, 3])
text_feats = model.encode_texts(["a red circle above a blue square"])
scores = image_feats @ text_feats.T              # cosine similarity
```

`load_exported` uses only these files, Keras, `dpcnn.model.layers` and `dpcnn.data.vocab` (no
training code) and applies the paper's test-time features with this run's settings: each image
{resize}, its map summed over positions{flip}, then L2-normalised; each caption encoded at
{shifts}, then L2-normalised.

## By hand

```python
import keras
import numpy as np
import dpcnn.model.layers  # registers the custom layers (PixelNormalization, WordEmbedding, …)
from dpcnn.data.vocab import Vocabulary

image_encoder = keras.saving.load_model("{IMAGE_ENCODER}", safe_mode=True)
text_encoder = keras.saving.load_model("{TEXT_ENCODER}", safe_mode=True)
vocab = Vocabulary.load("{VOCAB}")

images = np.zeros((1, 256, 320, 3), "float32")                # RGB 0-255, any size
maps = image_encoder(images, training=False)                  # [B, h, w, D]
img = np.asarray(maps).sum(axis=(1, 2))                       # sum over positions
img = img / np.linalg.norm(img, axis=1, keepdims=True)        # L2-normalise

tokens, lengths = vocab.encode_many(["a red circle"], {length})  # int32 [B, L], left-aligned
txt = np.asarray(text_encoder(tokens, training=False))        # [B, D]
txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
scores = img @ txt.T
```

(`load_exported` adds the pre-resize, the flip and the position shifts of the paper's test-time
features on top of these lines.)
"""


@dataclass
class ExportedModel:
    """The exported encoders with the run's test-time feature settings.

    ``encode_images`` → float32 [B, D], ``encode_texts`` / ``encode_tokens`` → float32 [M, D],
    all L2-normalised; score = dot product.
    """

    image_encoder: object
    text_encoder: object
    vocab: object
    config: dict

    @property
    def max_len(self) -> int:
        return int(self.config["data"]["max_len"])

    # -- images --------------------------------------------------------------------------------
    def _preprocess(self, image: np.ndarray):
        """One RGB 0-255 image [H, W, 3] → float32 [h, w, 3] as ``dpcnn.data.pipeline.eval_image``."""
        import tensorflow as tf

        d, mode = self.config["data"], self.config["eval"]["image_mode"]
        x = tf.convert_to_tensor(np.asarray(image), tf.float32)
        if x.shape.rank != 3 or x.shape[-1] != 3:
            raise ValueError(f"an image must be [H, W, 3] RGB, got shape {tuple(x.shape)}")
        shorter = int(d["resize_shorter"])
        if shorter > 0:
            h, w = int(x.shape[0]), int(x.shape[1])
            if d["resize_square"]:
                size = [shorter, shorter]
            elif mode == "center":
                shape = tf.constant([h, w], tf.float32)
                size = tf.cast(tf.round(shape * shorter / tf.reduce_min(shape)), tf.int32)
            else:
                scale = shorter / min(h, w)
                size = [max(1, round(h * scale)), max(1, round(w * scale))]
            x = tf.image.resize(x, size, method="bicubic", antialias=True)
        if mode == "center":
            x = tf.image.resize_with_crop_or_pad(x, int(d["image_size"]), int(d["image_size"]))
        return tf.clip_by_value(x, 0.0, 255.0)

    def _image_sums(self, batch) -> np.ndarray:
        import tensorflow as tf

        feats = tf.reduce_sum(tf.cast(self.image_encoder(batch, training=False), tf.float32), axis=(1, 2))
        if self.config["eval"]["flip"]:
            flipped = tf.reverse(batch, axis=[2])
            feats += tf.reduce_sum(tf.cast(self.image_encoder(flipped, training=False), tf.float32), axis=(1, 2))
        return feats.numpy()

    def encode_images(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """RGB 0-255 images → float32 [B, D], L2-normalised.

        ``images``: float/uint8 [B, H, W, 3], one [H, W, 3] image, or a list of [H_i, W_i, 3]
        images of any sizes (batched by their pre-resized size).
        """
        import tensorflow as tf

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = images[None]
        if len(images) == 0:
            raise ValueError("encode_images: no images given")
        batch_size = batch_size or int(self.config["eval"]["batch_size"])
        prepared = [self._preprocess(im) for im in images]
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(prepared):
            groups.setdefault(tuple(x.shape), []).append(i)
        out: np.ndarray | None = None
        for index in groups.values():
            for start in range(0, len(index), batch_size):
                part = index[start:start + batch_size]
                feats = self._image_sums(tf.stack([prepared[i] for i in part]))
                if out is None:
                    out = np.zeros((len(prepared), feats.shape[1]), np.float32)
                out[part] = feats
        return _normalize(out)

    # -- texts ---------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Captions → float32 [M, D], L2-normalised. ValueError for a caption with no in-vocabulary word."""
        if isinstance(texts, str):
            raise TypeError("encode_texts expects a list of captions, got one string: wrap it in a list")
        tokens, lengths = self.vocab.encode_many(list(texts), self.max_len)
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            shown = "; ".join(f"{i}: {texts[i]!r} → tokens {self.vocab.tokenize(texts[i])}" for i in empty[:5])
            raise ValueError(f"{empty.size} caption(s) have no word in the vocabulary ({len(self.vocab)} words), "
                             f"so they have no feature: {shown}")
        return self.encode_tokens(tokens, lengths)

    def encode_tokens(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Left-aligned ids int [M, L] and lengths int [M] → float32 [M, D], L2-normalised."""
        tokens = np.asarray(tokens, np.int32)
        lengths = np.asarray(lengths, np.int32)
        if tokens.ndim != 2 or tokens.shape[1] != self.max_len or lengths.shape != (tokens.shape[0],):
            raise ValueError(f"tokens must be [M, {self.max_len}] with lengths [M], "
                             f"got {tokens.shape} and {lengths.shape}")
        shifted, owner = expand_shifts(tokens, lengths, bool(self.config["eval"]["all_shifts"]))
        batch = int(self.config["eval"]["batch_size"]) * 8
        out = np.zeros((len(tokens), 0), np.float64)
        for start in range(0, len(shifted), batch):
            feats = np.asarray(self.text_encoder(shifted[start:start + batch], training=False), np.float32)
            if out.shape[1] == 0:
                out = np.zeros((len(tokens), feats.shape[1]), np.float64)
            owners, first = np.unique(owner[start:start + batch], return_index=True)  # owner is sorted
            out[owners] += np.add.reduceat(feats.astype(np.float64), first, axis=0)
        return _normalize(out.astype(np.float32))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(1e-8 + np.sum(x * x, axis=1, keepdims=True))


def load_exported(out: str | Path) -> ExportedModel:
    """Load an export folder with Keras' safe mode (needs only ``dpcnn.model.layers`` and ``dpcnn.data.vocab``)."""
    import keras

    import dpcnn.model.layers  # noqa: F401  (registers the custom layers)
    from dpcnn.data.vocab import Vocabulary

    out = Path(out)
    missing = [n for n in (IMAGE_ENCODER, TEXT_ENCODER, VOCAB, CONFIG) if not (out / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{out} is not a complete dpcnn export (missing {', '.join(missing)}): "
                                f"export it again with `dpcnn export --run DIR --out {out}`")
    with open(out / CONFIG, encoding="utf-8") as f:
        config = json.load(f)
    return ExportedModel(
        image_encoder=keras.saving.load_model(str(out / IMAGE_ENCODER), safe_mode=True),
        text_encoder=keras.saving.load_model(str(out / TEXT_ENCODER), safe_mode=True),
        vocab=Vocabulary.load(out / VOCAB),
        config=config,
    )
