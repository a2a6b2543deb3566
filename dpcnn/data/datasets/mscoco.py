"""MSCOCO 2014 with Karpathy's split (``data.dataset=coco``; the ``coco`` preset).

Files under ``data.root`` (``dpcnn download coco`` and ``dpcnn download karpathy-splits``):
``coco/annotations/captions_{train,val}2014.json``, ``coco/{train,val}2014/``,
``karpathy/dataset_coco.json``. ``data.images`` replaces the ``coco/`` folder (the one holding
``train2014/``, ``val2014/`` and ``annotations/``), ``data.annotations`` the Karpathy file.

The split of each image comes from ``dataset_coco.json`` (``restval`` counts as train: 113,287 /
5,000 / 5,000 images), its captions from the COCO annotations. This is the ``coco`` preset's split,
not the paper's MATLAB ``rng(1)`` split, which cannot be regenerated (PAPER_SPEC §6, §8.1).

If ``data.annotations`` is a COCO-format captions file rather than a Karpathy file, it is read as
the user's own data (:mod:`dpcnn.data.datasets.coco_format`; DESIGN §1).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dpcnn.config import DataConfig
from dpcnn.data.coco_captions import coco_index, image_captions, is_coco_format
from dpcnn.data.datasets import DatasetSpec, PaperResult, coco_format
from dpcnn.data.files import abs_path, download_hint, load_json, require
from dpcnn.data.karpathy import karpathy_images
from dpcnn.data.manifest import SPLITS, Exclusions, ImageRecord
from dpcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_SHOW = 5  # how many offending ids an error message lists
_CAPTIONS_FILE = re.compile(r"^captions_(?P<folder>[A-Za-z0-9]+)\.json$")
_FOLDER = "data.images=FOLDER (the folder holding train2014/, val2014/ and annotations/)"


def _paths(data: DataConfig) -> dict[str, Path]:
    root = Path(data.root)
    images = Path(data.images) if data.images else root / "coco"
    return {
        "annotations": Path(data.annotations) if data.annotations else root / "karpathy" / "dataset_coco.json",
        "images": images,
        "captions_train2014": images / "annotations" / "captions_train2014.json",
        "captions_val2014": images / "annotations" / "captions_val2014.json",
    }


def _is_own_file(data: DataConfig) -> bool:
    """Is ``data.annotations`` a COCO-format captions file (the user's own data)? Parses it."""
    path = Path(data.annotations)
    if not data.annotations or not path.is_file():
        return False
    try:
        return is_coco_format(load_json(path, "annotations file (data.annotations)"))
    except DataError:  # not JSON: read() reports it
        return False


def sources(data: DataConfig) -> dict[str, str]:
    """The Karpathy file, the COCO folder and its two captions files (or the user's own files)."""
    if _is_own_file(data):
        return coco_format.sources(data)
    return {"split": "karpathy", **{k: str(v) for k, v in _paths(data).items()}}


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """MSCOCO 2014 with the Karpathy split, or the user's own COCO-format file."""
    p = _paths(data)
    if data.annotations:
        karpathy = require(p["annotations"], "annotations file (a Karpathy dataset_coco.json or your own "
                           "COCO-format captions file)", "data.annotations=PATH", "Check the path")
    else:
        karpathy = require(p["annotations"], "Karpathy split file (dataset_coco.json)", "data.annotations=PATH",
                           download_hint("karpathy-splits", data.root))
    obj = load_json(karpathy, "annotations file (data.annotations)")
    if data.annotations and is_coco_format(obj):
        log.info("%s is a COCO-format captions file: reading it as your own data (coco-format)", karpathy)
        return coco_format.read_own_files(data, exclusions, train_obj=obj)
    _reject_own_data_keys(data)
    require(p["images"], "MSCOCO 2014 folder", _FOLDER, download_hint("coco", data.root))
    for key in ("captions_train2014", "captions_val2014"):
        require(p[key], f"MSCOCO 2014 captions file {p[key].name}", _FOLDER, download_hint("coco", data.root))
    return read_mscoco_karpathy([p["captions_train2014"], p["captions_val2014"]], p["images"], obj, karpathy,
                                exclusions)


def _reject_own_data_keys(data: DataConfig) -> None:
    """The keys of a user's own files mean nothing with the Karpathy split (DESIGN §1)."""
    own = [f"data.{k}" for k in ("val_annotations", "test_annotations") if getattr(data, k)]
    own += ["data.holdout_images"] if data.holdout_images else []
    if own:
        raise ConfigError(f"{', '.join(own)} has no effect here: data.dataset=coco reads the Karpathy split; "
                          "set data.annotations to your own COCO-format captions file to use it")


def _few(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:_SHOW])
    return shown + (f", … ({len(items)} in all)" if len(items) > _SHOW else "")


