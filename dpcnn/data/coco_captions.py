"""COCO-format captions files and MSCOCO 2014 with the Karpathy split → :class:`ImageRecord` lists.

Two readers:

- :func:`read_coco_format`: any COCO-format captions file (``images[]`` with ``id`` and
  ``file_name``; ``annotations[]`` with ``id``, ``image_id`` and ``caption``), indexed with
  pycocotools' ``COCO``. Every record gets the one split it is told.
- :func:`read_mscoco_karpathy`: ``captions_train2014.json`` + ``captions_val2014.json``, with
  the split of each image taken from Karpathy's ``dataset_coco.json`` (``restval`` counts as
  train: 113,287 / 5,000 / 5,000 images on the real data). This is the ``coco`` preset's split,
  not the paper's MATLAB ``rng(1)`` split, which cannot be regenerated (PAPER_SPEC §6, §8.1).

Images are never opened here; ``prepare`` validates them. Images that have no caption are kept,
with an empty ``captions`` tuple, so that ``prepare`` can count and report them instead of them
vanishing silently. pycocotools prints progress on stdout; it is captured and sent to the log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dpcnn.data.manifest import ImageRecord

log = logging.getLogger(__name__)

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
"""Karpathy split names → ours (``restval`` is part of the training set)."""

_SHOW = 5  # how many offending ids an error message lists


def _few(items: Sequence[Any] | set[Any]) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:_SHOW])
    return shown + (f", … ({len(items)} in all)" if len(items) > _SHOW else "")


def load_json_source(path: str | Path, what: str) -> Any:
    """Parse a dataset JSON file; a file that is not JSON raises ValueError naming the file.

    what: a few words saying what the file should be ("COCO-format captions file", ...).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid JSON {what} ({e})") from e


def abs_path(path: str | Path) -> Path:
    """Absolute form of ``path`` without touching the file system (no symlink resolution)."""
    return Path(os.path.abspath(os.fspath(path)))


# --------------------------------------------------------------------------------------------
# Any COCO-format captions file
# --------------------------------------------------------------------------------------------


def is_coco_format(obj: Any) -> bool:
    """True if a parsed JSON object looks like a COCO captions file (top-level ``annotations``)."""
    return isinstance(obj, Mapping) and "annotations" in obj


