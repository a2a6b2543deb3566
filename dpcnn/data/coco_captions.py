"""COCO-format captions files → :class:`ImageRecord` lists (MSCOCO 2014, a user's own files, the
synthetic dataset).

A COCO captions file is a JSON object with ``images[]`` (``id``, ``file_name``) and
``annotations[]`` (``image_id``, ``caption``; ``id`` is not needed). It is indexed with
pycocotools' ``COCO`` after :func:`clean_coco_dict` has sorted its problems into two kinds
(DESIGN §3):

- the file as a whole (not a JSON object, no ``images``/``annotations`` list, an image id that
  appears twice, no usable caption at all) raises :class:`DataError` naming the file and the
  first offending entry;
- one bad entry (an image entry without a usable ``id`` or ``file_name``, a caption of an image id
  that is not in ``images``, a caption that is not a string, an annotation without a caption) is
  left out and counted in :class:`Exclusions` with its reason and its place in the file.

Images are never opened here; ``prepare`` validates them. An image without a caption is kept with
an empty ``captions`` tuple, so that ``prepare`` counts it instead of it vanishing silently.
pycocotools prints progress on stdout; it is captured and sent to the log.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpcnn.data.files import abs_path, load_json
from dpcnn.data.manifest import Exclusions, ImageRecord
from dpcnn.errors import DataError

log = logging.getLogger(__name__)


def is_coco_format(obj: Any) -> bool:
    """True if a parsed JSON object looks like a COCO captions file (top-level ``annotations``)."""
    return isinstance(obj, Mapping) and "annotations" in obj


def _check_shape(obj: Any, source: Path) -> None:
    """DataError unless ``obj`` is an object with an ``images`` list and an ``annotations`` list."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{source}: a COCO-format captions file is a JSON object with 'images' and "
                        f"'annotations', got a JSON {type(obj).__name__}")
    missing = [k for k in ("images", "annotations") if k not in obj]
    if missing:
        raise DataError(f"{source}: not a COCO-format captions file: missing top-level "
                        f"{' and '.join(repr(k) for k in missing)}")
    for key in ("images", "annotations"):
        if not isinstance(obj[key], list):
            raise DataError(f"{source}: '{key}' must be a list, got a JSON {type(obj[key]).__name__}")


def _usable_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _image_problem(img: Any) -> str:
    """Why one ``images[]`` entry cannot be used, or "" if it can."""
    if not isinstance(img, Mapping):
        return "image entry is not an object"
    if not _usable_id(img.get("id")):
        return "image entry has no usable id"
    if not isinstance(img.get("file_name"), str) or not img["file_name"].strip():
        return "image entry has no usable file_name"
    return ""


def _clean_images(entries: list[Any], source: Path, exclusions: Exclusions) -> tuple[list[dict[str, Any]], str]:
    """(the usable ``images[]`` entries, the first problem); bad ones are excluded, a repeated id
    is a DataError."""
    first_index: dict[Any, int] = {}
    out = []
    first = ""
    for i, img in enumerate(entries):
        problem = _image_problem(img)
        image_id = img.get("id") if isinstance(img, Mapping) else None
        if _usable_id(image_id):
            if image_id in first_index:
                raise DataError(f"{source}: image id {image_id!r} appears twice in 'images' "
                                f"(images[{first_index[image_id]}] and images[{i}])")
            first_index[image_id] = i
        if problem:
            first = first or f"images[{i}]: {problem}"
            exclusions.image(problem, source=source.name, entry=f"images[{i}]", image_id=image_id)
        else:
            out.append({"id": image_id, "file_name": img["file_name"]})
    return out, first


def _annotation_problem(ann: Any, usable: set[Any], known: set[Any]) -> str:
    """Why one ``annotations[]`` entry cannot be used, or "" if it can."""
    if not isinstance(ann, Mapping):
        return "annotation is not an object"
    if "caption" not in ann:
        return "annotation has no caption"
    if not isinstance(ann["caption"], str):
        return f"caption is not a string ({type(ann['caption']).__name__})"
    if not _usable_id(ann.get("image_id")):
        return "annotation has no usable image_id"
    if ann["image_id"] not in known:
        return "caption of an unknown image id"
    if ann["image_id"] not in usable:
        return "caption of an excluded image entry"
    return ""


