"""The OpenMoji emoji (``data.dataset=emoji``): ``{root}/emoji/emoji.json`` and its 72-px renderings.

Not a paper dataset: a small real image-text set that trains on a CPU. ``emoji.json`` is written by
:mod:`dpcnn.data.emoji_source` (``dpcnn download emoji``, or ``--from`` a local OpenMoji copy).
One record per rendering (``color/<HEXCODE>``, ``black/<HEXCODE>``), identity = the hexcode, so
an emoji's renderings share one stage-I class (``by_identity``) and the ``class`` protocol counts
either as a hit. Each record carries its emoji's captions: the annotation ("grinning face"), the
tags as one caption ("cheerful, cheery, face, …") and the OpenMoji tags as another ("smile,
happy"), the empty ones left out.

Split by emoji, from the hexcode alone (the first 8 bytes of its sha256, modulo 10: 0-7 train,
8 val, 9 test), so every rendering of an emoji is in one split and the split never depends on
the file's order. A rendering whose PNG is byte-identical to another emoji's (OpenMoji draws many
flags, coloured circles and hearts alike in black line art) is excluded and counted: no model
could tell those emoji apart from that image. Word vectors are trained with gensim at prepare.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpcnn.config import DataConfig
from dpcnn.data.datasets import DatasetSpec
from dpcnn.data.emoji_source import FOLDER, NPM_PACK, OPENMOJI_VERSION, TABLE
from dpcnn.data.files import abs_path, load_json, require
from dpcnn.data.manifest import SPLITS, Exclusions, ImageRecord
from dpcnn.errors import DataError

log = logging.getLogger(__name__)


def how_to_get(root: str | Path) -> str:
    """The sentence of a missing-file error: the download, or the conversion of a local copy."""
    return (f"Get it with `dpcnn download emoji --root {root}`, or make it from the OpenMoji npm package: "
            f"`dpcnn download emoji --from openmoji-{OPENMOJI_VERSION}.tgz --root {root}` "
            f"(the .tgz made by `{NPM_PACK}`) or `--from <its extracted folder>`")


def split_of(hexcode: str) -> str:
    """train | val | test of an emoji: the first 8 bytes of sha256(hexcode) modulo 10 (0-7, 8, 9)."""
    bucket = int.from_bytes(hashlib.sha256(hexcode.encode("utf-8")).digest()[:8], "big") % 10
    return "train" if bucket < 8 else SPLITS[bucket - 7]


def captions_of(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The annotation, the tags and the OpenMoji tags: the non-empty ones, each once."""
    out: list[str] = []
    for key in ("annotation", "tags", "openmoji_tags"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in out:
            out.append(value.strip())
    return tuple(out)


def _entry_problem(entry: Any) -> str:
    """Why one ``emoji.json`` entry cannot give records, or ""."""
    if not isinstance(entry, Mapping):
        return "entry is not an object"
    if not isinstance(entry.get("hexcode"), str) or not entry["hexcode"].strip():
        return "entry has no usable hexcode"
    if not isinstance(entry.get("images"), list):
        return "entry has no images list"
    return ""


def _image_problem(image: Any) -> str:
    if not isinstance(image, Mapping) or not all(isinstance(image.get(k), str) and image[k]
                                                 for k in ("style", "file", "sha256")):
        return "image entry needs a style, a file and a sha256"
    return ""


def _without_shared_renderings(records: list[ImageRecord], digests: list[str], exclusions: Exclusions,
                               source: str) -> list[ImageRecord]:
    """Drop every rendering whose PNG is identical to a rendering of another emoji (counted)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for rec, digest in zip(records, digests):
        owners[digest].add(rec.identity)
    kept = []
    for rec, digest in zip(records, digests):
        if len(owners[digest]) > 1:
            exclusions.image(f"rendering identical to another emoji's ({len(owners[digest])} emoji share it)",
                             image_id=rec.image_id, path=rec.path, split=rec.split, source=source)
        else:
            kept.append(rec)
    return kept


def read_emoji(table: str | Path, folder: str | Path, exclusions: Exclusions) -> list[ImageRecord]:
    """The records of ``emoji.json`` (module docstring); image paths are ``folder / file``.

    An unusable entry or image entry is excluded and counted; a file that is not a JSON object
    with an ``emoji`` list, or one without a usable entry, is a DataError.
    """
    table = Path(table)
    obj = load_json(table, "emoji table (emoji.json)")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("emoji"), list):
        raise DataError(f"{table}: emoji.json is a JSON object with an 'emoji' list (made by `dpcnn download emoji`)")
    folder = abs_path(folder)
    records, digests = [], []
    for i, entry in enumerate(obj["emoji"]):
        problem = _entry_problem(entry)
        if problem:
            exclusions.image(problem, source=table.name, entry=f"emoji[{i}]")
            continue
        hexcode, captions = entry["hexcode"].strip(), captions_of(entry)
        for k, image in enumerate(entry["images"]):
            problem = _image_problem(image)
            if problem:
                exclusions.image(problem, source=table.name, entry=f"emoji[{i}].images[{k}]", image_id=hexcode)
                continue
            records.append(ImageRecord(image_id=f"{image['style']}/{hexcode}", path=str(folder / image["file"]),
                                       split=split_of(hexcode), captions=captions, identity=hexcode))
            digests.append(image["sha256"])
    if not records:
        raise DataError(f"{table}: no usable emoji entry")
    records = _without_shared_renderings(records, digests, exclusions, table.name)
    log.info("emoji: %s images, %d emoji in train", " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in SPLITS),
             len({r.identity for r in records if r.split == "train"}))
    return records


def _paths(data: DataConfig) -> dict[str, Path]:
    root = Path(data.root) / FOLDER
    return {"annotations": Path(data.annotations) if data.annotations else root / TABLE,
            "images": Path(data.images) if data.images else root}


def sources(data: DataConfig) -> dict[str, str]:
    """``emoji.json`` and the folder its image files are relative to."""
    return {"split": "by emoji (sha256 of the hexcode)", **{k: str(v) for k, v in _paths(data).items()}}


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """The emoji of ``{root}/emoji/emoji.json`` (or ``data.annotations``)."""
    p = _paths(data)
    require(p["annotations"], "emoji table (emoji.json)", "data.annotations=PATH", how_to_get(data.root))
    return read_emoji(p["annotations"], p["images"], exclusions)


SPEC = DatasetSpec(
    name="emoji",
    title="OpenMoji emoji (CC BY-SA 4.0)",
    read=read,
    sources=sources,
    by_identity=True,
    protocols=("class",),
    downloads=("emoji",),
    word_vectors="trained",
)
