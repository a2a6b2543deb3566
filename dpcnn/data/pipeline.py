"""tf.data pipelines of the two training stages.

Every random choice (image order, caption, position shift, crop, flip, negatives) is drawn with
stateless random ops keyed by (seed, epoch) when an epoch's plan is made, so the batches of step
k of epoch e are a pure function of the config: a resumed run sees exactly the batches an
uninterrupted run would, and ``skip_steps`` starts mid-epoch without decoding the skipped images.

Training images (PAPER_SPEC §1): decode (or take the decoded image from memory with
``data.cache_images``) → random crop (area 64-100 % of the largest crop of an aspect ratio drawn
log-uniformly in [3/4, 4/3], as ``vl_imreadjpeg.cu`` samples it; CUHK-PEDES: drawn in the
256 × 256 squashed frame) → bicubic resize with antialiasing to S×S → optional horizontal flip.
Pixels stay 0-255 RGB floats; the mean is subtracted inside the model. The crop boxes, the flips
and the clipping are computed for the whole batch at once; only the crop-and-resize is per image.

Captions (PAPER_SPEC §2.1): left-aligned ids, shifted to a random start in {0 … L − len}.
Stage-II candidate negatives come from :mod:`dpcnn.data.negatives` (the pool rule).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dpcnn.config import Config, DataConfig
from dpcnn.data import negatives as candidate_pool
from dpcnn.data.images import decode_image
from dpcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
CACHE_LIMIT_BYTES = 4 << 30
"""``data.cache_images`` keeps the decoded training images only when they fit in this many bytes."""
AUG = 5
"""Uniform draws per training image: aspect, crop area, crop y, crop x, flip."""


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def crop_side(uniform, crop_size):
    """Side fraction of the crop from a U[0, 1) draw: √(lo² + u·(hi² − lo²)), so the crop's *area*
    is uniform (``vl_imreadjpeg.cu``: ``size = sqrt(z * (b - a) + a)``, a = max², b = min²)."""
    lo2, hi2 = float(crop_size[0]) ** 2, float(crop_size[1]) ** 2
    return tf.sqrt(lo2 + uniform * (hi2 - lo2))


def crop_boxes(heights, widths, uniform, crop_size, crop_aspect, square: int = 0):
    """Crops (y0, x0, h, w) of images [heights, widths] as ``vl_imreadjpeg`` draws them with
    ``CropSize``, ``CropAnisotropy`` and ``CropLocation random`` (MatConvNet ``vl_imreadjpeg.cu``).

    heights, widths int [...]; uniform float [..., 4] (aspect, area, y, x draws in [0, 1)) →
    four int32 [...]. The aspect a = W/H is log-uniform in ``crop_aspect``; the largest a-shaped
    box that fits is scaled by :func:`crop_side`; the position is uniform over whole pixels. With
    ``square`` = S > 0 the box is drawn in the S × S image that the official code crops
    (CUHK-PEDES ``resize_image.m`` squashes every image to 256 × 256) and mapped back onto the
    original image, so it covers the same part of the picture.
    """
    heights, widths = tf.cast(heights, tf.int32), tf.cast(widths, tf.int32)
    if square:
        frame_h = frame_w = tf.fill(tf.shape(heights), tf.constant(int(square), tf.int32))
    else:
        frame_h, frame_w = heights, widths
    fh, fw = tf.cast(frame_h, tf.float32), tf.cast(frame_w, tf.float32)
    log_lo, log_hi = math.log(crop_aspect[0]), math.log(crop_aspect[1])
    aspect = tf.exp(log_lo + uniform[..., 0] * (log_hi - log_lo))
    box_w = tf.minimum(fw, fh * aspect)
    box_h = box_w / aspect
    side = crop_side(uniform[..., 1], crop_size)
    ch = tf.clip_by_value(tf.cast(tf.round(box_h * side), tf.int32), 1, frame_h)
    cw = tf.clip_by_value(tf.cast(tf.round(box_w * side), tf.int32), 1, frame_w)
    y0 = tf.minimum(tf.cast(tf.floor(uniform[..., 2] * tf.cast(frame_h - ch + 1, tf.float32)), tf.int32), frame_h - ch)
    x0 = tf.minimum(tf.cast(tf.floor(uniform[..., 3] * tf.cast(frame_w - cw + 1, tf.float32)), tf.int32), frame_w - cw)
    if not square:
        return y0, x0, ch, cw

    def to_image(start, size, frame, limit):
        scale = tf.cast(limit, tf.float32) / tf.cast(frame, tf.float32)
        lo = tf.clip_by_value(tf.cast(tf.round(tf.cast(start, tf.float32) * scale), tf.int32), 0, limit - 1)
        hi = tf.cast(tf.round(tf.cast(start + size, tf.float32) * scale), tf.int32)
        return lo, tf.clip_by_value(hi - lo, 1, limit - lo)

    (y0, ch), (x0, cw) = to_image(y0, ch, frame_h, heights), to_image(x0, cw, frame_w, widths)
    return y0, x0, ch, cw


def crop_and_resize(image, box, size: int):
    """uint8 [h, w, 3], box int [4] (y0, x0, ch, cw) → float32 [size, size, 3] (bicubic, antialiased)."""
    crop = tf.image.crop_to_bounding_box(image, box[0], box[1], box[2], box[3])
    out = tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bicubic", antialias=True)
    return tf.ensure_shape(out, [size, size, 3])


def augment(images_of, heights, widths, uniform, data: DataConfig):
    """A batch of training images: images_of(i) → uint8 [h_i, w_i, 3] for i < B; sizes int [B];
    uniform float [B, 5] → float32 [B, S, S, 3] in 0-255 (PAPER_SPEC §1)."""
    square = data.resize_shorter if data.resize_square else 0
    boxes = tf.stack(crop_boxes(heights, widths, uniform[:, :4], data.crop_size, data.crop_aspect, square), axis=1)
    out = tf.map_fn(lambda args: crop_and_resize(images_of(args[0]), args[1], data.image_size),
                    (tf.range(tf.shape(boxes)[0]), boxes),
                    fn_output_signature=tf.TensorSpec([data.image_size, data.image_size, 3], tf.float32),
                    parallel_iterations=16)
    if data.flip:
        out = tf.where((uniform[:, 4] < 0.5)[:, None, None, None], tf.reverse(out, axis=[2]), out)
    return tf.clip_by_value(out, 0.0, 255.0)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------


def shift_tokens(tokens: tf.Tensor, starts: tf.Tensor) -> tf.Tensor:
    """Move each left-aligned caption to start at ``starts``: int [N, L], int [N] → int [N, L].

    Valid starts are 0 … L − len (the words stay contiguous, zeros elsewhere).
    """
    length = tf.shape(tokens)[1]
    index = tf.math.floormod(tf.range(length)[None, :] - starts[:, None], length)
    return tf.gather(tokens, index, batch_dims=1)


def random_starts(lengths: tf.Tensor, max_len: int, uniform: tf.Tensor) -> tf.Tensor:
    """Uniform start positions in {0 … L − len}: lengths int [N], uniform float [N] in [0,1) → int [N]."""
    slots = tf.cast(max_len - lengths + 1, tf.float32)
    return tf.minimum(tf.cast(tf.floor(uniform * slots), tf.int32), max_len - lengths)


# --------------------------------------------------------------------------------------------
# The split as tensors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionGroups:
    """For each training image, the captions a training sample may draw (CSR layout).

    PAPER_SPEC §3.1: an image's own captions; CUHK-PEDES: every caption of the same person ID.
    offsets int [N+1], members int [K] (caption indices).
    """

    offsets: np.ndarray
    members: np.ndarray

    @staticmethod
    def from_split(split, by_identity: bool) -> CaptionGroups:
        key = split.identities if by_identity else np.arange(split.num_images)
        caption_key = key[split.caption_image]
        order = np.argsort(caption_key, kind="stable")
        starts = np.searchsorted(caption_key[order], key, side="left")
        ends = np.searchsorted(caption_key[order], key, side="right")
        if np.any(ends <= starts):
            missing = np.nonzero(ends <= starts)[0][:5]
            raise DataError(f"training images without captions (indices {missing.tolist()}): run `dpcnn prepare` again")
        members = np.concatenate([order[s:e] for s, e in zip(starts, ends)]).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int32)
        return CaptionGroups(offsets=offsets, members=members)


def _decode_all(paths: np.ndarray, sizes: np.ndarray) -> tuple[tf.Tensor, tf.Tensor] | None:
    """Every image decoded once into one flat uint8 tensor with offsets, or None if too large."""
    total = int(np.sum(sizes[:, 0].astype(np.int64) * sizes[:, 1] * 3))
    if total > CACHE_LIMIT_BYTES:
        log.warning("data.cache_images: the %d training images need %.1f GB decoded, more than %.1f GB: "
                    "decoding them every epoch instead", len(paths), total / 1e9, CACHE_LIMIT_BYTES / 1e9)
        return None
    ds = tf.data.Dataset.from_tensor_slices(paths.astype(str)).map(
        lambda p: tf.reshape(decode_image(p), [-1]), num_parallel_calls=AUTOTUNE, deterministic=True)
    flat = np.concatenate(list(ds.as_numpy_iterator()))
    offsets = np.concatenate([[0], np.cumsum(sizes[:, 0].astype(np.int64) * sizes[:, 1] * 3)])
    if len(flat) != offsets[-1]:
        raise DataError("a training image's decoded size differs from the one prepare recorded: run `dpcnn prepare` again")
    log.info("decoded %d training images into memory (%.1f MB)", len(paths), total / 1e6)
    return tf.constant(flat), tf.constant(offsets)


class _Tables:
    """A split's arrays as constant tensors for the graph (and, with the cache, its pixels)."""

    def __init__(self, split, by_identity: bool, cache: bool = False):
        self.n = split.num_images
        self.paths = tf.constant(split.paths.astype(str))
        self.sizes = tf.constant(split.sizes, tf.int32)
        self.labels = tf.constant(split.labels, tf.int32)
        self.identities = tf.constant(split.identities, tf.int32)
        self.tokens = tf.constant(split.tokens, tf.int32)
        self.lengths = tf.constant(split.lengths, tf.int32)
        groups = CaptionGroups.from_split(split, by_identity)
        self.offsets = tf.constant(groups.offsets, tf.int32)
        self.members = tf.constant(groups.members, tf.int32)
        self.pixels = _decode_all(split.paths, split.sizes) if cache else None

    def image(self, index):
        """uint8 [h, w, 3] of training image ``index`` (from memory or the file)."""
        if self.pixels is None:
            return decode_image(tf.gather(self.paths, index))
        flat, offsets = self.pixels
        size = tf.gather(self.sizes, index)
        return tf.reshape(flat[tf.gather(offsets, index):tf.gather(offsets, index + 1)], [size[0], size[1], 3])

    def images(self, indices, uniform, data: DataConfig):
        """Augmented training images: indices int [B], uniform float [B, 5] → float32 [B, S, S, 3]."""
        sizes = tf.gather(self.sizes, indices)
        return augment(lambda i: self.image(indices[i]), sizes[:, 0], sizes[:, 1], uniform, data)

    def pick_captions(self, images, uniform):
        """A random caption from each image's group: int [...], float [...] → int [...]."""
        start = tf.gather(self.offsets, images)
        count = tf.gather(self.offsets, images + 1) - start
        pick = tf.minimum(tf.cast(tf.floor(uniform * tf.cast(count, tf.float32)), tf.int32), count - 1)
        return tf.gather(self.members, start + pick)

    def tokens_of(self, captions, uniform, cfg: Config):
        """The (position-shifted) ids of ``captions``: int [...] → int [..., L]."""
        tokens = tf.gather(self.tokens, captions)
        if not cfg.train.position_shift:
            return tokens
        return shift_tokens(tokens, random_starts(tf.gather(self.lengths, captions), cfg.data.max_len, uniform))