def _validate_coco_dict(obj: Any, source: Path) -> None:
    """Raise ValueError naming ``source`` and the first structural problem of a COCO captions dict."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: a COCO-format captions file is a JSON object with 'images' and "
                         f"'annotations', got a JSON {type(obj).__name__}")
    missing = [k for k in ("images", "annotations") if k not in obj]
    if missing:
        raise ValueError(f"{source}: not a COCO-format captions file: missing top-level "
                         f"{' and '.join(repr(k) for k in missing)}")
    for key in ("images", "annotations"):
        if not isinstance(obj[key], list):
            raise ValueError(f"{source}: '{key}' must be a list, got {type(obj[key]).__name__}")
    image_ids: set[Any] = set()
    for i, img in enumerate(obj["images"]):
        if not isinstance(img, Mapping) or "id" not in img or "file_name" not in img:
            raise ValueError(f"{source}: images[{i}] needs 'id' and 'file_name', got {_short(img)}")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise ValueError(f"{source}: images[{i}] (id {img['id']!r}) has no usable 'file_name'")
        if img["id"] in image_ids:
            raise ValueError(f"{source}: image id {img['id']!r} appears twice in 'images' (images[{i}])")
        image_ids.add(img["id"])
    unknown: list[Any] = []
    for i, ann in enumerate(obj["annotations"]):
        if not isinstance(ann, Mapping) or any(k not in ann for k in ("id", "image_id", "caption")):
            raise ValueError(f"{source}: annotations[{i}] needs 'id', 'image_id' and 'caption' "
                             f"(a captions file, not instances/keypoints), got {_short(ann)}")
        if not isinstance(ann["caption"], str):
            raise ValueError(f"{source}: annotations[{i}] (id {ann['id']!r}): 'caption' must be a "
                             f"string, got {type(ann['caption']).__name__}")
        if ann["image_id"] not in image_ids:
            unknown.append(ann["image_id"])
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} annotation(s) point to image ids that are not in "
                         f"'images': {_few(sorted(set(unknown), key=str))}")


def _short(x: Any, limit: int = 120) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "…"


def _coco_index(obj: Mapping[str, Any], source: Path) -> Any:
    """A pycocotools ``COCO`` indexed on an already parsed and validated dict (stdout captured)."""
    from pycocotools.coco import COCO

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco = COCO()
        coco.dataset = dict(obj)
        coco.createIndex()
    for line in buf.getvalue().splitlines():
        log.debug("pycocotools (%s): %s", source.name, line)
    return coco


def coco_records_from_dict(obj: Any, source: str | Path, images: str | Path, split: str,
                           id_prefix: str = "") -> list[ImageRecord]:
    """:func:`read_coco_format` on an already parsed JSON object (``source`` names it in errors)."""
    source = Path(source)
    _validate_coco_dict(obj, source)
    coco = _coco_index(obj, source)
    images = abs_path(images)
    records = []
    for img_id, img in coco.imgs.items():  # insertion order = the file's images[] order
        captions = tuple(ann["caption"] for ann in coco.imgToAnns.get(img_id, ()))
        records.append(ImageRecord(image_id=f"{id_prefix}{img_id}", path=str(images / img["file_name"]),
                                   split=split, captions=captions))
    empty = sum(1 for r in records if not r.captions)
    log.info("%s: %d images, %d captions%s", source, len(records), len(coco.anns),
             f", {empty} images without a caption (kept; prepare reports them)" if empty else "")
    return records


def read_coco_format(annotations: str | Path, images: str | Path, split: str) -> list[ImageRecord]:
    """Read any COCO-format captions file; every image becomes one record of ``split``.

    annotations: the JSON file (``images[]``: ``id``, ``file_name``; ``annotations[]``: ``id``,
        ``image_id``, ``caption``).
    images: folder that ``file_name`` is relative to; record path = ``images / file_name``.
    split: "train" | "val" | "test".

    image_id = ``str(COCO id)``; records follow the order of ``images[]``; each image's captions
    keep the order of ``annotations[]``. An image with no caption is kept with ``captions == ()``
    (``prepare`` reports and excludes it). Malformed files raise ValueError naming the file.
    """
    annotations = Path(annotations)
    obj = load_json_source(annotations, "COCO-format captions file")
    return coco_records_from_dict(obj, annotations, images, split)


# --------------------------------------------------------------------------------------------
# Karpathy split files (dataset_coco.json, dataset_flickr30k.json)
# --------------------------------------------------------------------------------------------


def karpathy_images(obj: Any, source: str | Path, key: str) -> list[Mapping[str, Any]]:
    """Validate a Karpathy split file and return its ``images[]``.

    key: the field that identifies an image ("cocoid" for COCO, "filename" for Flickr30k).
    Each entry must carry it and a ``split`` in train | restval | val | test.
    """
    source = Path(source)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("images"), list):
        hint = " (this is a COCO-format captions file, not a Karpathy split file)" if is_coco_format(obj) else ""
        raise ValueError(f"{source}: a Karpathy split file is a JSON object with an 'images' list{hint}")
    for i, img in enumerate(obj["images"]):
        if not isinstance(img, Mapping) or key not in img or "split" not in img:
            raise ValueError(f"{source}: images[{i}] needs '{key}' and 'split', got {_short(img)}")
        if img["split"] not in KARPATHY_SPLITS:
            raise ValueError(f"{source}: images[{i}] ({key} {img[key]!r}) has split {img['split']!r}; "
                             f"expected one of {sorted(KARPATHY_SPLITS)}")
    return obj["images"]


def karpathy_coco_splits(obj: Any, source: str | Path) -> dict[int, tuple[str, Mapping[str, Any]]]:
    """cocoid → (our split, the Karpathy entry) from a parsed ``dataset_coco.json``."""
    out: dict[int, tuple[str, Mapping[str, Any]]] = {}
    for img in karpathy_images(obj, source, "cocoid"):
        if img["cocoid"] in out:
            raise ValueError(f"{source}: cocoid {img['cocoid']!r} appears twice")
        out[img["cocoid"]] = (KARPATHY_SPLITS[img["split"]], img)
    return out


_CAPTIONS_FILE = re.compile(r"^captions_(?P<folder>[A-Za-z0-9]+)\.json$")


def _image_subfolder(annotation_file: Path, karpathy_entry: Mapping[str, Any] | None) -> str:
    """``train2014`` / ``val2014``: from ``captions_<folder>.json``, else Karpathy's ``filepath``."""
    m = _CAPTIONS_FILE.match(annotation_file.name)
    if m:
        return m.group("folder")
    if karpathy_entry is not None and isinstance(karpathy_entry.get("filepath"), str):
        return karpathy_entry["filepath"]
    raise ValueError(f"{annotation_file}: cannot tell which image folder it belongs to: name it "
                     f"captions_<folder>.json (e.g. captions_train2014.json) or use a Karpathy file "
                     f"with 'filepath'")


