"""``dpcnn prepare``: validate images and captions, build the vocabulary and embedding cache.

Steps (DESIGN §3 "bad input"): read the dataset's records → decode every image (missing and
corrupt ones are excluded) → drop empty captions → build the vocabulary from the training
captions (PAPER_SPEC §2.1; Flickr30k paper: train + val) intersected with the word vectors →
drop captions with no in-vocabulary word → drop images left without a caption → label the
training images → write the folder that :func:`dpcnn.data.prepared.load_prepared` reads, with
``data_report.json`` listing every exclusion and its reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from dpcnn.config import Config, fingerprint
from dpcnn.data import prepared as P
from dpcnn.data.manifest import SPLITS, ImageRecord, assign_labels, save_manifest
from dpcnn.data.vocab import tokenize
from dpcnn.utils import atomic_write_json, read_json

log = logging.getLogger(__name__)

_PREPARE_KEYS = (
    "dataset", "root", "annotations", "images", "val_annotations", "test_annotations", "split",
    "split_seed", "holdout_images", "word_vectors", "lowercase", "split_chars", "vocab_splits",
    "pixel_mean",
)
MAX_LISTED = 1000  # exclusions listed one by one in the report (all are counted)


def prepare_key(cfg: Config) -> dict:
    """The config values that determine the prepared data (training-only values are left out)."""
    key = {k: getattr(cfg.data, k) for k in _PREPARE_KEYS}
    if cfg.data.dataset == "synthetic":
        key["synthetic"] = dataclasses.asdict(cfg.synthetic)
    return key


def prepared_dir(cfg: Config) -> Path:
    """``data.prepared_dir``, or ``<root>/prepared/<dataset>-<hash of the prepare key>``."""
    if cfg.data.prepared_dir:
        return Path(cfg.data.prepared_dir)
    return Path(cfg.data.root) / "prepared" / f"{cfg.data.dataset}-{fingerprint(prepare_key(cfg))}"


def default_word_vectors(cfg: Config) -> Path:
    """GoogleNews under ``data.root/word2vec`` (the unpacked .bin if present, else the .bin.gz)."""
    folder = Path(cfg.data.root) / "word2vec"
    plain = folder / "GoogleNews-vectors-negative300.bin"
    return plain if plain.exists() else folder / "GoogleNews-vectors-negative300.bin.gz"


def is_prepared(cfg: Config) -> bool:
    done = prepared_dir(cfg) / P.DONE
    return done.exists() and read_json(done).get("key") == _jsonable(prepare_key(cfg))


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj))


def ensure_prepared(cfg: Config, force: bool = False, progress: bool = True) -> P.PreparedData:
    """Prepare once (or again with ``force``), then load."""
    if force or not is_prepared(cfg):
        log.info("data report:\n%s", summarize(prepare(cfg, progress=progress)))
    return P.load_prepared(prepared_dir(cfg), cfg.data.max_len)


def _synthetic_files(cfg: Config, progress: bool) -> dict[str, Path]:
    from dpcnn.data import synthetic

    out = synthetic.dataset_dir(Path(cfg.data.root), cfg.synthetic)
    log.info("synthetic dataset: %s", out)
    return synthetic.generate(cfg.synthetic, out)


def prepare(cfg: Config, progress: bool = True) -> dict:
    """Run every check and write the prepared folder; returns the data report."""
    from dpcnn.data.image_check import check_images
    from dpcnn.data.sources import describe_sources, load_records
    from dpcnn.data.word_vectors import cached_vocabulary_and_matrix, train_word_vectors

    out = prepared_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / P.DONE).unlink(missing_ok=True)
    synthetic_files = _synthetic_files(cfg, progress) if cfg.data.dataset == "synthetic" else None
    records = load_records(cfg.data, synthetic_files)
    log.info("%d images read from %s", len(records), cfg.data.dataset)

    excluded_images: list[dict] = []
    excluded_captions: list[dict] = []
    reasons: Counter[str] = Counter()

    def drop_image(rec: ImageRecord, reason: str) -> None:
        reasons[reason.split(":")[0]] += 1
        if len(excluded_images) < MAX_LISTED:
            excluded_images.append({"image_id": rec.image_id, "path": rec.path, "split": rec.split, "reason": reason})

    def drop_caption(rec: ImageRecord, caption: str, reason: str) -> None:
        reasons[reason] += 1
        if len(excluded_captions) < MAX_LISTED:
            excluded_captions.append({"image_id": rec.image_id, "split": rec.split, "caption": caption, "reason": reason})

    # 1. images
    good, failures = check_images([r.path for r in records], progress=progress)
    kept: list[ImageRecord] = []
    for i, rec in enumerate(records):
        if i in failures:
            drop_image(rec, failures[i])
        else:
            kept.append(rec)

    # 2. empty captions
    def clean(rec: ImageRecord, keep) -> ImageRecord:
        caps = []
        for c in rec.captions:
            reason = keep(rec, c)
            if reason:
                drop_caption(rec, c, reason)
            else:
                caps.append(c)
        return dataclasses.replace(rec, captions=tuple(caps))

    split_chars, lower = cfg.data.split_chars, cfg.data.lowercase
    # Training drops captions it cannot learn from; val/test keep every caption, as the official
    # test code does (a caption with no in-vocabulary word has the bias-only feature; the COCO 5K
    # protocol is defined on all 25,000 captions).
    train_only = lambda keep: lambda rec, c: keep(c) if rec.split == "train" else ""  # noqa: E731
    kept = [clean(r, train_only(lambda c: "" if tokenize(c, split_chars, lower) else "empty caption")) for r in kept]

    # 3. word vectors and vocabulary from the vocabulary splits (never test)
    vocab_captions = [c for r in kept if r.split in cfg.data.vocab_splits for c in r.captions]
    if cfg.data.word_vectors:
        vectors = Path(cfg.data.word_vectors)
    elif cfg.data.dataset == "synthetic":
        vectors = out / "word_vectors.bin"
        sentences = [tokenize(c, split_chars, lower) for r in kept if r.split == "train" for c in r.captions]
        train_word_vectors(sentences, cfg.synthetic.word_dim, cfg.synthetic.seed, vectors)
    else:
        vectors = default_word_vectors(cfg)
    vocab, matrix, vocab_report = cached_vocabulary_and_matrix(out, vocab_captions, vectors, split_chars, lower)

    # 4. captions without an in-vocabulary word, then images without a caption
    kept = [clean(r, train_only(lambda c: "" if vocab.encode(c, cfg.data.max_len) else "no in-vocabulary word"))
            for r in kept]
    usable = []
    for rec in kept:
        if rec.captions:
            usable.append(rec)
        else:
            drop_image(rec, "no usable caption")
    usable = assign_labels(usable)

    # 5. pixel mean over the training images (PAPER_SPEC §1: dataset RGB mean)
    index_of = {id(r): i for i, r in enumerate(records)}
    del index_of
    info_by_id = {rec.image_id: good[i] for i, rec in enumerate(records) if i in good}
    if cfg.data.pixel_mean:
        pixel_mean = list(cfg.data.pixel_mean)
        mean_source = "config"
    else:
        train_means = [info_by_id[r.image_id].mean_rgb for r in usable if r.split == "train"]
        if not train_means:
            raise ValueError("no usable training image: see data_report.json for the exclusions")
        pixel_mean = [sum(m[c] for m in train_means) / len(train_means) for c in range(3)]
        mean_source = f"mean of {len(train_means)} training images"

    counts = {s: {"images": sum(r.split == s for r in usable),
                  "captions": sum(len(r.captions) for r in usable if r.split == s)} for s in SPLITS}
    for s in ("train", "test"):
        if counts[s]["images"] == 0:
            raise ValueError(f"the {s} split has no usable image after the checks: see {out / P.REPORT}")
    lengths = [len(vocab.encode(c, 10**6)) for r in usable for c in r.captions]
    kept_empty = {s: sum(not vocab.encode(c, 1) for r in usable if r.split == s for c in r.captions)
                  for s in ("val", "test")}
    report = {
        "dataset": cfg.data.dataset,
        "prepared_dir": str(out),
        "sources": {k: str(v) for k, v in describe_sources(cfg.data, synthetic_files).items()},
        "word_vectors": str(vectors),
        "counts": counts,
        "num_classes": len({r.label for r in usable if r.split == "train"}),
        "excluded_counts": dict(reasons),
        "excluded_images": excluded_images,
        "excluded_captions": excluded_captions,
        "vocabulary": vocab_report,
        "max_len": cfg.data.max_len,
        "captions_longer_than_max_len": int(sum(n > cfg.data.max_len for n in lengths)),
        "kept_without_vocabulary_word": kept_empty,
        "pixel_mean": pixel_mean,
        "pixel_mean_source": mean_source,
    }
    save_manifest(usable, out / P.MANIFEST)
    atomic_write_json(out / P.IMAGES, {
        "pixel_mean": pixel_mean,
        "sizes": {r.image_id: [info_by_id[r.image_id].height, info_by_id[r.image_id].width] for r in usable},
    })
    atomic_write_json(out / P.REPORT, report)
    atomic_write_json(out / P.DONE, {"key": _jsonable(prepare_key(cfg))})
    log.info("prepared data written to %s", out)
    return report


def summarize(report: dict) -> str:
    """A short human summary of a data report."""
    lines = [f"dataset {report['dataset']} → {report['prepared_dir']}"]
    for split, c in report["counts"].items():
        lines.append(f"  {split:5s}: {c['images']:7d} images, {c['captions']:8d} captions")
    v = report["vocabulary"]
    vocab_size = v.get("in_vocabulary_words", "?")
    lines.append(f"  vocabulary: {vocab_size} words from {report['word_vectors']}")
    lines.append(f"  classes: {report['num_classes']}; pixel mean {[round(m, 2) for m in report['pixel_mean']]}")
    if report["excluded_counts"]:
        lines.append("  excluded: " + ", ".join(f"{n} × {why}" for why, n in sorted(report["excluded_counts"].items())))
    else:
        lines.append("  excluded: nothing")
    kept = {s: n for s, n in report.get("kept_without_vocabulary_word", {}).items() if n}
    if kept:
        lines.append("  kept (bias-only feature, as the official test code): "
                     + ", ".join(f"{n} {s} captions without an in-vocabulary word" for s, n in kept.items()))
    if report["captions_longer_than_max_len"]:
        lines.append(f"  {report['captions_longer_than_max_len']} captions have more than L={report['max_len']} "
                     "in-vocabulary words and are truncated")
    return "\n".join(lines)
