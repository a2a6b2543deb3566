"""``dpcnn prepare``, and the prepared data that training and evaluation read.

:func:`prepare` (DESIGN §3 "bad input"): read the dataset through its spec
(:mod:`dpcnn.data.datasets`; malformed files stop with a DataError, bad entries are counted) →
check that no image is in two splits → exclude images without a caption → decode every image
(missing and corrupt ones are excluded) → drop empty training captions → build the vocabulary
from the vocabulary splits (PAPER_SPEC §2.1; never test) intersected with the word vectors → drop
training captions without an in-vocabulary word → exclude images left without a caption → label
the training images → write the prepared folder, with ``data_report.json`` counting every
exclusion by reason and listing the first 1,000 of each kind.

The folder (:func:`prepared_dir`) holds ``manifest.json`` (the usable records, labels assigned),
``vocab.json``, ``embeddings.npy``, ``images.json`` (decoded sizes, pixel mean),
``data_report.json`` and ``prepared.json`` (written last: the config values it was made from).
:func:`load_prepared` turns it into :class:`PreparedData`; :func:`ensure_prepared` prepares once.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpcnn.config import Config, fingerprint
from dpcnn.data.datasets import DatasetSpec, get
from dpcnn.data.files import download_hint, require
from dpcnn.data.manifest import (
    SPLITS,
    Exclusions,
    ImageRecord,
    assign_labels,
    load_manifest,
    save_manifest,
)
from dpcnn.data.splits import check_disjoint
from dpcnn.data.vocab import Vocabulary, tokenize
from dpcnn.errors import DataError, DataNotFoundError
from dpcnn.utils import atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VOCAB = "vocab.json"
EMBEDDINGS = "embeddings.npy"
IMAGES = "images.json"
REPORT = "data_report.json"
DONE = "prepared.json"
TRAINED_VECTORS = "word_vectors.bin"

_PREPARE_KEYS = (
    "dataset", "root", "annotations", "images", "val_annotations", "test_annotations", "split",
    "split_seed", "holdout_images", "word_vectors", "lowercase", "split_chars", "vocab_splits",
    "pixel_mean",
)
"""The ``data.*`` values that determine the prepared data (training-only values are left out)."""


# --------------------------------------------------------------------------------------------
# The prepared data
# --------------------------------------------------------------------------------------------


@dataclass
class SplitArrays:
    """One split as arrays (N images, M captions).

    paths str [N]; image_ids str [N]; labels int32 [N] (instance class, -1 outside train);
    identities int32 [N] (dataset-wide identity index: the image itself, or the person ID);
    sizes int32 [N, 2] (decoded height, width); tokens int32 [M, L] (left-aligned, 0-padded);
    lengths int32 [M]; caption_image int32 [M] (index of each caption's image); captions str [M].
    """

    paths: np.ndarray
    image_ids: np.ndarray
    labels: np.ndarray
    identities: np.ndarray
    sizes: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    caption_image: np.ndarray
    captions: list[str] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return int(len(self.paths))

    @property
    def num_captions(self) -> int:
        return int(len(self.lengths))

    def subset(self, num_images: int) -> SplitArrays:
        """The first ``num_images`` images with all their captions (all of them for ≤ 0 or ≥ N)."""
        if num_images <= 0 or num_images >= self.num_images:
            return self
        keep = self.caption_image < num_images
        return SplitArrays(
            self.paths[:num_images], self.image_ids[:num_images], self.labels[:num_images],
            self.identities[:num_images], self.sizes[:num_images], self.tokens[keep],
            self.lengths[keep], self.caption_image[keep],
            [c for c, k in zip(self.captions, keep) if k],
        )


@dataclass
class PreparedData:
    """Everything training and evaluation need from a prepared dataset."""

    directory: Path
    vocab: Vocabulary
    embeddings: np.ndarray
    """float32 [V, D]: row i is the vector of word id i + 1."""
    pixel_mean: tuple[float, float, float]
    num_classes: int
    splits: dict[str, SplitArrays]
    report: dict

    @property
    def word_dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def by_identity(self) -> bool:
        """Instance classes are identities (CUHK-PEDES person IDs), not images (the dataset spec)."""
        return get(self.report["dataset"]).by_identity


def split_arrays(records: Sequence[ImageRecord], split: str, vocab: Vocabulary, max_len: int,
                 sizes: dict[str, tuple[int, int]], identity_index: dict[str, int]) -> SplitArrays:
    """Encode one split's records (already cleaned by prepare) into arrays."""
    recs = [r for r in records if r.split == split]
    captions = [c for r in recs for c in r.captions]
    caption_image = [i for i, r in enumerate(recs) for _ in r.captions]
    tokens, lengths = vocab.encode_many(captions, max_len)
    return SplitArrays(
        paths=np.asarray([r.path for r in recs], dtype=object),
        image_ids=np.asarray([r.image_id for r in recs], dtype=object),
        labels=np.asarray([r.label for r in recs], dtype=np.int32),
        identities=np.asarray([identity_index[r.identity] for r in recs], dtype=np.int32),
        sizes=np.asarray([sizes[r.image_id] for r in recs], dtype=np.int32).reshape(-1, 2),
        tokens=np.asarray(tokens, dtype=np.int32).reshape(-1, max_len),
        lengths=np.asarray(lengths, dtype=np.int32),
        caption_image=np.asarray(caption_image, dtype=np.int32),
        captions=captions,
    )


def load_prepared(directory: str | Path, max_len: int) -> PreparedData:
    """Read a folder written by :func:`prepare`."""
    directory = Path(directory)
    if not (directory / DONE).exists():
        raise DataNotFoundError(f"{directory} is not a finished prepared-data folder: run `dpcnn prepare` first")
    records = load_manifest(directory / MANIFEST)
    vocab = Vocabulary.load(directory / VOCAB)
    info = read_json(directory / IMAGES)
    sizes = {k: tuple(v) for k, v in info["sizes"].items()}
    identity_index: dict[str, int] = {}
    for rec in records:
        identity_index.setdefault(rec.identity, len(identity_index))
    return PreparedData(
        directory=directory, vocab=vocab, embeddings=np.load(directory / EMBEDDINGS, allow_pickle=False),
        pixel_mean=tuple(float(m) for m in info["pixel_mean"]),
        num_classes=int(max((r.label for r in records if r.split == "train"), default=-1) + 1),
        splits={s: split_arrays(records, s, vocab, max_len, sizes, identity_index) for s in SPLITS},
        report=read_json(directory / REPORT),
    )


# --------------------------------------------------------------------------------------------
# Where, and whether it is done
# --------------------------------------------------------------------------------------------


def prepare_key(cfg: Config) -> dict[str, Any]:
    """The config values that determine the prepared data, as JSON values."""
    key: dict[str, Any] = {k: getattr(cfg.data, k) for k in _PREPARE_KEYS}
    spec = get(cfg.data.dataset)
    if spec.generate is not None:
        key["synthetic"] = dataclasses.asdict(cfg.synthetic)
    elif spec.word_vectors == "trained" and not cfg.data.word_vectors:  # trained at prepare (emoji)
        key["trained_vectors"] = {"word_dim": cfg.synthetic.word_dim, "seed": cfg.synthetic.seed}
    return json.loads(json.dumps(key))


def prepared_dir(cfg: Config) -> Path:
    """``data.prepared_dir``, or ``<root>/prepared/<dataset>-<hash of the prepare key>``."""
    if cfg.data.prepared_dir:
        return Path(cfg.data.prepared_dir)
    return Path(cfg.data.root) / "prepared" / f"{cfg.data.dataset}-{fingerprint(prepare_key(cfg))}"


def is_prepared(cfg: Config) -> bool:
    """True if :func:`prepared_dir` holds a finished preparation of exactly this config."""
    done = prepared_dir(cfg) / DONE
    return done.exists() and read_json(done).get("key") == prepare_key(cfg)


def ensure_prepared(cfg: Config, force: bool = False, progress: bool = True,
                    need: Sequence[str] | None = None) -> PreparedData:
    """Prepare once (or again with ``force``), then load.

    need: splits the caller must have (``("test",)`` to evaluate). If preparing fails for a
        missing file, the error says these splits are needed; a needed split without a usable
        image after preparing is a DataError.
    """
    need = tuple(need or ())
    unknown = set(need) - set(SPLITS)
    if unknown:
        raise ValueError(f"need: split names among {SPLITS}, got {sorted(unknown)}")
    if force or not is_prepared(cfg):
        try:
            report = prepare(cfg, progress=progress)
        except DataNotFoundError as e:
            if not need:
                raise
            raise DataNotFoundError(f"evaluating needs the {' and '.join(need)} split's images and captions, "
                                    f"which are not prepared yet ({prepared_dir(cfg)}), and preparing them "
                                    f"failed: {e}") from e
        log.info("data report:\n%s", summarize(report))
    data = load_prepared(prepared_dir(cfg), cfg.data.max_len)
    for split in need:
        if data.splits[split].num_images == 0:
            raise DataError(f"the prepared data in {data.directory} has no usable {split} image: see "
                            f"{data.directory / REPORT}")
    return data


# --------------------------------------------------------------------------------------------
# prepare, step by step
# --------------------------------------------------------------------------------------------


def default_word_vectors(cfg: Config) -> Path:
    """GoogleNews under ``data.root/word2vec`` (the unpacked .bin if present, else the .bin.gz)."""
    folder = Path(cfg.data.root) / "word2vec"
    plain = folder / "GoogleNews-vectors-negative300.bin"
    return plain if plain.exists() else folder / "GoogleNews-vectors-negative300.bin.gz"


def _word_vectors(cfg: Config, spec: DatasetSpec, out: Path) -> tuple[Path, bool]:
    """(the word-vector file, whether prepare trains it first); a file that should exist is checked."""
    if cfg.data.word_vectors:
        return require(Path(cfg.data.word_vectors), "word-vector file", "data.word_vectors=PATH",
                       "Check the path (any word2vec-format file, binary or text)"), False
    if spec.word_vectors == "trained":
        return out / TRAINED_VECTORS, True
    return require(default_word_vectors(cfg), "GoogleNews word2vec file",
                   "data.word_vectors=PATH (any word2vec-format file)", download_hint("word2vec", cfg.data.root)), False


def _read_records(cfg: Config, spec: DatasetSpec, exclusions: Exclusions,
                  progress: bool) -> tuple[list[ImageRecord], dict[str, str]]:
    """(the dataset's records, split-checked; its sources for the report)."""
    data = spec.generate(cfg, progress) if spec.generate is not None else cfg.data
    records = spec.read(data, exclusions)
    check_disjoint(records)
    log.info("%d images, %d captions read from %s", len(records), sum(len(r.captions) for r in records), spec.title)
    return records, {"dataset": spec.name, **spec.sources(data)}


def _with_captions(records: Sequence[ImageRecord], exclusions: Exclusions, reason: str) -> list[ImageRecord]:
    """The records that have a caption; the others are excluded with ``reason``."""
    kept = []
    for rec in records:
        if rec.captions:
            kept.append(rec)
        else:
            exclusions.drop_record(rec, reason)
    return kept


def _decodable(records: Sequence[ImageRecord], exclusions: Exclusions,
               progress: bool) -> tuple[list[ImageRecord], dict[str, Any]]:
    """(the records whose image decodes, {image_id: ImageInfo}); the others are excluded."""
    from dpcnn.data.images import check_images

    good, failures = check_images([r.path for r in records], progress=progress)
    for i, reason in sorted(failures.items()):
        exclusions.drop_record(records[i], reason)
    return [r for i, r in enumerate(records) if i in good], {records[i].image_id: info for i, info in good.items()}


def _drop_training_captions(records: Sequence[ImageRecord], problem: Callable[[str], str],
                            exclusions: Exclusions) -> list[ImageRecord]:
    """Remove the training captions for which ``problem(caption)`` gives a reason.

    Val/test keep every caption, as the official test code does (a caption with no
    in-vocabulary word has the bias-only feature; COCO 5K is defined on all 25,000 captions).
    """
    out = []
    for rec in records:
        if rec.split != "train":
            out.append(rec)
            continue
        kept = []
        for caption in rec.captions:
            reason = problem(caption)
            if reason:
                exclusions.caption(reason, image_id=rec.image_id, split=rec.split, caption=caption)
            else:
                kept.append(caption)
        out.append(dataclasses.replace(rec, captions=tuple(kept)))
    return out


def _require_splits(records: Sequence[ImageRecord], when: str, report: dict[str, Any]) -> None:
    """If train or test has no usable image left (``when``: after which step), write ``report``
    (what is known so far, the exclusions included) and raise DataError saying what was excluded."""
    empty = [s for s in ("train", "test") if not any(r.split == s and r.captions for r in records)]
    if not empty:
        return
    path = Path(report["prepared_dir"]) / REPORT
    atomic_write_json(path, report)
    counts = report["excluded_counts"]
    excluded = ", ".join(f"{n} × {why}" for why, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
    example = next((e["path"] for e in report["excluded_images"] if e.get("path")), "")
    splits = f"{empty[0]} split has" if len(empty) == 1 else "train and test splits have"
    raise DataError(f"the {splits} no usable image {when} (excluded: {excluded}"
                    + (f"; e.g. {example}" if example else "") + f"); each exclusion is listed in {path}")


def _vocabulary(cfg: Config, records: Sequence[ImageRecord], vectors: Path, train_vectors: bool,
                out: Path) -> tuple[Vocabulary, dict]:
    """Build (and write) the vocabulary and embedding matrix; trains the word vectors first if asked."""
    from dpcnn.data.word_vectors import build_vocabulary_and_matrix, train_word_vectors

    split_chars, lower = cfg.data.split_chars, cfg.data.lowercase
    if train_vectors:
        sentences = [tokenize(c, split_chars, lower) for r in records if r.split == "train" for c in r.captions]
        train_word_vectors(sentences, cfg.synthetic.word_dim, cfg.synthetic.seed, vectors)
    vocab_captions = [c for r in records if r.split in cfg.data.vocab_splits for c in r.captions]
    vocab, matrix, vocab_report = build_vocabulary_and_matrix(vocab_captions, vectors, split_chars, lower)
    vocab.save(out / VOCAB)
    npy = io.BytesIO()
    np.save(npy, matrix, allow_pickle=False)
    atomic_write_bytes(out / EMBEDDINGS, npy.getvalue())
    return vocab, vocab_report


def _pixel_mean(cfg: Config, records: Sequence[ImageRecord], infos: dict[str, Any]) -> tuple[list[float], str]:
    """(RGB mean, where it comes from): the config's, or the mean over the training images (PAPER_SPEC §1)."""
    if cfg.data.pixel_mean:
        return list(cfg.data.pixel_mean), "config"
    means = [infos[r.image_id].mean_rgb for r in records if r.split == "train"]
    if not means:
        return [], "no training image"
    return [sum(m[c] for m in means) / len(means) for c in range(3)], f"mean of {len(means)} training images"


def prepare(cfg: Config, progress: bool = True) -> dict:
    """Run every check and write the prepared folder; returns the data report (``data_report.json``)."""
    spec = get(cfg.data.dataset)
    out = prepared_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE).unlink(missing_ok=True)
    exclusions = Exclusions()
    records, sources = _read_records(cfg, spec, exclusions, progress)
    vectors, train_vectors = _word_vectors(cfg, spec, out)  # before the slow part
    records = _with_captions(records, exclusions, "image has no caption")
    records, infos = _decodable(records, exclusions, progress)
    split_chars, lower = cfg.data.split_chars, cfg.data.lowercase
    records = _drop_training_captions(
        records, lambda c: "" if tokenize(c, split_chars, lower) else "empty caption", exclusions)
    _require_splits(records, "after the image and caption checks",
                    {"dataset": cfg.data.dataset, "prepared_dir": str(out), "sources": sources, **exclusions.report()})
    vocab, vocab_report = _vocabulary(cfg, records, vectors, train_vectors, out)
    records = _drop_training_captions(
        records, lambda c: "" if vocab.encode(c, cfg.data.max_len) else "no in-vocabulary word", exclusions)
    usable = assign_labels(_with_captions(records, exclusions, "no usable caption"))
    pixel_mean, mean_source = _pixel_mean(cfg, usable, infos)
    report = _report(cfg, out, sources, vectors, usable, vocab, vocab_report, exclusions, pixel_mean, mean_source)
    _require_splits(usable, "after dropping training captions without an in-vocabulary word", report)
    save_manifest(usable, out / MANIFEST)
    atomic_write_json(out / IMAGES, {"pixel_mean": pixel_mean, "sizes": {
        r.image_id: [infos[r.image_id].height, infos[r.image_id].width] for r in usable}})
    atomic_write_json(out / REPORT, report)
    atomic_write_json(out / DONE, {"key": prepare_key(cfg)})
    log.info("prepared data written to %s", out)
    return report


def _report(cfg: Config, out: Path, sources: dict[str, str], vectors: Path, usable: Sequence[ImageRecord],
            vocab: Vocabulary, vocab_report: dict, exclusions: Exclusions, pixel_mean: list[float],
            mean_source: str) -> dict[str, Any]:
    """The data report (``data_report.json``)."""
    lengths = [len(vocab.encode(c, 10**6)) for r in usable for c in r.captions]
    return {
        "dataset": cfg.data.dataset,
        "prepared_dir": str(out),
        "sources": sources,
        "word_vectors": str(vectors),
        "counts": {s: {"images": sum(r.split == s for r in usable),
                       "captions": sum(len(r.captions) for r in usable if r.split == s)} for s in SPLITS},
        "num_classes": len({r.label for r in usable if r.split == "train"}),
        **exclusions.report(),
        "vocabulary": vocab_report,
        "max_len": cfg.data.max_len,
        "captions_longer_than_max_len": int(sum(n > cfg.data.max_len for n in lengths)),
        "kept_without_vocabulary_word": {s: sum(not vocab.encode(c, 1) for r in usable if r.split == s
                                                for c in r.captions) for s in ("val", "test")},
        "pixel_mean": pixel_mean,
        "pixel_mean_source": mean_source,
    }


def summarize(report: dict) -> str:
    """A short human summary of a data report."""
    lines = [f"dataset {report['dataset']} → {report['prepared_dir']}"]
    for split, c in report["counts"].items():
        lines.append(f"  {split:5s}: {c['images']:7d} images, {c['captions']:8d} captions")
    vocab_size = report["vocabulary"].get("in_vocabulary_words", "?")
    lines.append(f"  vocabulary: {vocab_size} words from {report['word_vectors']}")
    lines.append(f"  classes: {report['num_classes']}; pixel mean {[round(m, 2) for m in report['pixel_mean']]}")
    excluded = report["excluded_counts"]
    lines.append("  excluded: " + (", ".join(f"{n} × {why}" for why, n in sorted(excluded.items())) if excluded
                                   else "nothing"))
    if excluded:
        lines.append(f"  (each exclusion is listed in {Path(report['prepared_dir']) / REPORT})")
    kept = {s: n for s, n in report.get("kept_without_vocabulary_word", {}).items() if n}
    if kept:
        lines.append("  kept (bias-only feature, as the official test code): "
                     + ", ".join(f"{n} {s} captions without an in-vocabulary word" for s, n in kept.items()))
    if report["captions_longer_than_max_len"]:
        lines.append(f"  {report['captions_longer_than_max_len']} captions have more than L={report['max_len']} "
                     "in-vocabulary words and are truncated")
    return "\n".join(lines)
