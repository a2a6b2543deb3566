"""Shared test helpers: the test-time features recomputed by hand, a .keras round trip, the schema check.

The references call the raw encoders on decoded pixels and sum by hand (PAPER_SPEC §6), so a test
that compares the library's features with them compares two independent computations.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(1e-8 + np.sum(x * x, axis=-1, keepdims=True))


def decoded(path) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3] (Pillow, not the library's decoder)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def reference_image(encoder, pixels: np.ndarray, shorter: int = 0, square: bool = False, flip: bool = False,
                    crop: int = 0) -> np.ndarray:
    """pixels uint8 [H, W, 3] → L2(Σ fc1_1bn map of the pre-resized image (+ Σ of its mirror image))."""
    x = tf.cast(pixels, tf.float32)[None]
    h, w = pixels.shape[:2]
    if shorter > 0:
        size = (shorter, shorter) if square else (round(h * shorter / min(h, w)), round(w * shorter / min(h, w)))
        x = tf.clip_by_value(tf.image.resize(x, size, method="bicubic", antialias=True), 0, 255)
    if crop:
        x = tf.image.resize_with_crop_or_pad(x, crop, crop)
    feature = encoder(x, training=False).numpy().sum(axis=(0, 1, 2))
    if flip:
        feature += encoder(np.flip(x.numpy(), axis=2), training=False).numpy().sum(axis=(0, 1, 2))
    return normalize(feature)


def reference_text(encoder, ids, max_len: int, all_shifts: bool = True) -> np.ndarray:
    """The in-vocabulary ids of one caption → L2(Σ over starts 0 … L − len of fc5_2bn) (``win = L+1-len``)."""
    rows = []
    for start in range(max_len + 1 - len(ids) if all_shifts else 1):
        row = np.zeros(max_len, "int32")
        row[start:start + len(ids)] = ids
        rows.append(row)
    return normalize(encoder(np.stack(rows), training=False).numpy().sum(axis=0))


def reference_run_features(run_path, paths, captions, stage=None):
    """Features of image files and caption strings for a run folder, by hand from its raw encoders."""
    from dpcnn.run import Run

    run = Run.open(run_path)
    cfg, model = run.config, run.model(stage)
    crop = cfg.data.image_size if cfg.eval.image_mode == "center" else 0
    images = np.stack([reference_image(model.image_encoder, decoded(p), cfg.data.resize_shorter,
                                       cfg.data.resize_square, cfg.eval.flip, crop) for p in paths])
    ids = [run.vocab.encode(c, cfg.data.max_len) for c in captions]
    texts = np.stack([reference_text(model.text_encoder, i, cfg.data.max_len, cfg.eval.all_shifts) for i in ids])
    return images, texts


def round_trip(model: keras.Model, inputs, path) -> keras.Model:
    """Save ``model`` as .keras, load it back in safe mode, check it gives the same outputs."""
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    got, want = again(inputs, training=False), model(inputs, training=False)
    pairs = [(got[k], want[k]) for k in want] if isinstance(want, dict) else [(got, want)]
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    return again


def check_schema(entry: dict) -> None:
    """DESIGN §1: exactly these keys, these types, recalls in 0-100, ranks ≥ 1, rsum the sum."""
    assert set(entry) == {"num_images", "num_captions", "i2t", "t2i", "rsum"}
    assert type(entry["num_images"]) is int and entry["num_images"] > 0
    assert type(entry["num_captions"]) is int and entry["num_captions"] > 0
    for d in ("i2t", "t2i"):
        assert set(entry[d]) == {"r1", "r5", "r10", "medr", "meanr"}
        for k in ("r1", "r5", "r10"):
            assert type(entry[d][k]) is float and 0.0 <= entry[d][k] <= 100.0
        assert entry[d]["r1"] <= entry[d]["r5"] <= entry[d]["r10"]
        assert entry[d]["medr"] >= 1.0 and entry[d]["meanr"] >= 1.0
    assert entry["rsum"] == sum(entry[d][k] for d in ("i2t", "t2i") for k in ("r1", "r5", "r10"))
