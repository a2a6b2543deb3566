"""Splitting a single captions file by image, and checking that splits do not overlap."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from dpcnn.data.manifest import SPLITS, ImageRecord
from dpcnn.errors import ConfigError, DataError

_SHOW = 5

DEFAULT_HOLDOUT_FRACTION = 0.1
DEFAULT_HOLDOUT_MAX = 1000


def holdout_size(requested: int, num_captioned: int) -> int:
    """Images to hold out for each of val and test: ``data.holdout_images`` when set (≥ 1), else
    (0) 10 % of the captioned images, at most 1,000 and at least 1."""
    if requested:
        return requested
    return max(1, min(DEFAULT_HOLDOUT_MAX, int(num_captioned * DEFAULT_HOLDOUT_FRACTION)))


def split_by_image(records: Sequence[ImageRecord], holdout: int, seed: int,
                   splits: Sequence[str] = ("val", "test")) -> list[ImageRecord]:
    """Hold out ``holdout`` images for each of ``splits`` (default val and test); the rest are train.

    The choice is a seeded permutation of the image ids sorted as strings, so it depends only on
    the set of ids and the seed, never on the input order. Only images with at least one caption
    are held out (a caption-less image stays in train, where ``prepare`` reports and excludes it),
    so the held-out splits have exactly ``holdout`` usable images each. The output keeps the input
    order. Raises ConfigError if there are fewer than ``holdout * len(splits) + 2`` captioned images
    (the message names the largest ``data.holdout_images`` that fits), DataError if an id repeats.
    """
    if holdout < 1:
        raise ConfigError(f"data.holdout_images must be ≥ 1, got {holdout}")
    bad = [s for s in splits if s not in SPLITS or s == "train"]
    if bad or len(set(splits)) != len(splits):
        raise ValueError(f"splits to hold out must be distinct names among 'val', 'test', got {tuple(splits)}")
    _check_unique_ids(records)
    candidates = sorted(r.image_id for r in records if r.captions)
    need = holdout * len(splits) + 2
    if len(candidates) < need:
        fits = (len(candidates) - 2) // len(splits)
        advice = (f"set data.holdout_images to at most {fits}" if fits >= 1 else
                  "add images, or give separate val/test files (data.val_annotations, data.test_annotations)")
        raise ConfigError(f"only {len(candidates)} images with captions, fewer than the {need} needed to "
                         f"hold out {holdout} for each of {' and '.join(splits)} and keep ≥ 2 for "
                         f"train: {advice}")
    random.Random(seed).shuffle(candidates)
    assigned = {}
    for k, split in enumerate(splits):
        for image_id in candidates[k * holdout:(k + 1) * holdout]:
            assigned[image_id] = split
    return [replace(r, split=assigned.get(r.image_id, "train")) for r in records]


def _check_unique_ids(records: Sequence[ImageRecord]) -> None:
    counts = Counter(r.image_id for r in records)
    dup = [i for i, n in counts.items() if n > 1]
    if dup:
        raise DataError(f"{len(dup)} image id(s) appear more than once: {_few(dup)}")


def check_disjoint(records: Sequence[ImageRecord]) -> None:
    """Raise DataError if an image is in two splits or listed twice.

    "The same image" is the same image id or the same file path (one picture under two ids).
    An image in two splits is reported first: held-out images would leak into training.
    """
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        groups.setdefault(f"id {r.image_id}", []).append(r)
        groups.setdefault(f"file {r.path}", []).append(r)
    repeated = {k: rs for k, rs in groups.items() if len(rs) > 1}
    crossing = {k: rs for k, rs in repeated.items() if len({r.split for r in rs}) > 1}
    if crossing:
        shown = [f"{k} ({', '.join(f'{r.image_id}:{r.split}' for r in rs)})" for k, rs in crossing.items()]
        raise DataError(f"{len(crossing)} image(s) are in more than one split, e.g. {_few(shown)}: the "
                         f"splits overlap (held-out images would leak into training)")
    if repeated:
        shown = [f"{k} ({len(rs)}×)" for k, rs in repeated.items()]
        raise DataError(f"{len(repeated)} image(s) appear more than once in one split (same id, or one "
                         f"file under two ids), e.g. {_few(shown)}")


def _few(items: Sequence[str]) -> str:
    shown = ", ".join(str(x) for x in list(items)[:_SHOW])
    return shown + (f", … ({len(items)} in all)" if len(items) > _SHOW else "")
