"""Evaluation protocols of PAPER_SPEC §6 on encoded features.

- ``full``: every image of the split against every caption (Flickr30k 1K test, the demo).
- ``1k``: consecutive folds of 1,000 images with their own captions, every metric averaged over
  the folds, Med r included (COCO 1K, the official ``evaluate1K.m``).
- ``5k``: the first 5,000 images against all their captions in one pass (COCO 5K).
- ``reid``: text→image with person-ID matching plus mAP (CUHK-PEDES).

Only ``dpcnn eval`` touches the test split; training's per-epoch measurement uses ``val``.
"""

from __future__ import annotations

import logging

import numpy as np

from dpcnn import metrics
from dpcnn.data.prepared import SplitArrays
from dpcnn.encoders import Encoders

log = logging.getLogger(__name__)


def encode_split(encoders: Encoders, split: SplitArrays, progress: bool = True, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Test-time features of a split: (images float32 [N, D], captions float32 [M, D])."""
    images = encoders.images(split.paths, split.sizes, progress=progress, desc=f"{name} images".strip())
    texts = encoders.texts(split.tokens, split.lengths, progress=progress, desc=f"{name} captions".strip())
    return images, texts


def protocol_metrics(protocol: str, image_feats: np.ndarray, text_feats: np.ndarray, split: SplitArrays,
                     ap_rule: str = "trapezoid") -> dict:
    """The metrics of one protocol (DESIGN §1 schema; ``reid`` adds mAP, ``1k`` adds per-fold results)."""
    n = len(image_feats)
    if protocol == "full":
        return metrics.retrieval_metrics(image_feats @ text_feats.T, split.caption_image)
    if protocol in ("1k", "5k"):
        size = 1000 if protocol == "1k" else 5000
        if n < size:
            raise ValueError(f"protocol {protocol} needs at least {size} test images, the split has {n}")
        usable = (n // size) * size if protocol == "1k" else size
        if usable != n:
            log.warning("protocol %s uses the first %d of %d test images", protocol, usable, n)
        keep = split.caption_image < usable
        sims = image_feats[:usable] @ text_feats[keep].T
        c2i = split.caption_image[keep]
        if protocol == "5k":
            return metrics.retrieval_metrics(sims, c2i)
        average, folds = metrics.fold_metrics(sims, c2i, fold_size=1000)
        return {**average, "folds": folds}
    if protocol == "reid":
        sims = text_feats @ image_feats.T
        return metrics.reid_metrics(sims, split.identities[split.caption_image], split.identities, ap_rule=ap_rule)
    raise ValueError(f"unknown protocol '{protocol}'")


def validation_metrics(encoders: Encoders, split: SplitArrays, reid: bool = False) -> dict[str, float]:
    """Flat validation figures for the training history: val_{i2t,t2i}_r{1,5,10}, val_rsum."""
    images, texts = encode_split(encoders, split, progress=False)
    if reid:
        m = metrics.reid_metrics(texts @ images.T, split.identities[split.caption_image], split.identities)
        t2i = m["t2i"]
        return {"val_t2i_r1": t2i["r1"], "val_t2i_r5": t2i["r5"], "val_t2i_r10": t2i["r10"],
                "val_rsum": t2i["r1"] + t2i["r5"] + t2i["r10"]}
    m = metrics.retrieval_metrics(images @ texts.T, split.caption_image)
    out = {f"val_{d}_r{k}": m[d][f"r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)}
    out["val_rsum"] = m["rsum"]
    return out

