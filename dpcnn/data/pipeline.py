"""tf.data pipelines for stage I, stage II and evaluation.

Every random choice (image order, caption, position shift, crop, flip, negatives) is drawn with
stateless random ops keyed by (seed, epoch), so the batches of step k of epoch e are a pure
function of the config: a resumed run sees exactly the batches an uninterrupted run would,
and ``skip_steps`` starts mid-epoch without decoding the skipped images.

Training images (PAPER_SPEC §1): decode → random crop (area 64-100 % of the largest crop of an
aspect ratio drawn log-uniformly in [3/4, 4/3], as ``vl_imreadjpeg.cu`` samples it; CUHK-PEDES:
drawn in the 256 × 256 squashed frame) → bicubic resize to S×S → optional horizontal flip. Pixels stay 0-255 RGB floats; the mean is subtracted inside the model.

Captions (PAPER_SPEC §2.1): left-aligned ids, shifted to a random start in {0 … L − len}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dpcnn.config import Config, DataConfig
from dpcnn.data.prepared import SplitArrays

AUTOTUNE = tf.data.AUTOTUNE


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def decode_image(path: tf.Tensor) -> tf.Tensor:
    """File path → uint8 [h, w, 3] (JPEG, PNG, BMP, GIF first frame; grey and CMYK converted)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def crop_side(uniform, crop_size):
    """Side fraction of the crop from a U[0, 1) draw: √(lo² + u·(hi² − lo²)), so the crop's *area*
    is uniform (``vl_imreadjpeg.cu``: ``size = sqrt(z * (b - a) + a)``, a = max², b = min²)."""
    lo2, hi2 = float(crop_size[0]) ** 2, float(crop_size[1]) ** 2
    return tf.sqrt(lo2 + uniform * (hi2 - lo2))


