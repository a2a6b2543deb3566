"""The one in-memory form every dataset reader produces, and the record of what was left out.

A manifest is a list of :class:`ImageRecord`. Readers fill ``image_id``, ``path``, ``split``,
``captions`` and ``identity``; :func:`assign_labels` then gives each training record its
instance label (PAPER_SPEC §3.1: one class per training image, or per person ID for
CUHK-PEDES), contiguous from 0, in manifest order.

:class:`Exclusions` is where readers and ``prepare`` put every image and caption they leave out
(DESIGN §3: a counted, reported exclusion, never a silent drop); its :meth:`Exclusions.report`
is the exclusion part of ``data_report.json``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")

MAX_LISTED = 1000
"""Exclusions listed one by one in the report, for images and for captions (all are counted)."""

_KIND = re.compile(r":| \(")
"""Where the detail of a reason starts (the kind it is counted under comes before)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image and its captions.

    image_id: unique key within the dataset (COCO id, file name, ...), as a string.
    path: absolute path of the image file.
    split: "train" | "val" | "test".
    captions: the raw caption strings (not tokenised), in the source's order.
    identity: what defines the instance class: the image itself (image_id) for Flickr30k/COCO,
        the person ID for CUHK-PEDES. Evaluation by ID (CUHK) matches on it.
    label: instance class (0..C-1) for training records, -1 otherwise (set by assign_labels).
    """

    image_id: str
    path: str
    split: str
    captions: tuple[str, ...]
    identity: str = ""
    label: int = -1

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r} for image {self.image_id}")
        if not self.identity:
            object.__setattr__(self, "identity", self.image_id)
        object.__setattr__(self, "captions", tuple(self.captions))


def assign_labels(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Give training records contiguous labels by identity (first appearance order); others get -1."""
    mapping: dict[str, int] = {}
    out = []
    for rec in records:
        label = mapping.setdefault(rec.identity, len(mapping)) if rec.split == "train" else -1
        out.append(replace(rec, label=label))
    return out


def save_manifest(records: Sequence[ImageRecord], path: str | Path) -> None:
    """Write the records as a JSON list (atomically)."""
    from dpcnn.utils import atomic_write_text

    atomic_write_text(path, json.dumps([asdict(r) for r in records]) + "\n")


def load_manifest(path: str | Path) -> list[ImageRecord]:
    """Read a list written by :func:`save_manifest`."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return [ImageRecord(**{**r, "captions": tuple(r["captions"])}) for r in raw]


def _jsonable(value: Any) -> Any:
    """A JSON scalar as it is; anything else as its repr (a non-string caption, an odd id)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


class Exclusions:
    """Images and captions left out of a dataset: counted by reason, the first ``max_listed`` of
    each kind listed with where they came from.

    A reason is counted under its text before the first ``":"`` or ``" ("``, so ``"corrupt image:
    <decoder message>"`` counts as ``"corrupt image"`` and ``"caption is not a string (int)"`` as
    ``"caption is not a string"``, while the listed entry keeps the whole reason.
    """

    def __init__(self, max_listed: int = MAX_LISTED) -> None:
        self.max_listed = max_listed
        self.counts: Counter[str] = Counter()
        self.images: list[dict[str, Any]] = []
        self.captions: list[dict[str, Any]] = []

    def image(self, reason: str, **where: Any) -> None:
        """Exclude one image; ``where``: image_id, path, split, source, entry … (whatever is known)."""
        self._add(self.images, reason, where)

    def caption(self, reason: str, **where: Any) -> None:
        """Exclude one caption; ``where``: image_id, split, caption, source, entry or line …"""
        self._add(self.captions, reason, where)

    def drop_record(self, record: ImageRecord, reason: str) -> None:
        """Exclude a whole record (the image and, implicitly, its captions)."""
        self.image(reason, image_id=record.image_id, path=record.path, split=record.split)

    def _add(self, listed: list[dict[str, Any]], reason: str, where: dict[str, Any]) -> None:
        self.counts[_KIND.split(reason, 1)[0].strip()] += 1
        if len(listed) < self.max_listed:
            listed.append({**{k: _jsonable(v) for k, v in where.items()}, "reason": reason})

    @property
    def total(self) -> int:
        """How many images and captions were excluded in all."""
        return sum(self.counts.values())

    def report(self) -> dict[str, Any]:
        """``excluded_counts`` {reason: n}, ``excluded_images`` and ``excluded_captions`` (lists)."""
        return {"excluded_counts": dict(self.counts), "excluded_images": list(self.images),
                "excluded_captions": list(self.captions)}
