"""Flickr30k → :class:`ImageRecord` lists, with the paper's split or Karpathy's.

- :func:`read_flickr30k_paper`: captions from ``results_20130124.token``
  (``name.jpg#k<TAB>caption``), split as ``split_Flickr30k.m`` does it (PAPER_SPEC §6): an image
  whose Flickr id is in Flickr8k's ``Flickr_8k.testImages.txt`` is test, one in
  ``Flickr_8k.devImages.txt`` is val, the rest (29,783 on the real data) are train.
- :func:`read_flickr30k_karpathy`: Karpathy's ``dataset_flickr30k.json`` (29,000 / 1,014 / 1,000).

Captions are mapped to images **by file name** and ordered by their ``#k`` index, never by the
order of a folder listing (PAPER_SPEC §8.8). Images are not opened here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from dpcnn.data.coco import KARPATHY_SPLITS, abs_path, karpathy_images, load_json_source
from dpcnn.data.manifest import ImageRecord

log = logging.getLogger(__name__)


def read_token_file(token_file: str | Path) -> dict[str, tuple[str, ...]]:
    """``results_20130124.token`` → {file name: captions ordered by ``#k``}.

    Lines are ``name.jpg#k<TAB>caption``; blank lines are skipped. A line that does not have that
    form, or a (name, k) pair seen twice, raises ValueError with the line number.
    """
    token_file = Path(token_file)
    by_name: dict[str, dict[int, str]] = {}
    expected = "expected 'name.jpg#k<TAB>caption'"
    try:
        with open(token_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                key, tab, caption = line.partition("\t")
                name, hash_, k_text = key.strip().rpartition("#")
                if not tab or not hash_ or not name or not k_text.isdigit():
                    raise ValueError(f"{token_file}, line {lineno}: {expected}, got {line[:80]!r}")
                k = int(k_text)
                captions = by_name.setdefault(name, {})
                if k in captions:
                    raise ValueError(f"{token_file}, line {lineno}: caption {name}#{k} appears twice")
                captions[k] = caption
    except UnicodeDecodeError as e:
        raise ValueError(f"{token_file}: not a UTF-8 text file ({e})") from e
    return {name: tuple(caps[k] for k in sorted(caps)) for name, caps in by_name.items()}


def flickr_id(file_name: str) -> str:
    """The Flickr photo id of a file name: ``1000092795.jpg`` → ``1000092795``;
    Flickr8k's ``2513260012_03d33305cf.jpg`` → ``2513260012`` (``split_Flickr30k.m`` drops the
    last 15 characters, i.e. ``_<secret>.jpg``)."""
    stem = file_name.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return stem.split("_", 1)[0]


def read_image_list(list_file: str | Path) -> set[str]:
    """A Flickr8k image list (one file name a line) → the set of Flickr ids it names."""
    list_file = Path(list_file)
    with open(list_file, encoding="utf-8") as f:
        return {flickr_id(line.strip()) for line in f if line.strip()}


def read_flickr30k_paper(token_file: str | Path, images: str | Path, test_list: str | Path,
                         dev_list: str | Path) -> list[ImageRecord]:
    """Flickr30k with the paper's split (PAPER_SPEC §6).

    token_file: ``results_20130124.token``; every image named there becomes one record.
    images: the ``flickr30k-images`` folder; record path = ``images / name``.
    test_list / dev_list: Flickr8k's ``Flickr_8k.testImages.txt`` / ``Flickr_8k.devImages.txt``.
        Images match by Flickr photo id (Flickr8k names carry an extra ``_<secret>``); an image in
        both lists is test, as in ``split_Flickr30k.m``.

    Records are sorted by file name (the MATLAB ``dir`` order, so labels do not depend on the
    token file's line order); image_id = file name; captions ordered by ``#k``.
    """
    captions = read_token_file(token_file)
    test_ids, dev_ids = read_image_list(test_list), read_image_list(dev_list)
    both = test_ids & dev_ids
    if both:
        log.warning("%d Flickr ids are in both %s and %s; they go to test", len(both), test_list, dev_list)
    images = abs_path(images)
    records = []
    for name in sorted(captions):
        fid = flickr_id(name)
        split = "test" if fid in test_ids else "val" if fid in dev_ids else "train"
        records.append(ImageRecord(image_id=name, path=str(images / name), split=split,
                                   captions=captions[name]))
    found = {flickr_id(r.image_id) for r in records}
    for ids, list_file in ((test_ids, test_list), (dev_ids - test_ids, dev_list)):
        absent = ids - found
        if absent:
            log.warning("%d of the %d images listed in %s are not in %s (e.g. %s)", len(absent),
                        len(ids), list_file, token_file, sorted(absent)[:3])
    _log_counts("Flickr30k (paper split)", records)
    return records


def read_flickr30k_karpathy(dataset_json: str | Path, images: str | Path) -> list[ImageRecord]:
    """Flickr30k with Karpathy's split from ``dataset_flickr30k.json``.

    dataset_json: ``images[]`` with ``filename``, ``split`` (train | val | test; restval would
        count as train) and ``sentences[]`` whose ``raw`` is the caption.
    images: the ``flickr30k-images`` folder; record path = ``images / filename``.

    Records follow the file's order; image_id = file name; captions keep the ``sentences`` order.
    """
    dataset_json = Path(dataset_json)
    obj = load_json_source(dataset_json, "Karpathy split file (dataset_flickr30k.json)")
    images = abs_path(images)
    records = []
    seen: set[str] = set()
    for i, img in enumerate(karpathy_images(obj, dataset_json, "filename")):
        name = img["filename"]
        if name in seen:
            raise ValueError(f"{dataset_json}: filename {name!r} appears twice (images[{i}])")
        seen.add(name)
        sentences = img.get("sentences", [])
        if not isinstance(sentences, list) or not all(
                isinstance(s, Mapping) and isinstance(s.get("raw"), str) for s in sentences):
            raise ValueError(f"{dataset_json}: images[{i}] ({name}): 'sentences' must be a list of "
                             f"objects with a string 'raw'")
        records.append(ImageRecord(image_id=name, path=str(images / name),
                                   split=KARPATHY_SPLITS[img["split"]],
                                   captions=tuple(s["raw"] for s in sentences)))
    _log_counts("Flickr30k (Karpathy split)", records)
    return records


def _log_counts(what: str, records: list[ImageRecord]) -> None:
    counts = " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in ("train", "val", "test"))
    log.info("%s: %s images, %d captions", what, counts, sum(len(r.captions) for r in records))