def _image_subfolder(annotation_file: Path, karpathy_entry: Mapping[str, Any]) -> str:
    """``train2014`` / ``val2014``: from ``captions_<folder>.json``, else Karpathy's ``filepath``."""
    m = _CAPTIONS_FILE.match(annotation_file.name)
    if m:
        return m.group("folder")
    if isinstance(karpathy_entry.get("filepath"), str):
        return karpathy_entry["filepath"]
    raise DataError(f"{annotation_file}: cannot tell which image folder it belongs to: name it "
                    f"captions_<folder>.json (e.g. captions_train2014.json) or use a Karpathy file with 'filepath'")


def _check_agree(coco: Any, splits: Mapping[Any, tuple[str, Mapping[str, Any]]], ann_file: Path,
                 karpathy_source: Path) -> None:
    """DataError if the captions file has images the Karpathy file lacks, or names them otherwise."""
    absent = [i for i in coco.imgs if i not in splits]
    if absent:
        raise DataError(f"{ann_file} and {karpathy_source} disagree: {len(absent)} image(s) of the annotations "
                        f"are not in the Karpathy split file, e.g. ids {_few(absent)}. Use the dataset_coco.json "
                        "of caption_datasets.zip with the MSCOCO 2014 captions.")
    renamed = [i for i, img in coco.imgs.items()
               if "filename" in splits[i][1] and splits[i][1]["filename"] != img["file_name"]]
    if renamed:
        raise DataError(f"{ann_file} and {karpathy_source} disagree on the file name of ids {_few(renamed)}")


def read_mscoco_karpathy(annotation_files: Sequence[str | Path], images_root: str | Path, karpathy: Any,
                         karpathy_source: str | Path, exclusions: Exclusions) -> list[ImageRecord]:
    """MSCOCO 2014 captions with Karpathy's split (train+restval / val / test).

    annotation_files: ``captions_train2014.json`` and ``captions_val2014.json``; an image of
        ``captions_<folder>.json`` is at ``images_root / <folder> / file_name``.
    karpathy: the parsed ``dataset_coco.json`` (``images[]`` with ``cocoid``, ``filepath``,
        ``filename``, ``split``), read from ``karpathy_source``.

    image_id = ``str(cocoid)``; captions come from the COCO annotations, in their order. Files that
    do not belong together (an image in one and not the other) raise DataError listing a few ids.
    """
    karpathy_source = Path(karpathy_source)
    splits = {entry["cocoid"]: (split, entry) for _, split, entry in
              karpathy_images(karpathy, karpathy_source, "cocoid", exclusions)}
    root = abs_path(images_root)
    records: list[ImageRecord] = []
    seen: dict[Any, Path] = {}
    for ann_file in map(Path, annotation_files):
        coco = coco_index(load_json(ann_file, "COCO captions file"), ann_file, exclusions)
        _check_agree(coco, splits, ann_file, karpathy_source)
        for img_id, img in coco.imgs.items():
            if img_id in seen:
                raise DataError(f"image id {img_id!r} is in both {seen[img_id]} and {ann_file}")
            seen[img_id] = ann_file
            split, entry = splits[img_id]
            folder = _image_subfolder(ann_file, entry)
            records.append(ImageRecord(image_id=str(img_id), path=str(root / folder / img["file_name"]),
                                       split=split, captions=image_captions(coco, img_id)))
    missing = [i for i in splits if i not in seen]
    if missing:
        raise DataError(f"{karpathy_source} lists {len(missing)} image(s) that are in none of "
                        f"{', '.join(str(p) for p in annotation_files)}, e.g. cocoids {_few(missing)}: the "
                        "Karpathy split needs both captions_train2014.json and captions_val2014.json")
    log.info("MSCOCO (Karpathy split): %s images, %d captions",
             " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in SPLITS),
             sum(len(r.captions) for r in records))
    return records


SPEC = DatasetSpec(
    name="coco",
    title="MSCOCO 2014, Karpathy split",
    read=read,
    sources=sources,
    protocols=("1k", "5k"),
    downloads=("coco", "karpathy-splits", "word2vec"),
    # From /work/shared/REFERENCE_RESULTS.md, "DP-CNN (the paper)" table (R@1 / R@5 / R@10, rsum,
    # and its "how sure" column); Med r from its note "reported as 1 (i2t) and 2 (t2i) on Flickr30k
    # and COCO 1K (recalled, unverified)".
    paper_results=(
        PaperResult("coco", "1k", "MSCOCO 1K (mean of 5 folds), ResNet-50", (65.6, 89.8, 95.5),
                    (47.1, 79.9, 90.0), (1.0, 2.0), 467.9, "secondary list"),
        PaperResult("coco", "5k", "MSCOCO 5K, ResNet-50", (41.2, 70.5, 81.1), (25.3, 53.4, 66.4),
                    (None, None), 337.9, "cited verbatim"),
    ),
)
