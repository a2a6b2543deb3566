"""Flickr30k (``data.dataset=flickr30k``), with the paper's split or Karpathy's (``data.split``).

- ``paper`` (the ``flickr30k`` preset): captions from ``results_20130124.token``
  (``name.jpg#k<TAB>caption``), split as ``split_Flickr30k.m`` does it (PAPER_SPEC §6): an image
  whose Flickr id is in Flickr8k's ``Flickr_8k.testImages.txt`` is test, one in
  ``Flickr_8k.devImages.txt`` is val, the rest (29,783 on the real data) are train.
- ``karpathy`` (the ``flickr30k-karpathy`` preset): ``dataset_flickr30k.json`` (29,000 / 1,014 / 1,000).

Files under ``data.root``: ``flickr30k/results_20130124.token``, ``flickr30k/flickr30k-images/``
(behind a request form: ``dpcnn download flickr30k`` prints the steps), ``flickr8k/`` lists
(``dpcnn download flickr30k-splits``), ``karpathy/dataset_flickr30k.json``
(``dpcnn download karpathy-splits``). Captions are mapped to images **by file name** and ordered by
their ``#k`` index, never by the order of a folder listing (PAPER_SPEC §8.8).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from dpcnn.config import DataConfig
from dpcnn.data.datasets import DatasetSpec, PaperResult
from dpcnn.data.files import abs_path, download_hint, load_json, require
from dpcnn.data.karpathy import karpathy_images
from dpcnn.data.manifest import SPLITS, Exclusions, ImageRecord
from dpcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MANUAL_STEPS = """\
Flickr30k images and captions are given out only after you accept their terms of use, so
dpcnn cannot download them for you.

  1. Fill in the request form at https://shannon.cs.illinois.edu/DenotationGraph/
     - you receive the download links for the images archive (flickr30k-images.tar.gz)
     and the captions archive (flickr30k.tar.gz, which holds results_20130124.token).
  2. Unpack them so that exactly these paths exist:
       {root}/flickr30k/flickr30k-images/1000092795.jpg  ... (31,783 .jpg files)
       {root}/flickr30k/results_20130124.token           (lines "1000092795.jpg#0<TAB>caption")
     for example:
       mkdir -p {root}/flickr30k
       tar -xzf flickr30k-images.tar.gz -C {root}/flickr30k
       tar -xzf flickr30k.tar.gz -C {root}/flickr30k
       (if results_20130124.token lands in a sub-folder, move it to {root}/flickr30k/)
  3. Fetch the split lists:
       dpcnn download flickr30k-splits --root {root}   # paper split (Flickr8k test/dev lists)
       dpcnn download karpathy-splits --root {root}    # Karpathy split (29,000/1,014/1,000)
  4. Check the result: dpcnn prepare --config flickr30k   (or --config flickr30k-karpathy)
