"""CUHK-PEDES (``reid_raw.json``) → :class:`ImageRecord` lists.

``reid_raw.json`` is a list of ``{"split", "captions", "file_path", "id", "processed_tokens"}``.
The instance classes are person IDs (PAPER_SPEC §3.1): ``identity = str(id)``, so every image of a
person shares one training label. The file's order is kept: it is train 34,054 / val 3,078 /
test 3,074 images in that order on the real data (PAPER_SPEC §6; ``prepare_imdb.m`` assigns the
sets by position, we read each entry's ``split`` and log a warning where the two would differ).
Images are not opened here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from dpcnn.data.coco import abs_path, load_json_source
from dpcnn.data.manifest import SPLITS, ImageRecord

log = logging.getLogger(__name__)


def read_cuhk_pedes(reid_raw: str | Path, images: str | Path) -> list[ImageRecord]:
    """Read ``reid_raw.json``.

    reid_raw: the JSON list described in the module docstring.
    images: the ``imgs`` folder; record path = ``images / file_path``.

    image_id = ``file_path`` (e.g. ``CUHK01/0363004.png``), identity = ``str(id)``, captions in the
    file's order. Malformed entries raise ValueError naming the file and the entry index.
    """
    reid_raw = Path(reid_raw)
    obj = load_json_source(reid_raw, "CUHK-PEDES reid_raw.json")
    if not isinstance(obj, list):
        raise ValueError(f"{reid_raw}: reid_raw.json is a JSON list of images, got a JSON {type(obj).__name__}")
    images = abs_path(images)
    records = []
    for i, entry in enumerate(obj):
        if not isinstance(entry, Mapping) or any(k not in entry for k in ("split", "captions", "file_path", "id")):
            raise ValueError(f"{reid_raw}: entry {i} needs 'split', 'captions', 'file_path' and 'id', "
                             f"got keys {sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__}")
        if entry["split"] not in SPLITS:
            raise ValueError(f"{reid_raw}: entry {i} ({entry['file_path']}) has split {entry['split']!r}; "
                             f"expected one of {SPLITS}")
        captions = entry["captions"]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"{reid_raw}: entry {i} ({entry['file_path']}): 'captions' must be a list of strings")
        if not isinstance(entry["file_path"], str) or not entry["file_path"]:
            raise ValueError(f"{reid_raw}: entry {i}: 'file_path' must be a non-empty string")
        if isinstance(entry["id"], bool) or not isinstance(entry["id"], (int, str)):
            raise ValueError(f"{reid_raw}: entry {i} ({entry['file_path']}): 'id' must be a person id "
                             f"(integer), got {entry['id']!r}")
        records.append(ImageRecord(image_id=entry["file_path"], path=str(images / entry["file_path"]),
                                   split=entry["split"], captions=tuple(captions), identity=str(entry["id"])))
    _warn_if_not_contiguous(records, reid_raw)
    counts = " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in SPLITS)
    log.info("CUHK-PEDES: %s images, %d captions, %d training IDs", counts,
             sum(len(r.captions) for r in records), len({r.identity for r in records if r.split == "train"}))
    return records


def _warn_if_not_contiguous(records: list[ImageRecord], source: Path) -> None:
    """The official code splits by position (train block, val block, test block); say if the
    ``split`` fields do not form those blocks, since then the two readings differ."""
    order = {s: k for k, s in enumerate(SPLITS)}
    ranks = [order[r.split] for r in records]
    if any(a > b for a, b in zip(ranks, ranks[1:])):
        log.warning("%s: the 'split' fields are not in train, val, test blocks; the official code "
                    "splits by position, this reader by the 'split' field", source)
