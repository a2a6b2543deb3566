"""A user's own COCO-format captions files (``data.dataset=coco-format``; DESIGN §1).

``data.annotations`` is the training file, or the only one; ``data.val_annotations`` and
``data.test_annotations`` are optional; every ``file_name`` is relative to ``data.images``. A split
without its own file is held out of the training file by image, with ``data.split_seed``:
``data.holdout_images`` images each, or by default 10 % of the file's captioned images each (at
most 1,000, at least 1; the numbers are logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dpcnn.config import DataConfig
from dpcnn.data.coco_captions import coco_records_from_dict
from dpcnn.data.datasets import DatasetSpec
from dpcnn.data.files import load_json, require
from dpcnn.data.manifest import SPLITS, Exclusions, ImageRecord
from dpcnn.data.splits import DEFAULT_HOLDOUT_MAX, holdout_size, split_by_image
from dpcnn.errors import ConfigError

log = logging.getLogger(__name__)


_KIND = {"coco-format": "a COCO-format captions file", "csv": "a CSV of image,caption rows"}


def _files(data: DataConfig) -> dict[str, Path]:
    """{split: captions file} for the files given (train always)."""
    if not data.annotations:
        raise ConfigError(f"data.dataset={data.dataset} needs data.annotations=PATH "
                          f"({_KIND.get(data.dataset, _KIND['coco-format'])}: the training file, or the only one) "
                          "and data.images=FOLDER")
    given = {"train": data.annotations, "val": data.val_annotations, "test": data.test_annotations}
    return {split: Path(path) for split, path in given.items() if path}


def _setting(split: str) -> str:
    return "data.annotations" if split == "train" else f"data.{split}_annotations"


def _held_out(data: DataConfig) -> tuple[str, ...]:
    return tuple(s for s in ("val", "test") if s not in _files(data))


def sources(data: DataConfig) -> dict[str, str]:
    """The captions files, the image folder and how val/test are made."""
    out = {("annotations" if s == "train" else f"{s}_annotations"): str(p) for s, p in _files(data).items()}
    out["images"] = data.images
    held_out = _held_out(data)
    if not held_out:
        out["split"] = "given files"
    else:
        size = (f"{data.holdout_images}" if data.holdout_images else f"10 % (at most {DEFAULT_HOLDOUT_MAX:,})")
        out["split"] = f"by image: {size} for each of {' and '.join(held_out)}, seed {data.split_seed}"
    return out


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """The records of the given files, with val/test held out where no file gives them."""
    return read_own_files(data, exclusions)


def read_own_files(data: DataConfig, exclusions: Exclusions, train_obj: Any = None) -> list[ImageRecord]:
    """:func:`read`; ``train_obj``: the training file already parsed (``dataset=coco`` detected it)."""

    def read_one(split: str, path: Path, images: Path) -> list[ImageRecord]:
        obj = train_obj if split == "train" and train_obj is not None else load_json(path, "COCO-format captions file")
        return coco_records_from_dict(obj, path, images, split, exclusions)

    return read_split_files(data, read_one, "COCO-format captions file", "the 'file_name' entries of")


def read_split_files(data: DataConfig, read_one: Callable[[str, Path, Path], list[ImageRecord]], what: str,
                     names: str) -> list[ImageRecord]:
    """A user's own files in any format: ``read_one(split, file, image folder)`` reads each given
    file; then val/test are held out of the training file where no file gives them. ``what`` names
    a file, ``names`` the entries that are relative to ``data.images`` (for the messages)."""
    files = _files(data)
    if not data.images:
        raise ConfigError(f"data.images=FOLDER is needed: the folder that {names} {data.annotations} are relative to")
    images = require(Path(data.images), "image folder", "data.images=FOLDER", "Check the path")
    per_split = {}
    for split, path in files.items():
        require(path, f"{what} for {split}", f"{_setting(split)}=PATH", "Check the path")
        per_split[split] = read_one(split, path, images)
    per_split = _namespace_colliding_ids(per_split)
    records = [r for split in SPLITS for r in per_split.get(split, [])]
    held_out = _held_out(data)
    return _hold_out(records, data, held_out, files["train"]) if held_out else records


def _hold_out(records: list[ImageRecord], data: DataConfig, splits: tuple[str, ...],
              source: Path) -> list[ImageRecord]:
    """Hold ``splits`` out of the training file's records (``data.holdout_images`` or 10 % each)."""
    train = [r for r in records if r.split == "train"]
    captioned = sum(1 for r in train if r.captions)
    size = holdout_size(data.holdout_images, captioned)
    why = ("data.holdout_images" if data.holdout_images else
           f"10 % of its {captioned} captioned images, at most {DEFAULT_HOLDOUT_MAX:,}, at least 1")
    log.info("holding out %d images for each of %s from %s (%s; seed %d)", size, " and ".join(splits),
             source, why, data.split_seed)
    split_train = iter(split_by_image(train, holdout=size, seed=data.split_seed, splits=splits))
    return [next(split_train) if r.split == "train" else r for r in records]


def _namespace_colliding_ids(per_split: dict[str, list[ImageRecord]]) -> dict[str, list[ImageRecord]]:
    """Separate files may number their images independently: if an id is reused for a *different*
    file name, prefix the val/test ids with ``<split>:``. The same image in two files stays as it
    is, and ``check_disjoint`` reports the overlap."""
    owner: dict[str, str] = {}
    clash = False
    for split in SPLITS:
        for r in per_split.get(split, []):
            clash = clash or owner.get(r.image_id, r.path) != r.path
            owner.setdefault(r.image_id, r.path)
    if not clash:
        return per_split
    log.warning("the captions files reuse image ids for different images: val/test ids get a "
                "'val:' / 'test:' prefix")
    return {split: [replace(r, image_id=f"{split}:{r.image_id}", identity="") if split != "train" else r
                    for r in recs] for split, recs in per_split.items()}


SPEC = DatasetSpec(
    name="coco-format",
    title="your own COCO-format captions files",
    read=read,
    sources=sources,
    downloads=("word2vec",),
)