def random_crop_box(height, width, seed, crop_size, crop_aspect, square: int = 0):
    """A crop (y0, x0, h, w) of an image [height, width] as ``vl_imreadjpeg`` draws it with
    ``CropSize``, ``CropAnisotropy`` and ``CropLocation random`` (MatConvNet ``vl_imreadjpeg.cu``).

    The aspect a = W/H is log-uniform in ``crop_aspect``; the largest a-shaped box that fits is
    scaled by a side fraction √U[lo², hi²] (the *area* fraction is uniform in [lo², hi²]); the
    position is uniform over whole pixels. With ``square`` = S > 0 the box is drawn in the S × S
    image that the official code crops (CUHK-PEDES ``resize_image.m`` squashes every image to
    256 × 256) and mapped back onto the original image, so it covers the same part of the picture.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    if square:
        frame_h = frame_w = tf.constant(int(square), tf.int32)
    else:
        frame_h, frame_w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    fh, fw = tf.cast(frame_h, tf.float32), tf.cast(frame_w, tf.float32)
    log_lo, log_hi = math.log(crop_aspect[0]), math.log(crop_aspect[1])
    aspect = tf.exp(tf.random.stateless_uniform([], seeds[0], log_lo, log_hi))
    box_w = tf.minimum(fw, fh * aspect)
    box_h = box_w / aspect
    side = crop_side(tf.random.stateless_uniform([], seeds[1]), crop_size)
    ch = tf.clip_by_value(tf.cast(tf.round(box_h * side), tf.int32), 1, frame_h)
    cw = tf.clip_by_value(tf.cast(tf.round(box_w * side), tf.int32), 1, frame_w)
    y0 = tf.cast(tf.floor(tf.random.stateless_uniform([], seeds[2]) * tf.cast(frame_h - ch + 1, tf.float32)), tf.int32)
    x0 = tf.cast(tf.floor(tf.random.stateless_uniform([], seeds[3]) * tf.cast(frame_w - cw + 1, tf.float32)), tf.int32)
    y0, x0 = tf.minimum(y0, frame_h - ch), tf.minimum(x0, frame_w - cw)
    if not square:
        return y0, x0, ch, cw
    sy, sx = tf.cast(height, tf.float32) / fh, tf.cast(width, tf.float32) / fw

    def to_image(start, size, scale, limit):
        lo = tf.cast(tf.round(tf.cast(start, tf.float32) * scale), tf.int32)
        hi = tf.cast(tf.round(tf.cast(start + size, tf.float32) * scale), tf.int32)
        lo = tf.clip_by_value(lo, 0, limit - 1)
        return lo, tf.clip_by_value(hi - lo, 1, limit - lo)

    (y0, ch), (x0, cw) = to_image(y0, ch, sy, height), to_image(x0, cw, sx, width)
    return y0, x0, ch, cw


def train_image(path: tf.Tensor, seed: tf.Tensor, data: DataConfig) -> tf.Tensor:
    """Training augmentation: path, int [2] seed → float32 [S, S, 3] in 0-255 (PAPER_SPEC §1)."""
    image = decode_image(path)
    shape = tf.shape(image)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    square = data.resize_shorter if data.resize_square else 0
    y0, x0, ch, cw = random_crop_box(shape[0], shape[1], crop_seed, data.crop_size, data.crop_aspect, square)
    crop = tf.image.crop_to_bounding_box(image, y0, x0, ch, cw)
    out = tf.image.resize(tf.cast(crop, tf.float32), [data.image_size, data.image_size],
                          method="bicubic", antialias=True)
    out = tf.clip_by_value(out, 0.0, 255.0)
    if data.flip:
        out = tf.image.stateless_random_flip_left_right(out, flip_seed)
    out.set_shape([data.image_size, data.image_size, 3])
    return out


def eval_size(height: int, width: int, data: DataConfig, mode: str) -> tuple[int, int]:
    """Size of an evaluation image after pre-resizing (and centre-cropping in ``center`` mode)."""
    if mode == "center":
        return data.image_size, data.image_size
    if data.resize_shorter <= 0:
        return int(height), int(width)
    if data.resize_square:
        return data.resize_shorter, data.resize_shorter
    scale = data.resize_shorter / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def eval_image(path: tf.Tensor, size: tf.Tensor, data: DataConfig, mode: str) -> tf.Tensor:
    """Evaluation pre-processing: path, int [2] target size (from :func:`eval_size`) → float32 [h, w, 3].

    ``full``: the pre-resized image (shorter side ``resize_shorter``; PAPER_SPEC §6).
    ``center``: pre-resize, then the central ``image_size`` square.
    """
    image = tf.cast(decode_image(path), tf.float32)
    if data.resize_shorter > 0:
        if mode == "center":
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            if data.resize_square:
                size = tf.constant([data.resize_shorter, data.resize_shorter])
            else:
                size = tf.cast(tf.round(shape * data.resize_shorter / tf.reduce_min(shape)), tf.int32)
        image = tf.image.resize(image, size, method="bicubic", antialias=True)
    if mode == "center":
        image = tf.image.resize_with_crop_or_pad(image, data.image_size, data.image_size)
    return tf.clip_by_value(image, 0.0, 255.0)


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
# Plans: which images and captions each step uses
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
    def from_split(split: SplitArrays, by_identity: bool) -> CaptionGroups:
        n = split.num_images
        key = split.identities if by_identity else np.arange(n)
        caption_key = key[split.caption_image]
        order = np.argsort(caption_key, kind="stable")
        sorted_keys = caption_key[order]
        group_of_image = key
        starts = np.searchsorted(sorted_keys, group_of_image, side="left")
        ends = np.searchsorted(sorted_keys, group_of_image, side="right")
        if np.any(ends <= starts):
            missing = np.nonzero(ends <= starts)[0][:5]
            raise ValueError(f"training images without captions (indices {missing.tolist()}): run `dpcnn prepare` again")
        # Re-pack so each image has its own contiguous slice.
        members = np.concatenate([order[s:e] for s, e in zip(starts, ends)]).astype(np.int32)
        counts = (ends - starts).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return CaptionGroups(offsets=offsets, members=members)


class _Tables:
    """The split's arrays as constant tensors for the graph."""

    def __init__(self, split: SplitArrays, by_identity: bool):
        self.n = split.num_images
        self.paths = tf.constant(split.paths.astype(str))
        self.labels = tf.constant(split.labels, tf.int32)
        self.identities = tf.constant(split.identities, tf.int32)
        self.tokens = tf.constant(split.tokens, tf.int32)
        self.lengths = tf.constant(split.lengths, tf.int32)
        groups = CaptionGroups.from_split(split, by_identity)
        self.offsets = tf.constant(groups.offsets, tf.int32)
        self.members = tf.constant(groups.members, tf.int32)

    def pick_captions(self, images, uniform):
        """A random caption from each image's group: int [...], float [...] → int [...]."""
        start = tf.gather(self.offsets, images)
        count = tf.gather(self.offsets, images + 1) - start
        pick = tf.minimum(tf.cast(tf.floor(uniform * tf.cast(count, tf.float32)), tf.int32), count - 1)
        return tf.gather(self.members, start + pick)


