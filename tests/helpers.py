"""Shared test helpers (as keras-hub's ``test_case.py`` serves every model's tests).

- :data:`ROOT`: the repository.
- Builders: :func:`dual_path` (a DualPath from sizes alone, optionally with distinctive BN running
  statistics so that inference and training mode differ) and :func:`random_batches` (one stage-I
  and one stage-II batch of random pixels and captions, no data files).
- References: the test-time features recomputed by hand (the raw encoders on decoded pixels,
  summed by hand, PAPER_SPEC §6), so a test that compares the library's features with them
  compares two independent computations; :func:`check_search_output` for ``model.search``'s print.
- A .keras round trip, the metrics schema check, ``history.csv`` and the measured tolerance of
  per-replica training (:data:`MIRRORED_TOLERANCE`).

TensorFlow and Keras are imported inside the functions that need them: test files that only need
:data:`ROOT` stay quick to collect.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
"""The repository (the folder holding ``dpcnn/`` and ``tests/``)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MIRRORED_TOLERANCE = {"rank_loss": 0.06, "loss": 0.02, "image_loss": 0.015, "text_loss": 0.015}
"""Relative difference allowed between one process and N replicas on the same global batch (BN
statistics per replica, each replica mining in its part of the pool). Measured over train.seed 0-3
(2026-12-01, ``mirrored`` on two logical CPUs): at most 3.9 % for the ranking loss, 1.35 % for
the total, 0.87 % image, 0.79 % text; these allow 1.5 times that."""


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(1e-8 + np.sum(x * x, axis=-1, keepdims=True))


def decoded(path) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3] (Pillow, not the library's decoder)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def reference_image(encoder, pixels: np.ndarray, shorter: int = 0, square: bool = False, flip: bool = False,
                    crop: int = 0) -> np.ndarray:
    """pixels uint8 [H, W, 3] → L2(Σ fc1_1bn map of the pre-resized image (+ Σ of its mirror image))."""
    import tensorflow as tf

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


def round_trip(model, inputs, path):
    """Save ``model`` as .keras, load it back in safe mode, check it gives the same outputs."""
    import keras

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


def history(run: Path) -> list[dict]:
    """A run folder's ``history.csv``: one dict of strings per logged epoch."""
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def search_example(code: str) -> tuple[list[str], str, int]:
    """(image files, caption, k) of a README example that ends in ``print(model.search(texts[0], images, k=k))``."""
    files = ast.literal_eval(re.search(r"encode_images\((\[.*?\])\)", code).group(1))
    (caption,) = ast.literal_eval(re.search(r"encode_texts\((\[.*?\])\)", code).group(1))
    k = int(re.search(r"print\(model\.search\(texts\[0\], images, k=(\d+)\)\)", code).group(1))
    return files, caption, k


def check_search_output(stdout: str, images: np.ndarray, text: np.ndarray, k: int) -> None:
    """The last line of ``print(model.search(text, images, k=k))`` against the reference features
    (images [N, D], text [D]): [(cosine, index)] of the k best images, best first."""
    result = ast.literal_eval(stdout.strip().splitlines()[-1])
    scores = images @ text
    order = np.argsort(-scores, kind="stable")[:k]
    assert [index for _, index in result] == order.tolist(), (result, scores)
    np.testing.assert_allclose([score for score, _ in result], scores[order], atol=1e-4)


# -- builders ---------------------------------------------------------------------------------


def distinctive_bn_statistics(model, rng: np.random.Generator) -> None:
    """Running means N(0, 2²) and variances U[0.2, 4] in every BN layer of ``model``: at
    initialisation (mean 0, variance 1) inference and training mode give nearly the same output;
    with these they differ, so a test can tell which one a computation used."""
    for var in model.non_trainable_variables:
        if "moving_mean" in var.path:
            var.assign(rng.normal(0, 2.0, var.shape).astype("float32"))
        elif "moving_variance" in var.path:
            var.assign(rng.uniform(0.2, 4.0, var.shape).astype("float32"))


def dual_path(cfg, num_classes: int, vocab_size: int, word_dim: int, seed: int = 0,
              pixel_mean=(120.0, 110.0, 100.0), bn_statistics: bool = False):
    """A built DualPath for ``cfg`` from sizes alone (no data files): Keras' initialisers seeded with
    ``seed``, word vectors N(0, 1) drawn from ``default_rng(seed)``, then (``bn_statistics``) the
    :func:`distinctive_bn_statistics` drawn from the same generator."""
    import keras

    from dpcnn.model.dual_path import ModelSizes, build_dual_path

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(vocab_size, word_dim)).astype("float32")
    model = build_dual_path(cfg, ModelSizes(num_classes, vocab_size, word_dim, tuple(pixel_mean), vectors))
    if bn_statistics:
        distinctive_bn_statistics(model, rng)
    return model


def random_batches(seed: int, anchors: int, pool: int, size: int, length: int, vocab: int,
                   min_words: int = 1) -> tuple[dict, dict]:
    """(stage-I batch, stage-II batch) of random data laid out as the pipelines lay them out.

    Stage II: A = ``anchors`` anchor images and A negative images (0-255, [A, size, size, 3]),
    labelled 0 … 2A − 1; one caption per anchor and ``pool`` candidate captions, each of
    ``min_words`` … length − 1 ids in 1 … ``vocab``, left-aligned; the candidates labelled
    2A … 2A + pool − 1, no image of the batch (candidates come from outside it). Stage I: the 2A
    images, the A anchor captions then the first A candidates, labels 0 … 2A − 1.
    """
    rng = np.random.default_rng(seed)

    def images(n):
        return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")

    def tokens(n):
        return np.stack([np.r_[rng.integers(1, vocab + 1, k), np.zeros(length - k, int)]
                         for k in rng.integers(min_words, length, n)]).astype("int32")

    stage2 = {
        "anchor_images": images(anchors), "negative_images": images(anchors),
        "anchor_labels": np.arange(anchors, dtype="int32"),
        "negative_labels": np.arange(anchors, 2 * anchors, dtype="int32"),
        "positive_tokens": tokens(anchors), "pool_tokens": tokens(pool),
        "pool_labels": np.arange(2 * anchors, 2 * anchors + pool, dtype="int32"),
    }
    stage1 = {"images": np.concatenate([stage2["anchor_images"], stage2["negative_images"]]),
              "tokens": np.concatenate([stage2["positive_tokens"], stage2["pool_tokens"][:anchors]]),
              "labels": np.arange(2 * anchors, dtype="int32")}
    return stage1, stage2


@contextlib.contextmanager
def serving(server):
    """Run an ``http.server`` on 127.0.0.1 in a daemon thread for the ``with`` block, then stop it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
