"""A user's own captions as a CSV file (``data.dataset=csv``): one ``image,caption`` row per caption.

The header names the columns: the image column is ``image``, ``file_name``, ``filename`` or
``path`` (relative to ``data.images``), the caption column ``caption`` (or ``text``); an image
with several captions has several rows. Splits work as for COCO-format files: ``data.annotations``
is the training file or the only one, ``data.val_annotations`` / ``data.test_annotations`` are
optional, otherwise val and test are held out of the training file by image. A row without an
image or a caption is excluded and counted.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dpcnn.config import DataConfig
from dpcnn.data.datasets import DatasetSpec
from dpcnn.data.datasets.coco_format import read_split_files
from dpcnn.data.datasets.coco_format import sources as coco_format_sources
from dpcnn.data.files import abs_path
from dpcnn.data.manifest import Exclusions, ImageRecord
from dpcnn.errors import DataError

IMAGE_COLUMNS, CAPTION_COLUMNS = ("image", "file_name", "filename", "path"), ("caption", "text")


def read_csv(path: Path, images: Path, split: str, exclusions: Exclusions) -> list[ImageRecord]:
    """One record per image of a captions CSV, captions in row order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            image_col = next((reader.fieldnames[i] for i, h in enumerate(header) if h in IMAGE_COLUMNS), None)
            caption_col = next((reader.fieldnames[i] for i, h in enumerate(header) if h in CAPTION_COLUMNS), None)
            if image_col is None or caption_col is None:
                raise DataError(f"{path}: a captions CSV needs a header with an image column "
                                f"({'/'.join(IMAGE_COLUMNS)}) and a caption column ({'/'.join(CAPTION_COLUMNS)}), "
                                f"got {reader.fieldnames}")
            captions: dict[str, list[str]] = {}
            for line, row in enumerate(reader, start=2):
                name, caption = (row.get(image_col) or "").strip(), row.get(caption_col) or ""
                if not name or not caption.strip():
                    exclusions.caption("row without an image or a caption", source=str(path), line=line)
                    continue
                captions.setdefault(name, []).append(caption)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from e
    if not captions:
        raise DataError(f"{path}: no row with an image and a caption")
    folder = abs_path(images)
    return [ImageRecord(image_id=name, path=str(folder / name), split=split, captions=tuple(caps))
            for name, caps in captions.items()]


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """The records of the given CSV files, with val/test held out where no file gives them."""
    return read_split_files(data, lambda split, path, images: read_csv(path, images, split, exclusions),
                            "captions CSV", "the image names of")


SPEC = DatasetSpec(name="csv", title="your own captions as a CSV file (image,caption rows)", read=read,
                   sources=coco_format_sources, downloads=("word2vec",))
