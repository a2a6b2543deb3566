"""Decode every image once, with the same decoder training uses, and report the ones that fail.

Used by ``dpcnn prepare`` so that a corrupt or missing image is found and excluded there, never
mid-epoch. The fast path is a parallel tf.data pipeline; images that fail in it are decoded
once more, eagerly, to record the decoder's error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dpcnn.data.pipeline import decode_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageInfo:
    """A decodable image: height, width and its mean RGB (0-255)."""

    height: int
    width: int
    mean_rgb: tuple[float, float, float]


def _info(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    image = decode_image(path)
    shape = tf.shape(image)[:2]
    mean = tf.reduce_mean(tf.cast(image, tf.float32), axis=(0, 1))
    return shape, mean


def check_images(paths: Sequence[str], progress: bool = True) -> tuple[dict[int, ImageInfo], dict[int, str]]:
    """Decode ``paths``: returns ({index: ImageInfo} for good images, {index: reason} for the rest)."""
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
        if i in good or i in failures:
            continue
        try:
            _info(tf.constant(paths[i]))
            failures[i] = "could not be decoded in the pipeline"
        except (tf.errors.OpError, ValueError) as e:  # the decoder's own message
            message = getattr(e, "message", str(e)).strip().splitlines()[0]
            failures[i] = f"corrupt image: {message}"
    if failures:
        log.warning("%d of %d images cannot be used (see data_report.json)", len(failures), len(paths))
    return good, failures
