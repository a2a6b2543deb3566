"""CUHK-PEDES (``data.dataset=cuhk-pedes``): ``reid_raw.json`` and the ``imgs/`` folder.

``reid_raw.json`` is a list of ``{"split", "captions", "file_path", "id", "processed_tokens"}``.
The instance classes are person IDs (PAPER_SPEC §3.1): ``identity = str(id)``, so every image of a
person shares one training label. The file's order is kept: it is train 34,054 / val 3,078 /
test 3,074 images in that order on the real data (PAPER_SPEC §6; ``prepare_imdb.m`` assigns the
sets by position, we read each entry's ``split`` and log a warning where the two would differ).
The data comes on request from its authors (``dpcnn download cuhk-pedes`` prints the steps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpcnn.config import DataConfig
from dpcnn.data.datasets import DatasetSpec, PaperResult
from dpcnn.data.files import abs_path, load_json, require
from dpcnn.data.manifest import SPLITS, Exclusions, ImageRecord
from dpcnn.errors import DataError

log = logging.getLogger(__name__)

MANUAL_STEPS = """\
CUHK-PEDES is given out by its authors on request, so dpcnn cannot download it for you.

  1. Request the dataset from the authors as described at
       https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description
  2. Put the files so that these paths exist:
       {root}/cuhk-pedes/reid_raw.json      (the annotations: one record per image, with
                                            its person "id", "file_path" and "captions")
       {root}/cuhk-pedes/imgs/<file_path>   for every record of reid_raw.json: keep the
                                            sub-folders of the images archive as they are
  3. Check the result: dpcnn prepare --config cuhk-pedes
     (images that reid_raw.json names but that are missing or unreadable are reported)
"""

FORM = ("CUHK-PEDES comes via a request form "
        "(https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description): "
        "`dpcnn download cuhk-pedes` prints the manual steps")


def _entry_problem(entry: Any) -> str:
    """Why one ``reid_raw.json`` entry cannot be an image record, or ""."""
    if not isinstance(entry, Mapping):
        return "entry is not an object"
    if not isinstance(entry.get("file_path"), str) or not entry["file_path"].strip():
        return "entry has no usable file_path"
    if "split" not in entry:
        return "entry has no split"
    if isinstance(entry.get("id"), bool) or not isinstance(entry.get("id"), (int, str)):
        return "entry has no usable person id"
    if not isinstance(entry.get("captions"), list):
        return "entry has no captions list"
    return ""


def _captions(entry: Mapping[str, Any], source: str, index: int, exclusions: Exclusions) -> tuple[str, ...]:
    """The string captions of entry ``[index]``; the others are excluded and counted."""
    out = []
    for k, caption in enumerate(entry["captions"]):
        if isinstance(caption, str):
            out.append(caption)
        else:
            exclusions.caption(f"caption is not a string ({type(caption).__name__})", source=source,
                               entry=f"[{index}].captions[{k}]", image_id=entry["file_path"], caption=caption)
    return tuple(out)


def read_cuhk_pedes(reid_raw: str | Path, images: str | Path, exclusions: Exclusions) -> list[ImageRecord]:
    """Read ``reid_raw.json``.

    reid_raw: the JSON list described in the module docstring.
    images: the ``imgs`` folder; record path = ``images / file_path``.

    image_id = ``file_path`` (e.g. ``CUHK01/0363004.png``), identity = ``str(id)``, captions in the
    file's order. An unusable entry or caption is excluded and counted; a file that is not a list,
    a split other than train | val | test, or a file without any usable entry is a DataError.
    """
    reid_raw = Path(reid_raw)
    obj = load_json(reid_raw, "CUHK-PEDES reid_raw.json")
    if not isinstance(obj, list):
        raise DataError(f"{reid_raw}: reid_raw.json is a JSON list of images, got a JSON {type(obj).__name__}")
    folder = abs_path(images)
    records = []
    for i, entry in enumerate(obj):
        problem = _entry_problem(entry)
        if problem:
            exclusions.image(problem, source=reid_raw.name, entry=f"[{i}]")
            continue
        if entry["split"] not in SPLITS:
            raise DataError(f"{reid_raw}: entry {i} ({entry['file_path']}) has split {entry['split']!r}; "
                            f"expected one of {', '.join(SPLITS)}")
        records.append(ImageRecord(image_id=entry["file_path"], path=str(folder / entry["file_path"]),
                                   split=entry["split"], captions=_captions(entry, reid_raw.name, i, exclusions),
                                   identity=str(entry["id"])))
    if not records:
        raise DataError(f"{reid_raw}: no usable entry" + (f"; the first: [0]: {_entry_problem(obj[0])}" if obj else
                                                          " (the list is empty)"))
    _warn_if_not_contiguous(records, reid_raw)
    log.info("CUHK-PEDES: %s images, %d captions, %d training IDs",
             " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in SPLITS),
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


def _paths(data: DataConfig) -> dict[str, Path]:
    root = Path(data.root) / "cuhk-pedes"
    return {"annotations": Path(data.annotations) if data.annotations else root / "reid_raw.json",
            "images": Path(data.images) if data.images else root / "imgs"}


def sources(data: DataConfig) -> dict[str, str]:
    """``reid_raw.json`` and the image folder."""
    return {"split": "reid_raw.json", **{k: str(v) for k, v in _paths(data).items()}}


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """CUHK-PEDES with the split of ``reid_raw.json``."""
    p = _paths(data)
    require(p["annotations"], "CUHK-PEDES reid_raw.json", "data.annotations=PATH", FORM)
    require(p["images"], "CUHK-PEDES image folder (imgs)", "data.images=FOLDER", FORM)
    return read_cuhk_pedes(p["annotations"], p["images"], exclusions)


SPEC = DatasetSpec(
    name="cuhk-pedes",
    title="CUHK-PEDES (person search)",
    read=read,
    sources=sources,
    by_identity=True,
    protocols=("reid",),
    downloads=("word2vec",),
    manual_steps=MANUAL_STEPS,
    # From /work/shared/REFERENCE_RESULTS.md, "DP-CNN (the paper)" table (text→image only).
    paper_results=(
        PaperResult("cuhk-pedes", "reid", "CUHK-PEDES (t2i only), ResNet-50", None, (44.40, 66.26, 75.07),
                    (None, None), None, "cited verbatim"),
    ),
)
