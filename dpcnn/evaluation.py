"""The evaluation protocols of PAPER_SPEC §6 (``dpcnn eval`` runs them: :mod:`dpcnn.commands.evaluate`).

- ``full``: every image of the split against every caption (Flickr30k 1K test, the demo).
- ``1k``: consecutive folds of 1,000 images with their own captions, every metric averaged over
  the folds, Med r included (COCO 1K, the official ``evaluate1K.m``).
- ``5k``: the first 5,000 images against all their captions in one pass (COCO 5K).
- ``reid``: text→image with person-ID matching plus mAP (CUHK-PEDES; ``eval.ap_rule``).
- ``class``: like ``full``, but an image and a caption match when their identities do, in both
  directions (the emoji: an emoji's colour and black renderings share its captions, and ``full``
  would count the other rendering's captions as wrong).

Each protocol returns its ``metrics.json`` entry (DESIGN §1 schema). A protocol needs at least
``min_images`` images: a preset's default protocol that the split cannot support is skipped with
a note (``full`` is always computed), an explicitly requested one is an error. Only ``dpcnn eval``
touches the test split; training's per-epoch measurement uses ``val``.

``metrics.json``::

    {"full": {"num_images", "num_captions", "i2t": {r1, r5, r10, medr, meanr}, "t2i": {...}, "rsum"},
     "1k": {... the mean over the folds ...}, "5k": {...},
     "meta": {"stage", "split", "date", "config", "dataset", "weights", "test_features": {...},
              "skipped": {protocol: why}, "folds": {"1k": [per-fold entries]}}}

``reid`` fills the same keys: num_images = gallery images, num_captions = query captions,
``"i2t": null``, ``t2i`` adds ``"map"`` (%), rsum = t2i R@1 + R@5 + R@10. ``class`` has the
schema of ``full``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dpcnn import metrics
from dpcnn.config import PROTOCOLS
from dpcnn.errors import ConfigError

log = logging.getLogger(__name__)


def reid_entry(raw: dict) -> dict:
    """``metrics.reid_metrics`` → the metrics.json entry; rsum = t2i R@1 + R@5 + R@10."""
    t2i = dict(raw["t2i"])
    return {"num_images": int(raw["num_gallery"]), "num_captions": int(raw["num_queries"]), "i2t": None,
            "t2i": t2i, "rsum": float(t2i["r1"] + t2i["r5"] + t2i["r10"])}


def _full(images, texts, split, ap_rule):
    return metrics.retrieval_metrics(images @ texts.T, split.caption_image), None


def _folds(size: int) -> Callable:
    def run(images, texts, split, ap_rule):
        usable = (len(images) // size) * size if size == 1000 else size
        if usable != len(images):
            log.warning("protocol %s uses the first %d of %d images", "1k" if size == 1000 else "5k", usable, len(images))
        keep = split.caption_image < usable
        sims, c2i = images[:usable] @ texts[keep].T, split.caption_image[keep]
        if size == 5000:
            return metrics.retrieval_metrics(sims, c2i), None
        return metrics.fold_metrics(sims, c2i, fold_size=1000)
    return run


def _reid(images, texts, split, ap_rule):
    raw = metrics.reid_metrics(texts @ images.T, split.identities[split.caption_image], split.identities,
                               ap_rule=ap_rule)
    return reid_entry(raw), None


def _class(images, texts, split, ap_rule):
    return metrics.class_metrics(images @ texts.T, split.identities, split.identities[split.caption_image]), None


@dataclass(frozen=True)
class Protocol:
    name: str
    min_images: int
    compute: Callable
    """(image feats [N, D], caption feats [M, D], split, ap_rule) → (entry, per-fold entries or None)."""


REGISTRY = {p.name: p for p in (Protocol("full", 1, _full), Protocol("1k", 1000, _folds(1000)),
                                Protocol("5k", 5000, _folds(5000)), Protocol("reid", 1, _reid),
                                Protocol("class", 1, _class))}
assert tuple(REGISTRY) == PROTOCOLS


def plan(protocols: Sequence[str], num_images: int, explicit: bool, split: str = "test") -> tuple[list[str], dict]:
    """Which protocols run on a split of ``num_images``: (to run, {skipped: why}).

    Requested ones (``explicit``) that do not fit are an error; a preset's defaults that do not
    fit are skipped with the reason, and ``full`` is added when nothing else would report.
    """
    run, skipped = [], {}
    for name in protocols:
        if name not in REGISTRY:
            raise ConfigError(f"unknown protocol '{name}'; valid: {', '.join(REGISTRY)}")
        need = REGISTRY[name].min_images
        if num_images >= need:
            run.append(name)
        elif explicit:
            raise ConfigError(f"protocol {name} needs at least {need} {split} images, the split has {num_images}: "
                              "use --protocol full")
        else:
            skipped[name] = f"needs at least {need} {split} images, the split has {num_images}"
    if not {"full", "reid", "class"} & set(run):
        run.insert(0, "full")
    for name, why in skipped.items():
        log.info("protocol %s skipped: %s", name, why)
    return run, skipped


def compute(protocols: Sequence[str], images: np.ndarray, texts: np.ndarray, split, ap_rule: str = "trapezoid") -> tuple[dict, dict]:
    """{protocol: metrics.json entry} and {protocol: per-fold entries} for the features of a split."""
    entries, folds = {}, {}
    for name in protocols:
        entries[name], per_fold = REGISTRY[name].compute(images, texts, split, ap_rule)
        if per_fold is not None:
            folds[name] = per_fold
    return entries, folds


def validation_protocol(split, reid: bool = False) -> str:
    """The protocol of the per-epoch validation: ``reid`` when asked, ``class`` when images share
    an identity (the emoji's renderings), else ``full``."""
    if reid:
        return "reid"
    return "class" if len(np.unique(split.identities)) < split.num_images else "full"


def validation_metrics(embedder, split, reid: bool = False) -> dict[str, float]:
    """Flat validation figures for the training history: val_{i2t,t2i}_r{1,5,10}, val_rsum
    (protocol: :func:`validation_protocol`)."""
    images = embedder.encode_image_files(split.paths, split.sizes)
    texts = embedder.encode_tokens(split.tokens)
    entry, _ = REGISTRY[validation_protocol(split, reid)].compute(images, texts, split, "trapezoid")
    out = {f"val_{d}_r{k}": entry[d][f"r{k}"] for d in ("i2t", "t2i") if entry[d] for k in (1, 5, 10)}
    out["val_rsum"] = entry["rsum"]
    return out