def _epoch_permutation(n: int, seed: int, epoch) -> tf.Tensor:
    return tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch])))


def _seed(seed: int, salt: int, epoch) -> tf.Tensor:
    return tf.stack([tf.constant(seed * 7919 + salt, tf.int64), epoch])


def steps_per_epoch(num_images: int, batch_size: int, configured: int = 0) -> int:
    """One epoch = every training image once (PAPER_SPEC §5), in whole batches; or the configured count."""
    if configured > 0:
        return configured
    if num_images < batch_size:
        raise ConfigError(f"{num_images} training images cannot fill one batch of {batch_size}: lower train.batch_size")
    return num_images // batch_size


def _batches(plan, load, first_epoch: int, last_epoch: int, skip_steps: int) -> tf.data.Dataset:
    """The epochs' plans, then each step's batch. Distributed, every global batch is split across
    the replicas of every worker (DATA sharding: each worker builds the same plan)."""
    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(plan).skip(skip_steps)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE).with_options(options)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def stage1_dataset(split, cfg: Config, first_epoch: int, last_epoch: int, skip_steps: int = 0,
                   by_identity: bool = False) -> tf.data.Dataset:
    """Stage-I batches for epochs [first_epoch, last_epoch), starting ``skip_steps`` into the first.

    Each element: {"images": float32 [B, S, S, 3], "tokens": int32 [B, L], "labels": int32 [B]}.
    """
    tables = _Tables(split, by_identity, cfg.data.cache_images)
    batch, seed = cfg.train.batch_size, cfg.train.seed
    steps = steps_per_epoch(tables.n, batch, cfg.train.steps_per_epoch)

    def plan(epoch):
        perm = _epoch_permutation(tables.n, seed, epoch)
        return tf.data.Dataset.from_tensor_slices({
            "images": tf.reshape(tf.gather(perm, tf.range(steps * batch) % tables.n), [steps, batch]),
            "u_caption": tf.random.stateless_uniform([steps, batch], _seed(seed, 1, epoch)),
            "u_shift": tf.random.stateless_uniform([steps, batch], _seed(seed, 2, epoch)),
            "u_aug": tf.random.stateless_uniform([steps, batch, AUG], _seed(seed, 3, epoch)),
        })

    def load(p):
        return {
            "images": tables.images(p["images"], p["u_aug"], cfg.data),
            "tokens": tables.tokens_of(tables.pick_captions(p["images"], p["u_caption"]), p["u_shift"], cfg),
            "labels": tf.gather(tables.labels, p["images"]),
        }

    return _batches(plan, load, first_epoch, last_epoch, skip_steps)


