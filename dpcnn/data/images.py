"""Image files: one decoder for training, evaluation and search, and the check ``prepare`` runs.

:func:`decode_image` uses TensorFlow's decoders for JPEG, PNG, GIF (first frame), BMP and WebP,
recognised by their first bytes, and Pillow for every other format Pillow reads (TIFF, …), so a
file that Pillow opens is never an exclusion. :func:`check_images` decodes every file once with
that decoder, in parallel, and returns the good ones' sizes and mean colours and, for the others,
a reason a person can read ("missing image file", "corrupt image: …", "not an image …").
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
"""What a gallery folder is searched for (any case)."""


@dataclass(frozen=True)
class ImageInfo:
    """A decodable image: height, width and its mean RGB (0-255)."""

    height: int
    width: int
    mean_rgb: tuple[float, float, float]


_TF_SIGNATURES = ((0, b"\xff\xd8\xff"), (0, b"GIF"), (0, b"\x89PNG"), (0, b"BM"))
"""(offset, bytes) that mark a JPEG, GIF, PNG or BMP file (WebP: ``RIFF`` + ``WEBP`` at 8)."""


def _tf_decodable(contents: tf.Tensor) -> tf.Tensor:
    """True if the bytes start like a JPEG, PNG, GIF, BMP or WebP file (TensorFlow decodes those)."""
    known = tf.constant(False)
    for offset, magic in _TF_SIGNATURES:
        known = tf.logical_or(known, tf.equal(tf.strings.substr(contents, offset, len(magic)), magic))
    webp = tf.logical_and(tf.equal(tf.strings.substr(contents, 0, 4), b"RIFF"),
                          tf.equal(tf.strings.substr(contents, 8, 4), b"WEBP"))
    return tf.logical_or(known, webp)


def _starts_like_tf_format(head: bytes) -> bool:
    """:func:`_tf_decodable` on plain bytes (the first 12 of a file)."""
    return any(head[o:o + len(m)] == m for o, m in _TF_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def pillow_rgb(contents: bytes) -> np.ndarray:
    """Any format Pillow reads → uint8 [h, w, 3] RGB (the first frame)."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(contents))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """File path → uint8 [h, w, 3] RGB (grey, CMYK, palette, 16-bit and alpha are converted)."""
    contents = tf.io.read_file(path)

    def with_pillow():
        image = tf.numpy_function(pillow_rgb, [contents], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    def with_tensorflow():
        # JPEG with libjpeg's accurate integer IDCT (JDCT_ISLOW), the default of libjpeg, MATLAB's
        # imread / MatConvNet and Pillow; TensorFlow's own default is the fast, less exact one.
        return tf.cond(tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff"),
                       lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
                       lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))

    return tf.cond(_tf_decodable(contents), with_tensorflow, with_pillow)


def _info(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    image = decode_image(path)
    return tf.shape(image)[:2], tf.reduce_mean(tf.cast(image, tf.float32), axis=(0, 1))


def readable_reason(error: BaseException) -> str:
    """Why a file could not be decoded, in words: TensorFlow's op-wrapper noise removed."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text, flags=re.S)
    text = re.sub(r"^.*?(UnidentifiedImageError|OSError|ValueError): ", "", text.strip().splitlines()[0] if text.strip() else "")
    return text.strip() or type(error).__name__


def _not_an_image(head: bytes) -> str:
    """"not an image (…)" with what the first bytes look like (text, or their hex)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and text.isprintable():
        return f"not an image (text starting {text[:24]!r})"
    return f"not an image (unknown format, first bytes {head[:8].hex(' ')})"


def _why_not(path: str) -> str:
    """Why ``path`` fails to decode, found by decoding it once more outside the pipeline.

    TensorFlow's decoder for the formats it reads (its error message cleaned), Pillow for the rest:
    a file neither recognises is "not an image (…)", one they recognise but fail on is "corrupt image: …".
    """
    from PIL import UnidentifiedImageError

    with open(path, "rb") as f:
        contents = f.read()
    if _starts_like_tf_format(contents[:12]):
        try:
            tf.io.decode_image(contents, channels=3, expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            return f"corrupt image: {readable_reason(e)}"
        return "could not be decoded in the pipeline"
    try:
        pillow_rgb(contents)
    except UnidentifiedImageError:
        return _not_an_image(contents[:32])
    except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for damaged files
        return f"corrupt image: {readable_reason(e)}"
    return "could not be decoded in the pipeline"


def check_images(paths: Sequence[str], progress: bool = True) -> tuple[dict[int, ImageInfo], dict[int, str]]:
    """Decode ``paths``: ({index: ImageInfo} for the good images, {index: reason} for the others)."""
    failures: dict[int, str] = {}
    present = []
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            failures[i] = "missing image file"
        elif os.path.getsize(p) == 0:
            failures[i] = "empty image file"
        else:
            present.append(i)
    good: dict[int, ImageInfo] = {}
    if present:
        index = np.asarray(present, dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((index, np.asarray(paths, dtype=object)[index].astype(str)))
        ds = ds.map(lambda i, p: (i, *_info(p)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        ds = ds.ignore_errors().prefetch(tf.data.AUTOTUNE)
        for i, shape, mean in tqdm(ds.as_numpy_iterator(), total=len(present), desc="checking images",
                                   unit="img", disable=not progress, leave=False):
            h, w = int(shape[0]), int(shape[1])
            if h < 1 or w < 1:
                failures[int(i)] = f"image has size {h}x{w}"
                continue
            good[int(i)] = ImageInfo(h, w, (float(mean[0]), float(mean[1]), float(mean[2])))
    for i in present:
        if i not in good and i not in failures:
            failures[i] = _why_not(paths[i])
    if failures:
        log.warning("%d of %d images cannot be used", len(failures), len(paths))
    return good, failures


def find_images(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder`` (recursively, by suffix, any case), sorted, absolute."""
    from pathlib import Path

    from dpcnn.errors import DataNotFoundError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"image folder {folder} does not exist (or is not a folder)")
    return sorted(str(p.resolve()) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
