"""Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json`` of caption_datasets.zip).

Each is ``{"images": [{"split", <key>, "sentences": [{"raw"}...], ...}], "dataset"}``, where the key
that names an image is ``cocoid`` (COCO) or ``filename`` (Flickr30k). ``restval`` counts as train
(113,287 / 5,000 / 5,000 COCO images; 29,000 / 1,014 / 1,000 Flickr30k images).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpcnn.data.coco_captions import is_coco_format
from dpcnn.data.manifest import Exclusions
from dpcnn.errors import DataError

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
"""Karpathy split names → ours (``restval`` is part of the training set)."""


def karpathy_images(obj: Any, source: str | Path, key: str,
                    exclusions: Exclusions) -> list[tuple[int, str, Mapping[str, Any]]]:
    """(index in ``images[]``, our split, entry) for every usable entry of a parsed Karpathy split file, in file order.

    An entry without ``key`` or ``split`` is excluded and counted; a file that is not a Karpathy
    file, a split name outside train | restval | val | test, or a ``key`` seen twice is a DataError.
    """
    source = Path(source)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("images"), list):
        hint = " (this is a COCO-format captions file, not a Karpathy split file)" if is_coco_format(obj) else ""
        raise DataError(f"{source}: a Karpathy split file is a JSON object with an 'images' list{hint}")
    out: list[tuple[int, str, Mapping[str, Any]]] = []
    seen: dict[Any, int] = {}
    for i, img in enumerate(obj["images"]):
        missing = [k for k in (key, "split") if not isinstance(img, Mapping) or k not in img]
        if missing or not isinstance(img[key], (int, str)):
            exclusions.image(f"Karpathy entry without a usable '{(missing or [key])[0]}'", source=source.name,
                             entry=f"images[{i}]")
            continue
        if img["split"] not in KARPATHY_SPLITS:
            raise DataError(f"{source}: images[{i}] ({key} {img[key]!r}) has split {img['split']!r}; "
                            f"expected one of {', '.join(KARPATHY_SPLITS)}")
        if img[key] in seen:
            raise DataError(f"{source}: {key} {img[key]!r} appears twice (images[{seen[img[key]]}] and images[{i}])")
        seen[img[key]] = i
        out.append((i, KARPATHY_SPLITS[img["split"]], img))
    return out