def stage2_dataset(split, cfg: Config, first_epoch: int, last_epoch: int, skip_steps: int = 0,
                   by_identity: bool = False) -> tf.data.Dataset:
    """Stage-II batches (PAPER_SPEC §4.2) for epochs [first_epoch, last_epoch).

    Per step, from the epoch's permutation: A = B/2 anchors and A random negative images; one
    caption of each anchor (position-shifted); the candidate pool of :mod:`dpcnn.data.negatives`
    (``hard``: P captions of images outside the batch, each with its own shift; ``random``: one
    caption and one image of another identity per anchor, P = A, row i belongs to anchor i).
    Element: {"anchor_images", "negative_images": [A, S, S, 3], "anchor_labels",
    "negative_labels": [A], "positive_tokens": [A, L], "pool_tokens": [P, L], "pool_labels": [P]}.
    """
    tables = _Tables(split, by_identity, cfg.data.cache_images)
    batch, n = cfg.train.batch_size, tables.n
    half = batch // 2
    if n <= batch:
        raise ConfigError(f"stage II needs more training images ({n}) than a batch ({batch}): negatives come from outside the batch; lower train.batch_size")
    steps = steps_per_epoch(n, batch, cfg.train.steps_per_epoch)
    seed = cfg.train.seed + 1000
    random_mining = cfg.train.negative_mining == "random"
    pool, tries = (half if random_mining else cfg.train.negative_pool), 8

    def plan(epoch):
        perm = _epoch_permutation(n, seed, epoch)
        base = tf.range(steps) * batch
        anchors = tf.gather(perm, (base[:, None] + tf.range(half)[None, :]) % n)
        negatives = tf.gather(perm, (base[:, None] + half + tf.range(half)[None, :]) % n)
        if random_mining:
            anchor_ids = tf.gather(tables.identities, anchors)
            negatives = candidate_pool.different_identity(perm, base, batch, n, tf.random.stateless_uniform(
                [steps, half, tries], _seed(seed, 5, epoch)), tables.identities, anchor_ids)
            pool_images = candidate_pool.different_identity(perm, base, batch, n, tf.random.stateless_uniform(
                [steps, half, tries], _seed(seed, 6, epoch)), tables.identities, anchor_ids)
        else:
            pool_images = candidate_pool.pool_images(perm, base, batch, n, tf.random.stateless_uniform(
                [steps, pool], _seed(seed, 4, epoch)))
        return tf.data.Dataset.from_tensor_slices({
            "anchors": anchors, "negatives": negatives, "pool_images": pool_images,
            "u_pos": tf.random.stateless_uniform([steps, half], _seed(seed, 7, epoch)),
            "u_pos_shift": tf.random.stateless_uniform([steps, half], _seed(seed, 8, epoch)),
            "u_pool": tf.random.stateless_uniform([steps, pool], _seed(seed, 9, epoch)),
            "u_pool_shift": tf.random.stateless_uniform([steps, pool], _seed(seed, 10, epoch)),
            "u_aug": tf.random.stateless_uniform([steps, batch, AUG], _seed(seed, 11, epoch)),
        })

    def load(p):
        images = tables.images(tf.concat([p["anchors"], p["negatives"]], 0), p["u_aug"], cfg.data)
        return {
            "anchor_images": images[:half],
            "negative_images": images[half:],
            "anchor_labels": tf.gather(tables.labels, p["anchors"]),
            "negative_labels": tf.gather(tables.labels, p["negatives"]),
            "positive_tokens": tables.tokens_of(tables.pick_captions(p["anchors"], p["u_pos"]), p["u_pos_shift"], cfg),
            "pool_tokens": tables.tokens_of(tables.pick_captions(p["pool_images"], p["u_pool"]), p["u_pool_shift"], cfg),
            "pool_labels": tf.gather(tables.labels, p["pool_images"]),
        }

    return _batches(plan, load, first_epoch, last_epoch, skip_steps)