def _clean_annotations(entries: list[Any], usable: set[Any], known: set[Any], source: Path,
                       exclusions: Exclusions) -> tuple[list[dict[str, Any]], str]:
    """(the usable annotations, renumbered; the first problem as "annotations[i]: reason")."""
    out: list[dict[str, Any]] = []
    first = ""
    for i, ann in enumerate(entries):
        problem = _annotation_problem(ann, usable, known)
        if not problem:
            out.append({"id": len(out) + 1, "image_id": ann["image_id"], "caption": ann["caption"]})
            continue
        first = first or f"annotations[{i}]: {problem}"
        fields = ann if isinstance(ann, Mapping) else {}
        exclusions.caption(problem, source=source.name, entry=f"annotations[{i}]",
                           image_id=fields.get("image_id"), caption=fields.get("caption"))
    return out, first


def clean_coco_dict(obj: Any, source: str | Path, exclusions: Exclusions) -> dict[str, list[dict[str, Any]]]:
    """The usable part of a parsed COCO captions file: ``{"images": [...], "annotations": [...]}``.

    File-level problems raise DataError naming ``source``; per-entry problems go to ``exclusions``.
    """
    source = Path(source)
    _check_shape(obj, source)
    images, first_image = _clean_images(obj["images"], source, exclusions)
    known = {img["id"] for img in obj["images"] if isinstance(img, Mapping) and _usable_id(img.get("id"))}
    annotations, first = _clean_annotations(obj["annotations"], {img["id"] for img in images}, known,
                                            source, exclusions)
    if not annotations:
        raise DataError(_no_caption_message(obj, source, first))
    dropped = len(obj["images"]) - len(images) + len(obj["annotations"]) - len(annotations)
    if dropped:
        log.warning("%s: %d entries excluded (listed in data_report.json), e.g. %s", source, dropped,
                    first_image or first)
    return {"images": images, "annotations": annotations}


def _no_caption_message(obj: Mapping[str, Any], source: Path, first: str) -> str:
    if not obj["annotations"]:
        return f"{source}: no captions: 'annotations' is empty"
    hint = ""
    sample = obj["annotations"][0]
    if isinstance(sample, Mapping) and "caption" not in sample and ("bbox" in sample or "keypoints" in sample):
        hint = " (an instances/keypoints file, not a captions file?)"
    return (f"{source}: no usable caption in its {len(obj['annotations'])} annotations{hint}; the first "
            f"problem: {first}")


def coco_index(obj: Any, source: str | Path, exclusions: Exclusions) -> Any:
    """A pycocotools ``COCO`` on the cleaned file (:func:`clean_coco_dict`), stdout captured."""
    from pycocotools.coco import COCO

    clean = clean_coco_dict(obj, source, exclusions)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco = COCO()
        coco.dataset = clean
        coco.createIndex()
    for line in buf.getvalue().splitlines():
        log.debug("pycocotools (%s): %s", Path(source).name, line)
    return coco


def image_captions(coco: Any, image_id: Any) -> tuple[str, ...]:
    """The captions of one image, in the order of the file's ``annotations[]``."""
    return tuple(ann["caption"] for ann in coco.imgToAnns.get(image_id, ()))


def coco_records_from_dict(obj: Any, source: str | Path, images: str | Path, split: str,
                           exclusions: Exclusions, id_prefix: str = "") -> list[ImageRecord]:
    """:func:`read_coco_format` on an already parsed JSON object (``source`` names it)."""
    coco = coco_index(obj, source, exclusions)
    folder = abs_path(images)
    records = [ImageRecord(image_id=f"{id_prefix}{img_id}", path=str(folder / img["file_name"]), split=split,
                           captions=image_captions(coco, img_id))
               for img_id, img in coco.imgs.items()]  # insertion order = the file's images[] order
    empty = sum(1 for r in records if not r.captions)
    log.info("%s: %d images, %d captions%s", source, len(records), len(coco.anns),
             f", {empty} images without a caption (prepare excludes them)" if empty else "")
    return records


def read_coco_format(annotations: str | Path, images: str | Path, split: str,
                     exclusions: Exclusions) -> list[ImageRecord]:
    """Read a COCO-format captions file; every usable image becomes one record of ``split``.

    annotations: the JSON file. images: the folder ``file_name`` is relative to (record path =
    ``images / file_name``). split: "train" | "val" | "test".

    image_id = ``str(COCO id)``; records follow ``images[]``; each image's captions keep the order
    of ``annotations[]``. See the module docstring for what is an error and what is excluded.
    """
    annotations = Path(annotations)
    obj = load_json(annotations, "COCO-format captions file")
    return coco_records_from_dict(obj, annotations, images, split, exclusions)

