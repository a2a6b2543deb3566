"""The one in-memory form every dataset reader produces: images with their captions, split and labels.

A manifest is a list of :class:`ImageRecord`. Readers fill ``image_id``, ``path``, ``split``,
``captions`` and ``identity``; :func:`assign_labels` then gives each training record its
instance label (PAPER_SPEC §3.1: one class per training image, or per person ID for
CUHK-PEDES), contiguous from 0, in manifest order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

SPLITS = ("train", "val", "test")


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
        if rec.split == "train":
            label = mapping.setdefault(rec.identity, len(mapping))
        else:
            label = -1
        out.append(replace(rec, label=label))
    return out


def num_classes(records: Iterable[ImageRecord]) -> int:
    return len({r.label for r in records if r.split == "train"})


def by_split(records: Iterable[ImageRecord], split: str) -> list[ImageRecord]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [r for r in records if r.split == split]


def save_manifest(records: Sequence[ImageRecord], path: str | Path) -> None:
    from dpcnn.utils import atomic_write_text

    atomic_write_text(path, json.dumps([asdict(r) for r in records]) + "\n")


def load_manifest(path: str | Path) -> list[ImageRecord]:
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return [ImageRecord(**{**r, "captions": tuple(r["captions"])}) for r in raw]