def _epoch_permutation(n: int, seed: int, epoch) -> tf.Tensor:
    return tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch])))


def _seed(seed: int, salt: int, epoch) -> tf.Tensor:
    return tf.stack([tf.constant(seed * 7919 + salt, tf.int64), epoch])


def steps_per_epoch(num_images: int, batch_size: int, configured: int = 0) -> int:
    """One epoch = every training image once (PAPER_SPEC §5), in whole batches; or the configured count."""
    if configured > 0:
        return configured
    if num_images < batch_size:
        raise ValueError(f"{num_images} training images cannot fill one batch of {batch_size}: lower train.batch_size")
    return num_images // batch_size


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _tokens_for(tables: _Tables, captions, uniform, cfg: Config):
    tokens = tf.gather(tables.tokens, captions)
    if not cfg.train.position_shift:
        return tokens
    starts = random_starts(tf.gather(tables.lengths, captions), cfg.data.max_len, uniform)
    return shift_tokens(tokens, starts)


def _load_images(tables: _Tables, images, seeds, data: DataConfig):
    size = data.image_size
    return tf.map_fn(
        lambda args: train_image(tf.gather(tables.paths, args[0]), args[1], data),
        (images, seeds),
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        parallel_iterations=16,
    )


def stage1_dataset(split: SplitArrays, cfg: Config, first_epoch: int, last_epoch: int,
                   skip_steps: int = 0, by_identity: bool = False) -> tf.data.Dataset:
    """Stage-I batches for epochs [first_epoch, last_epoch), starting ``skip_steps`` into the first.

    Each element: {"images": float32 [B, S, S, 3], "tokens": int32 [B, L], "labels": int32 [B]}.
    """
    tables = _Tables(split, by_identity)
    batch = cfg.train.batch_size
    steps = steps_per_epoch(tables.n, batch, cfg.train.steps_per_epoch)
    seed = cfg.train.seed

    def plan(epoch):
        perm = _epoch_permutation(tables.n, seed, epoch)
        images = tf.reshape(tf.gather(perm, tf.range(steps * batch) % tables.n), [steps, batch])
        return tf.data.Dataset.from_tensor_slices({
            "images": images,
            "u_caption": tf.random.stateless_uniform([steps, batch], _seed(seed, 1, epoch)),
            "u_shift": tf.random.stateless_uniform([steps, batch], _seed(seed, 2, epoch)),
            "aug": tf.random.stateless_uniform([steps, batch, 2], _seed(seed, 3, epoch), minval=None, maxval=None, dtype=tf.int64),
        })

    def load(p):
        captions = tables.pick_captions(p["images"], p["u_caption"])
        return {
            "images": _load_images(tables, p["images"], p["aug"], cfg.data),
            "tokens": _tokens_for(tables, captions, p["u_shift"], cfg),
            "labels": tf.gather(tables.labels, p["images"]),
        }

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(plan).skip(skip_steps)
    return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def stage2_dataset(split: SplitArrays, cfg: Config, first_epoch: int, last_epoch: int,
                   skip_steps: int = 0, by_identity: bool = False) -> tf.data.Dataset:
    """Stage-II batches (PAPER_SPEC §4.2) for epochs [first_epoch, last_epoch).

    Per step, from the epoch's permutation: A = B/2 anchors and A random negative images; one
    caption of each anchor (position-shifted); a pool of P candidate captions drawn with
    replacement from training images outside the batch, each with its own shift (hard mining),
    or — ``negative_mining=random`` (CUHK-PEDES) — for each anchor one caption and one image of a
    *different* identity (P = A; row i belongs to anchor i).
    Element: {"anchor_images", "negative_images": [A, S, S, 3], "anchor_labels",
    "negative_labels": [A], "positive_tokens": [A, L], "pool_tokens": [P, L], "pool_labels": [P]}.
    """
    tables = _Tables(split, by_identity)
    batch = cfg.train.batch_size
    half = batch // 2
    n = tables.n
    if n <= batch:
        raise ValueError(f"stage II needs more training images ({n}) than a batch ({batch}): negatives come from outside the batch")
    steps = steps_per_epoch(n, batch, cfg.train.steps_per_epoch)
    seed = cfg.train.seed + 1000
    random_mining = cfg.train.negative_mining == "random"
    pool = half if random_mining else cfg.train.negative_pool
    tries = 8

    def outside(base, uniform):
        """Images not in the step's batch: perm positions base + B + r, r uniform in [0, n − B)."""
        r = tf.cast(tf.floor(uniform * float(n - batch)), tf.int32)
        return (base + batch + tf.minimum(r, n - batch - 1)) % n

    def plan(epoch):
        perm = _epoch_permutation(n, seed, epoch)
        base = tf.range(steps) * batch
        anchors = tf.gather(perm, (base[:, None] + tf.range(half)[None, :]) % n)
        negatives = tf.gather(perm, (base[:, None] + half + tf.range(half)[None, :]) % n)
        u_pool = tf.random.stateless_uniform([steps, pool], _seed(seed, 4, epoch))
        pool_images = tf.gather(perm, outside(base[:, None], u_pool))
        if random_mining:
            anchor_ids = tf.gather(tables.identities, anchors)

            def different(u):  # first of `tries` draws whose identity differs from the anchor's
                cand = tf.gather(perm, outside(base[:, None, None], u))
                ok = tf.not_equal(tf.gather(tables.identities, cand), anchor_ids[..., None])
                first = tf.argmax(tf.cast(ok, tf.int32), axis=-1, output_type=tf.int32)
                return tf.gather(cand, first, batch_dims=2)

            negatives = different(tf.random.stateless_uniform([steps, half, tries], _seed(seed, 5, epoch)))
            pool_images = different(tf.random.stateless_uniform([steps, half, tries], _seed(seed, 6, epoch)))
        return tf.data.Dataset.from_tensor_slices({
            "anchors": anchors, "negatives": negatives, "pool_images": pool_images,
            "u_pos": tf.random.stateless_uniform([steps, half], _seed(seed, 7, epoch)),
            "u_pos_shift": tf.random.stateless_uniform([steps, half], _seed(seed, 8, epoch)),
            "u_pool": tf.random.stateless_uniform([steps, pool], _seed(seed, 9, epoch)),
            "u_pool_shift": tf.random.stateless_uniform([steps, pool], _seed(seed, 10, epoch)),
            "aug": tf.random.stateless_uniform([steps, batch, 2], _seed(seed, 11, epoch), minval=None, maxval=None, dtype=tf.int64),
        })

    def load(p):
        images = _load_images(tables, tf.concat([p["anchors"], p["negatives"]], 0), p["aug"], cfg.data)
        positive = tables.pick_captions(p["anchors"], p["u_pos"])
        pool_captions = tables.pick_captions(p["pool_images"], p["u_pool"])
        return {
            "anchor_images": images[:half],
            "negative_images": images[half:],
            "anchor_labels": tf.gather(tables.labels, p["anchors"]),
            "negative_labels": tf.gather(tables.labels, p["negatives"]),
            "positive_tokens": _tokens_for(tables, positive, p["u_pos_shift"], cfg),
            "pool_tokens": _tokens_for(tables, pool_captions, p["u_pool_shift"], cfg),
            "pool_labels": tf.gather(tables.labels, p["pool_images"]),
        }

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(plan).skip(skip_steps)
    return ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def eval_image_batches(paths: np.ndarray, sizes: np.ndarray, data: DataConfig, mode: str,
                       batch_size: int) -> list[tuple[np.ndarray, tf.data.Dataset]]:
    """Evaluation images grouped by their pre-resized size (so the full-image maps can be batched).

    paths str [N], sizes int [N, 2] → [(indices int [n_g], dataset of float32 [b, h, w, 3])...],
    in a deterministic order; every index appears exactly once.
    """
    targets = [eval_size(int(h), int(w), data, mode) for h, w in sizes]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(t, []).append(i)
    out = []
    for (h, w), idx in sorted(groups.items()):
        index = np.asarray(idx, dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices(paths[index].astype(str))
        ds = ds.map(lambda p, h=h, w=w: tf.ensure_shape(eval_image(p, tf.constant([h, w]), data, mode), [h, w, 3]),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
        out.append((index, ds.batch(batch_size).prefetch(AUTOTUNE)))
    return out