"""

FORM = ("Flickr30k images and captions come via a request form "
        "(https://shannon.cs.illinois.edu/DenotationGraph/): `dpcnn download flickr30k` prints the manual steps")

_TOKEN_LINE = "line is not 'name.jpg#k<TAB>caption'"


# --------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------


def read_token_file(token_file: str | Path, exclusions: Exclusions) -> dict[str, tuple[str, ...]]:
    """``results_20130124.token`` → {file name: captions ordered by ``#k``}.

    Lines are ``name.jpg#k<TAB>caption``; blank lines are skipped. A line of another form, or a
    (name, k) seen before, is excluded and counted with its line number; a file with no usable
    line (or not UTF-8 text) is a DataError.
    """
    token_file = Path(token_file)
    by_name: dict[str, dict[int, str]] = {}
    first = ""
    try:
        with open(token_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                problem = _add_token_line(line, by_name)
                if problem:
                    first = first or f"line {lineno}: {problem}"
                    exclusions.caption(problem, source=token_file.name, line=lineno, caption=line[:120])
    except UnicodeDecodeError as e:
        raise DataError(f"{token_file}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if not by_name:
        raise DataError(f"{token_file}: no caption line of the form 'name.jpg#k<TAB>caption'"
                        + (f"; the first problem: {first}" if first else " (the file is empty)"))
    return {name: tuple(caps[k] for k in sorted(caps)) for name, caps in by_name.items()}


def _add_token_line(line: str, by_name: dict[str, dict[int, str]]) -> str:
    """Put one token-file line into ``by_name``; the reason it cannot be used, or ""."""
    key, tab, caption = line.partition("\t")
    name, hash_, k_text = key.strip().rpartition("#")
    if not tab or not hash_ or not name or not k_text.isdigit():
        return _TOKEN_LINE
    captions = by_name.setdefault(name, {})
    if int(k_text) in captions:
        return f"caption number seen twice: {name}#{k_text}"
    captions[int(k_text)] = caption
    return ""


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
    try:
        with open(list_file, encoding="utf-8") as f:
            return {flickr_id(line.strip()) for line in f if line.strip()}
    except UnicodeDecodeError as e:
        raise DataError(f"{list_file}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def read_flickr30k_paper(token_file: str | Path, images: str | Path, test_list: str | Path,
                         dev_list: str | Path, exclusions: Exclusions) -> list[ImageRecord]:
    """Flickr30k with the paper's split (PAPER_SPEC §6).

    token_file: ``results_20130124.token``; every image named there becomes one record.
    images: the ``flickr30k-images`` folder; record path = ``images / name``.
    test_list / dev_list: Flickr8k's ``Flickr_8k.testImages.txt`` / ``Flickr_8k.devImages.txt``.
        Images match by Flickr photo id (Flickr8k names carry an extra ``_<secret>``); an image in
        both lists is test, as in ``split_Flickr30k.m``.

    Records are sorted by file name (the MATLAB ``dir`` order, so labels do not depend on the
    token file's line order); image_id = file name; captions ordered by ``#k``.
    """
    captions = read_token_file(token_file, exclusions)
    test_ids, dev_ids = read_image_list(test_list), read_image_list(dev_list)
    both = test_ids & dev_ids
    if both:
        log.warning("%d Flickr ids are in both %s and %s; they go to test", len(both), test_list, dev_list)
    folder = abs_path(images)
    records = []
    for name in sorted(captions):
        fid = flickr_id(name)
        split = "test" if fid in test_ids else "val" if fid in dev_ids else "train"
        records.append(ImageRecord(image_id=name, path=str(folder / name), split=split, captions=captions[name]))
    found = {flickr_id(r.image_id) for r in records}
    for ids, list_file in ((test_ids, test_list), (dev_ids - test_ids, dev_list)):
        absent = ids - found
        if absent:
            log.warning("%d of the %d images listed in %s are not in %s (e.g. %s)", len(absent),
                        len(ids), list_file, token_file, sorted(absent)[:3])
    _log_counts("Flickr30k (paper split)", records)
    return records


def _sentences(entry: Mapping, source: str, index: int, exclusions: Exclusions) -> tuple[str, ...]:
    """The ``raw`` captions of Karpathy entry ``images[index]``; a sentence without a string ``raw``
    is excluded and counted."""
    name, where = str(entry["filename"]), f"images[{index}]"
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list):
        exclusions.caption("'sentences' is not a list", source=source, entry=where, image_id=name)
        return ()
    out = []
    for k, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, Mapping) else None
        if isinstance(raw, str):
            out.append(raw)
            continue
        reason = "sentence has no 'raw' caption" if raw is None else f"caption is not a string ({type(raw).__name__})"
        exclusions.caption(reason, source=source, entry=f"{where}.sentences[{k}]", image_id=name, caption=raw)
    return tuple(out)


def read_flickr30k_karpathy(dataset_json: str | Path, images: str | Path, exclusions: Exclusions) -> list[ImageRecord]:
    """Flickr30k with Karpathy's split from ``dataset_flickr30k.json``.

    dataset_json: ``images[]`` with ``filename``, ``split`` (train | val | test; restval would
        count as train) and ``sentences[]`` whose ``raw`` is the caption.
    images: the ``flickr30k-images`` folder; record path = ``images / filename``.

    Records follow the file's order; image_id = file name; captions keep the ``sentences`` order.
    """
    dataset_json = Path(dataset_json)
    obj = load_json(dataset_json, "Karpathy split file (dataset_flickr30k.json)")
    folder = abs_path(images)
    records = []
    for i, split, img in karpathy_images(obj, dataset_json, "filename", exclusions):
        name = str(img["filename"])
        records.append(ImageRecord(image_id=name, path=str(folder / name), split=split,
                                   captions=_sentences(img, dataset_json.name, i, exclusions)))
    _log_counts("Flickr30k (Karpathy split)", records)
    return records


def _log_counts(what: str, records: list[ImageRecord]) -> None:
    counts = " / ".join(f"{s} {sum(r.split == s for r in records)}" for s in SPLITS)
    log.info("%s: %s images, %d captions", what, counts, sum(len(r.captions) for r in records))


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


def _paths(data: DataConfig) -> dict[str, Path]:
    root = Path(data.root)
    images = Path(data.images) if data.images else root / "flickr30k" / "flickr30k-images"
    if data.split == "karpathy":
        ann = Path(data.annotations) if data.annotations else root / "karpathy" / "dataset_flickr30k.json"
        return {"annotations": ann, "images": images}
    ann = Path(data.annotations) if data.annotations else root / "flickr30k" / "results_20130124.token"
    return {"annotations": ann, "images": images,
            "test_list": root / "flickr8k" / "Flickr_8k.testImages.txt",
            "dev_list": root / "flickr8k" / "Flickr_8k.devImages.txt"}


def _check_split(data: DataConfig) -> None:
    if data.split not in ("paper", "karpathy"):
        raise ConfigError(f"data.split for flickr30k must be paper or karpathy, got '{data.split}'")


def sources(data: DataConfig) -> dict[str, str]:
    """The captions (token file or Karpathy file), the image folder and, for the paper split, the lists."""
    _check_split(data)
    return {"split": data.split, **{k: str(v) for k, v in _paths(data).items()}}


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """Flickr30k with ``data.split`` (paper | karpathy)."""
    _check_split(data)
    p = _paths(data)
    require(p["images"], "Flickr30k image folder (flickr30k-images)", "data.images=FOLDER", FORM)
    if data.split == "karpathy":
        require(p["annotations"], "Karpathy split file (dataset_flickr30k.json)", "data.annotations=PATH",
                download_hint("karpathy-splits", data.root))
        return read_flickr30k_karpathy(p["annotations"], p["images"], exclusions)
    require(p["annotations"], "Flickr30k captions (results_20130124.token)", "data.annotations=PATH", FORM)
    for key in ("test_list", "dev_list"):
        require(p[key], f"Flickr8k image list {p[key].name}", "data.root=FOLDER (lists are read from <root>/flickr8k/)",
                download_hint("flickr30k-splits", data.root))
    return read_flickr30k_paper(p["annotations"], p["images"], p["test_list"], p["dev_list"], exclusions)


SPEC = DatasetSpec(
    name="flickr30k",
    title="Flickr30k",
    read=read,
    sources=sources,
    downloads=("flickr30k-splits", "karpathy-splits", "word2vec"),
    manual_steps=MANUAL_STEPS,
    # From /work/shared/REFERENCE_RESULTS.md, "DP-CNN (the paper)" table (R@1 / R@5 / R@10, rsum,
    # and its "how sure" column); Med r from its note "reported as 1 (i2t) and 2 (t2i) on Flickr30k
    # and COCO 1K (recalled, unverified)".
    paper_results=(
        PaperResult("flickr30k", "full", 'Flickr30k 1K test, "ResNet"', (55.6, 81.9, 89.5), (39.1, 69.2, 80.9),
                    (1.0, 2.0), 416.2, "cited verbatim by later papers; backbone may be ResNet-152"),
    ),
)