def mscoco_karpathy_from_dict(annotation_files: Sequence[str | Path], images_root: str | Path,
                              karpathy: Any, karpathy_source: str | Path) -> list[ImageRecord]:
    """:func:`read_mscoco_karpathy` with the Karpathy file already parsed."""
    splits = karpathy_coco_splits(karpathy, karpathy_source)
    images_root = abs_path(images_root)
    records: list[ImageRecord] = []
    seen: dict[int, Path] = {}
    for ann_file in map(Path, annotation_files):
        obj = load_json_source(ann_file, "COCO captions file")
        _validate_coco_dict(obj, ann_file)
        coco = _coco_index(obj, ann_file)
        absent = [i for i in coco.imgs if i not in splits]
        if absent:
            raise ValueError(f"{ann_file} and {karpathy_source} disagree: {len(absent)} image(s) of the "
                             f"annotations are not in the Karpathy split file, e.g. ids {_few(absent)}. "
                             f"Use the dataset_coco.json of caption_datasets.zip with the MSCOCO 2014 "
                             f"captions.")
        renamed = [i for i, img in coco.imgs.items()
                   if "filename" in splits[i][1] and splits[i][1]["filename"] != img["file_name"]]
        if renamed:
            raise ValueError(f"{ann_file} and {karpathy_source} disagree on the file name of ids "
                             f"{_few(renamed)}")
        for img_id, img in coco.imgs.items():
            if img_id in seen:
                raise ValueError(f"image id {img_id!r} is in both {seen[img_id]} and {ann_file}")
            seen[img_id] = ann_file
            split, entry = splits[img_id]
            folder = _image_subfolder(ann_file, entry)
            captions = tuple(ann["caption"] for ann in coco.imgToAnns.get(img_id, ()))
            records.append(ImageRecord(image_id=str(img_id), path=str(images_root / folder / img["file_name"]),
                                       split=split, captions=captions))
    missing = [i for i in splits if i not in seen]
    if missing:
        raise ValueError(f"{karpathy_source} lists {len(missing)} image(s) that are in none of "
                         f"{[str(p) for p in annotation_files]}, e.g. cocoids {_few(missing)}: the "
                         f"Karpathy split needs both captions_train2014.json and captions_val2014.json")
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    log.info("MSCOCO (Karpathy split): %s images, %d captions",
             " / ".join(f"{s} {n}" for s, n in counts.items()), sum(len(r.captions) for r in records))
    return records


def read_mscoco_karpathy(annotation_files: Sequence[str | Path], images_root: str | Path,
                         karpathy_json: str | Path) -> list[ImageRecord]:
    """MSCOCO 2014 captions with Karpathy's split (train+restval / val / test).

    annotation_files: ``captions_train2014.json`` and ``captions_val2014.json`` (read with pycocotools).
    images_root: folder holding ``train2014/`` and ``val2014/``; an image of
        ``captions_<folder>.json`` is at ``images_root / <folder> / file_name``.
    karpathy_json: ``dataset_coco.json`` (``images[]`` with ``cocoid``, ``filepath``, ``filename``,
        ``split``); ``restval`` → train.

    image_id = ``str(cocoid)``; captions come from the COCO annotations, in their order. An image of
    the annotations that the Karpathy file lacks, or the other way round, raises ValueError listing
    a few ids (the two files do not belong together).
    """
    karpathy_json = Path(karpathy_json)
    karpathy = load_json_source(karpathy_json, "Karpathy split file (dataset_coco.json)")
    return mscoco_karpathy_from_dict(annotation_files, images_root, karpathy, karpathy_json)
