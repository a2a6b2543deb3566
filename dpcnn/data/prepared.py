"""The prepared form of a dataset that training and evaluation read: arrays per split.

``dpcnn prepare`` (see :mod:`dpcnn.prepare`) writes a folder with ``manifest.json`` (the usable
records, labels assigned), ``vocab.json``, ``embeddings.npy``, ``images.json`` (decoded sizes, the
pixel mean) and ``data_report.json``. :func:`load_prepared` turns it into :class:`PreparedData`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpcnn.data.manifest import SPLITS, ImageRecord, load_manifest
from dpcnn.data.vocab import Vocabulary
from dpcnn.utils import read_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VOCAB = "vocab.json"
EMBEDDINGS = "embeddings.npy"
IMAGES = "images.json"
REPORT = "data_report.json"
DONE = "prepared.json"


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
        """The first ``num_images`` images with all their captions."""
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
    pixel_mean: tuple[float, float, float]
    num_classes: int
    splits: dict[str, SplitArrays]
    report: dict

    @property
    def word_dim(self) -> int:
        return int(self.embeddings.shape[1])


def split_arrays(records: list[ImageRecord], split: str, vocab: Vocabulary, max_len: int,
                 sizes: dict[str, tuple[int, int]], identity_index: dict[str, int]) -> SplitArrays:
    """Encode one split's records (already cleaned by prepare) into arrays."""
    recs = [r for r in records if r.split == split]
    captions, caption_image = [], []
    for i, rec in enumerate(recs):
        for cap in rec.captions:
            captions.append(cap)
            caption_image.append(i)
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
    """Read a folder written by ``dpcnn prepare``."""
    directory = Path(directory)
    if not (directory / DONE).exists():
        raise FileNotFoundError(f"{directory} is not a finished prepared-data folder: run `dpcnn prepare` first")
    records = load_manifest(directory / MANIFEST)
    vocab = Vocabulary.load(directory / VOCAB)
    embeddings = np.load(directory / EMBEDDINGS, allow_pickle=False)
    info = read_json(directory / IMAGES)
    sizes = {k: tuple(v) for k, v in info["sizes"].items()}
    identity_index: dict[str, int] = {}
    for rec in records:
        identity_index.setdefault(rec.identity, len(identity_index))
    splits = {s: split_arrays(records, s, vocab, max_len, sizes, identity_index) for s in SPLITS}
    num_classes = int(max((r.label for r in records if r.split == "train"), default=-1) + 1)
    return PreparedData(
        directory=directory, vocab=vocab, embeddings=embeddings,
        pixel_mean=tuple(float(m) for m in info["pixel_mean"]), num_classes=num_classes,
        splits=splits, report=read_json(directory / REPORT),
    )
