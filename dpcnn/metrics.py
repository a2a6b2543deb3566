"""Retrieval metrics for image↔text matching and text→person re-identification (PAPER_SPEC §6).

numpy only: usable by ``dpcnn eval``, the notebooks, and anyone with their own embeddings.

Definitions (all ranks are 1-based, all recalls and mAP are percentages):

* **image→text** (i2t): a query image's rank is the *best* (smallest) rank among its ground-truth
  captions, i.e. the rank of its first correct caption (the CMC of ``compute_AP_rerank.m``).
* **text→image** (t2i): a query caption's rank is the rank of its own image.
* **R@K** = percentage of queries with rank ≤ K.
* **Med r** is the official definition (``test_coco/evaluate.m``: ``rank = find(CMC > 0.5);
  med = rank(1)``): the smallest K such that the fraction of queries with rank ≤ K is > 0.5.
  That is the *upper* median, ``sorted(ranks)[n // 2]``. For an odd number of queries it equals
  ``np.median``; for an even number ``np.median`` averages the two middle ranks instead, so the
  two differ by half the gap between them — half a rank when they are adjacent, e.g.
  ranks ``[1, 1, 2, 2]``: official Med r 2, ``np.median`` 1.5.
* **mean r** = mean rank. **rsum** = the sum of the six recalls.
* **by class** (:func:`class_metrics`: several images per class, the emoji's renderings): a query's
  rank is that of its first item of the same class, in both directions.

**Ties are broken pessimistically**: an item whose score equals the ground truth's counts as
ranked above it. For i2t the rank is ``1 + #{captions of other images with score ≥ the best
own caption's score}`` (ties among an image's *own* captions cost nothing: the best of them is
still first among them); for t2i it is ``1 + #{other images with score ≥ the own image's
score}``. A sort-based implementation (the official MATLAB ``sort``, vsepp's ``argsort``) breaks
ties by position instead, which can only give equal or better ranks. Exact ties are rare for
float scores but real: COCO contains duplicate captions, whose embeddings — and columns of
``sims`` — are identical.

Memory: ``sims`` for the COCO 5K protocol is 5,000 × 25,000 float32 = 500 MB. Every function here
walks it in chunks of rows and never builds a temporary of the matrix's size; ``chunk_size``
(rows per chunk) is a keyword argument of every function, ``None`` picks a size automatically.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "RANK_KEYS",
    "average_metrics",
    "class_metrics",
    "fold_metrics",
    "median_rank",
    "ranks_i2t",
    "ranks_t2i",
    "recall_at",
    "reid_metrics",
    "retrieval_metrics",
]

RANK_KEYS = ("r1", "r5", "r10", "medr", "meanr")
"""The per-direction keys of the ``metrics.json`` schema (DESIGN §1)."""

_CHUNK_ELEMENTS = 1 << 18
"""Default elements per chunk for the comparison passes: ~10 rows at 25,000 captions, so the
chunk (1 MB of float32) and its 256 KB boolean buffer stay in L2 between the two comparisons
(a sweep of 2-1,000 rows on a 2-core Xeon was fastest at 8-16 rows, 2× faster than 1,000)."""
_REID_CHUNK_ELEMENTS = 1 << 20
"""Default elements per chunk for the sort-based re-id pass (≈ 40 bytes of temporaries each)."""


# --------------------------------------------------------------------------------------------
# Summary statistics of a vector of ranks
# --------------------------------------------------------------------------------------------


def recall_at(ranks: np.ndarray, k: int) -> float:
    """R@K in percent: the share of queries whose (1-based) rank is ≤ ``k``. ranks: int[n]."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("recall_at: no ranks given")
    return float(100.0 * np.count_nonzero(ranks <= k) / ranks.size)


def median_rank(ranks: np.ndarray) -> float:
    """Official Med r: the smallest K with (fraction of ranks ≤ K) > 0.5, i.e. ``sorted(ranks)[n // 2]``.

    For an even number of queries this is the upper of the two middle ranks, where
    ``np.median`` would return their mean (e.g. ``[1, 1, 2, 2]`` → 2.0, not 1.5).
    ranks: int[n], 1-based.
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("median_rank: no ranks given")
    k = ranks.size // 2
    return float(np.partition(ranks.ravel(), k)[k])


def _summary(ranks: np.ndarray) -> dict[str, float]:
    """{"r1", "r5", "r10", "medr", "meanr"} of one direction's ranks (int[n], 1-based)."""
    return {
        "r1": recall_at(ranks, 1),
        "r5": recall_at(ranks, 5),
        "r10": recall_at(ranks, 10),
        "medr": median_rank(ranks),
        "meanr": float(np.mean(ranks)),
    }


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _preview(indices: np.ndarray, limit: int = 10) -> str:
    """'3, 7, 9' or '3, 7, 9, … (25 in all)' for error messages."""
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown if indices.size <= limit else f"{shown}, … ({indices.size} in all)"


def _check_scores(sims: np.ndarray, name: str, rows: str, cols: str) -> np.ndarray:
    """A 2-D, non-empty, real-valued score matrix (not copied)."""
    sims = np.asarray(sims)
    if sims.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [{rows}, {cols}], got shape {sims.shape}")
    if sims.dtype == np.bool_ or not (
        np.issubdtype(sims.dtype, np.floating) or np.issubdtype(sims.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {sims.dtype}")
    if sims.shape[0] == 0 or sims.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {sims.shape} [{rows}, {cols}]")
    return sims


def _check_caption_to_image(
    caption_to_image: np.ndarray, sims_shape: tuple[int, int], *, every_image_captioned: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``caption_to_image`` against ``sims`` [n_images, n_captions].

    Returns (caption_to_image as intp[n_captions], captions per image int[n_images]).
    """
    n_images, n_captions = sims_shape
    c2i = np.asarray(caption_to_image)
    if c2i.ndim != 1:
        raise ValueError(f"caption_to_image must be 1-D [n_captions], got shape {c2i.shape}")
    if c2i.shape[0] != n_captions:
        raise ValueError(
            f"shapes disagree: caption_to_image has {c2i.shape[0]} entries but sims has "
            f"{n_captions} caption columns (sims is [n_images, n_captions] = {sims_shape})"
        )
    if c2i.dtype == np.bool_ or not np.issubdtype(c2i.dtype, np.integer):
        raise TypeError(
            f"caption_to_image must hold integer image indices, got dtype {c2i.dtype}"
        )
    bad = np.flatnonzero((c2i < 0) | (c2i >= n_images))
    if bad.size:
        raise ValueError(
            f"caption_to_image out of range: image indices must lie in [0, {n_images}) "
            f"(sims has {n_images} image rows), but caption {int(bad[0])} → {int(c2i[bad[0]])}; "
            f"bad captions: {_preview(bad)}"
        )
    c2i = c2i.astype(np.intp, copy=False)
    counts = np.bincount(c2i, minlength=n_images)
    if every_image_captioned and not counts.all():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(
            f"image(s) {_preview(missing)} have no caption, so their image→text rank is "
            f"undefined; drop those rows from sims or add their captions"
        )
    return c2i, counts


def _check_label_shapes(sims: np.ndarray, sims_name: str, layout: str, rows: tuple, columns: tuple) -> None:
    """ValueError unless the labels ``rows`` = (name, ids) and ``columns`` are 1-D with one entry per
    row / column of ``sims`` (whose axes ``layout`` names)."""
    for (name, ids), n, axis in ((rows, sims.shape[0], "rows"), (columns, sims.shape[1], "columns")):
        if ids.ndim != 1 or ids.shape[0] != n:
            raise ValueError(f"shapes disagree: {name} has shape {ids.shape} but {sims_name} has {n} {axis} "
                             f"({sims_name} is [{layout}] = {sims.shape})")


def _raise_if_nan(block: np.ndarray, row_offset: int, name: str) -> None:
    """Raise naming the first NaN of ``block`` (rows ``row_offset:`` of ``name``)."""
    if np.issubdtype(block.dtype, np.floating) and np.isnan(block.min()):  # min propagates NaN
        i, j = np.argwhere(np.isnan(block))[0]
        count = int(np.count_nonzero(np.isnan(block)))
        raise ValueError(
            f"{name} contains NaN (first at [{row_offset + int(i)}, {int(j)}]; {count} in rows "
            f"{row_offset}..{row_offset + block.shape[0] - 1}); scores must be finite or ±inf"
        )


def _rows_per_chunk(chunk_size: int | None, row_length: int, budget: int) -> int:
    """Rows per chunk: ``chunk_size`` if given, else as many as fit in ``budget`` elements."""
    if chunk_size is None:
        return max(1, budget // max(1, row_length))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------


def _ranks(
    sims: np.ndarray,
    c2i: np.ndarray,
    counts: np.ndarray,
    *,
    want_i2t: bool,
    want_t2i: bool,
    chunk_size: int | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both directions' ranks in one pass over row chunks of ``sims`` [n_images, n_captions].

    own[c] = sims[c2i[c], c] is each caption's ground-truth score.
    t2i rank of caption c = #{images j : sims[j, c] ≥ own[c]} (its own image counts itself
    once, so this is 1 + the pessimistic count of the others).
    i2t rank of image i = 1 + #{captions c : sims[i, c] ≥ best[i]} − #{own captions at best[i]},
    where best[i] is the max of own[c] over i's captions: the own captions are subtracted
    exactly, so no ownership mask of the matrix is needed.
    Extra memory: a few vectors of length n_images or n_captions and one reused boolean
    [rows, n_captions] buffer. Counting sums the buffer's bytes with narrow accumulators
    (uint8 down a chunk of ≤ 255 rows, uint16 along a row of ≤ 65,535 captions), which is
    several times faster than ``np.count_nonzero(..., axis=...)``.
    """
    n_images, n_captions = sims.shape
    rows = _rows_per_chunk(chunk_size, n_captions, _CHUNK_ELEMENTS)
    if chunk_size is None:
        rows = min(rows, np.iinfo(np.uint8).max)  # keep the fast uint8 column sums
    rows = min(rows, n_images)
    own = sims[c2i, np.arange(n_captions)]  # [n_captions], same dtype as sims

    ge = np.empty((rows, n_captions), dtype=np.bool_)  # reused comparison buffer
    ge_bytes = ge.view(np.uint8)  # the same memory, as 0/1 bytes to sum
    row_sum_dtype = np.uint16 if n_captions <= np.iinfo(np.uint16).max else np.intp
    col_sum_dtype = np.uint8 if rows <= np.iinfo(np.uint8).max else np.intp

    best = at_best = i2t_ge = t2i_ge = None
    if want_i2t:
        # Every image has ≥ 1 caption (validated), so reduceat's segments are non-empty.
        order = np.argsort(c2i, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        best = np.maximum.reduceat(own[order], starts)  # [n_images]
        at_best = np.bincount(c2i[own == best[c2i]], minlength=n_images)  # own captions tied at best
        i2t_ge = np.empty(n_images, dtype=np.intp)
    if want_t2i:
        t2i_ge = np.zeros(n_captions, dtype=np.intp)

    for start in range(0, n_images, rows):
        stop = min(start + rows, n_images)
        m = stop - start
        block = sims[start:stop]  # a view, never a copy
        _raise_if_nan(block, start, "sims")
        if want_i2t:
            np.greater_equal(block, best[start:stop, None], out=ge[:m])
            i2t_ge[start:stop] = np.add.reduce(ge_bytes[:m], axis=1, dtype=row_sum_dtype)
        if want_t2i:
            np.greater_equal(block, own, out=ge[:m])
            t2i_ge += np.add.reduce(ge_bytes[:m], axis=0, dtype=col_sum_dtype)

    r_i2t = 1 + i2t_ge - at_best if want_i2t else None
    return r_i2t, t2i_ge


def ranks_i2t(
    sims: np.ndarray, caption_to_image: np.ndarray, *, chunk_size: int | None = None
) -> np.ndarray:
    """Image→text ranks: int[n_images], the 1-based rank of each image's best ground-truth caption.

    sims: float[n_images, n_captions]; caption_to_image: int[n_captions]. Every image must have
    at least one caption. Ties are pessimistic (see the module docstring).
    chunk_size: image rows per chunk (``None``: automatic).
    """
    sims = _check_scores(sims, "sims", "n_images", "n_captions")
    c2i, counts = _check_caption_to_image(caption_to_image, sims.shape, every_image_captioned=True)
    r, _ = _ranks(sims, c2i, counts, want_i2t=True, want_t2i=False, chunk_size=chunk_size)
    return r


def ranks_t2i(
    sims: np.ndarray, caption_to_image: np.ndarray, *, chunk_size: int | None = None
) -> np.ndarray:
    """Text→image ranks: int[n_captions], the 1-based rank of each caption's own image.

    sims: float[n_images, n_captions]; caption_to_image: int[n_captions]. Images without captions
    are allowed here (they are distractors). Ties are pessimistic (see the module docstring).
    chunk_size: image rows per chunk (``None``: automatic).
    """
    sims = _check_scores(sims, "sims", "n_images", "n_captions")
    c2i, counts = _check_caption_to_image(caption_to_image, sims.shape, every_image_captioned=False)
    _, r = _ranks(sims, c2i, counts, want_i2t=False, want_t2i=True, chunk_size=chunk_size)
    return r


# --------------------------------------------------------------------------------------------
# The public metric function and the COCO 1K protocol
# --------------------------------------------------------------------------------------------


def retrieval_metrics(
    sims: np.ndarray, caption_to_image: np.ndarray, *, chunk_size: int | None = None
) -> dict:
    """Image↔text retrieval metrics, exactly the ``metrics.json`` schema of DESIGN §1.

    sims: float[n_images, n_captions], higher = more similar (cosine for dpcnn);
    caption_to_image: int[n_captions], the image (row) index of each caption (column).
    Returns ``{"num_images", "num_captions", "i2t": {"r1", "r5", "r10", "medr", "meanr"},
    "t2i": {...}, "rsum"}`` — recalls in percent, ranks 1-based, ties pessimistic, Med r the
    official upper median (module docstring). Nothing else is added: the schema is a contract.
    chunk_size: image rows per chunk (``None``: automatic, ~256 K elements per chunk).

    Raises ValueError/TypeError for disagreeing shapes, out-of-range caption_to_image, an image
    with no caption (its i2t rank is undefined), or NaN in ``sims``.
    """
    sims = _check_scores(sims, "sims", "n_images", "n_captions")
    c2i, counts = _check_caption_to_image(caption_to_image, sims.shape, every_image_captioned=True)
    r_i2t, r_t2i = _ranks(sims, c2i, counts, want_i2t=True, want_t2i=True, chunk_size=chunk_size)
    i2t, t2i = _summary(r_i2t), _summary(r_t2i)
    return {
        "num_images": int(sims.shape[0]),
        "num_captions": int(sims.shape[1]),
        "i2t": i2t,
        "t2i": t2i,
        "rsum": float(sum(d[k] for d in (i2t, t2i) for k in ("r1", "r5", "r10"))),
    }


def average_metrics(results: Sequence[Mapping]) -> dict:
    """Mean of every numeric field across folds, keeping the nesting of the per-fold dicts.

    Works for ``retrieval_metrics`` and ``reid_metrics`` results alike. Med r (and mean r) are
    averaged as the official ``evaluate1K.m`` does (``mean(img_med)``), so the average Med r need
    not be an integer. Count fields (names starting with ``num_``) keep the per-fold value when
    every fold agrees (the COCO 1K case: 1,000 images each) and are otherwise the mean count per
    fold (a float) — never the sum, which would describe a pooled evaluation that was not run.
    ``rsum`` is the mean of the fold rsums, which equals the sum of the mean recalls.
    All dicts must have the same keys.
    """
    if len(results) == 0:
        raise ValueError("average_metrics: no results to average")
    return _average(list(results), path="")


def _average(items: list, path: str):
    first = items[0]
    where = path or "the top level"
    if isinstance(first, Mapping):
        keys = list(first)
        for n, item in enumerate(items):
            if not isinstance(item, Mapping) or set(item) != set(keys):
                got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
                raise ValueError(
                    f"average_metrics: result {n} disagrees with result 0 at {where}: "
                    f"expected keys {sorted(keys)}, got {got}"
                )
        return {k: _average([item[k] for item in items], f"{path}.{k}" if path else k) for k in keys}
    for n, value in enumerate(items):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"average_metrics: result {n} has a non-numeric {where}: {value!r}")
    if path.rsplit(".", 1)[-1].startswith("num_"):
        if all(value == first for value in items):
            return first
    return float(np.mean(items))


def fold_metrics(
    sims: np.ndarray,
    caption_to_image: np.ndarray,
    fold_size: int = 1000,
    *,
    chunk_size: int | None = None,
) -> tuple[dict, list[dict]]:
    """The COCO 1K protocol (``test_coco/evaluate1K.m``): metrics per fold, then averaged.

    Fold k is images [k·fold_size, (k+1)·fold_size) against all of *their* captions only (the
    caption columns whose image is in the fold, in their original order, with image indices
    renumbered from 0). Each fold is scored with ``retrieval_metrics`` and the folds are averaged
    with ``average_metrics`` — which is not the same as pooling the folds' ranks (Med r, and the
    t2i figures when folds have different caption counts, differ).
    sims: float[n_images, n_captions]; n_images must be a multiple of ``fold_size``.
    Returns (average, per-fold list).
    """
    sims = _check_scores(sims, "sims", "n_images", "n_captions")
    c2i, _ = _check_caption_to_image(caption_to_image, sims.shape, every_image_captioned=True)
    if isinstance(fold_size, bool) or not isinstance(fold_size, numbers.Integral) or fold_size < 1:
        raise ValueError(f"fold_size must be a positive integer, got {fold_size!r}")
    n_images = sims.shape[0]
    if n_images % fold_size:
        raise ValueError(
            f"{n_images} images is not a multiple of fold_size={fold_size}: the 1K protocol "
            f"needs whole folds (COCO 5K test → 5 folds of 1,000)"
        )
    folds = []
    for lo in range(0, n_images, fold_size):
        hi = lo + fold_size
        cols = np.flatnonzero((c2i >= lo) & (c2i < hi))
        if cols.size and cols[-1] - cols[0] + 1 == cols.size:  # contiguous: a view, no copy
            block = sims[lo:hi, cols[0] : cols[-1] + 1]
        else:  # a [fold_size, fold captions] copy (1,000 × ~5,000 float32 = 20 MB for COCO)
            block = sims[lo:hi, cols]
        folds.append(retrieval_metrics(block, c2i[cols] - lo, chunk_size=chunk_size))
    return average_metrics(folds), folds


# --------------------------------------------------------------------------------------------
# CUHK-PEDES: text→image by person identity
# --------------------------------------------------------------------------------------------


def reid_metrics(
    sims_t2i: np.ndarray,
    query_identity: np.ndarray,
    gallery_identity: np.ndarray,
    *,
    chunk_size: int | None = None,
    ap_rule: str = "trapezoid",
) -> dict:
    """Text→image person retrieval by identity (CUHK-PEDES, PAPER_SPEC §6).

    sims_t2i: float[n_queries, n_gallery] (caption queries × gallery images);
    query_identity: [n_queries], gallery_identity: [n_gallery] — any comparable labels (ints,
    strings). A gallery image is correct for a query if it has the query's identity; every query
    must have at least one. Returns ``{"num_queries", "num_gallery", "t2i": {"r1", "r5", "r10",
    "medr", "meanr", "map"}}``: the ranks are those of the first correct image, and ``map`` is
    the mean over queries of the average precision over all correct gallery images, in percent.

    Ties are pessimistic here too: within a group of equal scores, every incorrect image is
    ranked above every correct one (the order among the correct ones does not change AP).

    ap_rule: ``"trapezoid"`` (default) — the official ``test_cuhk/compute_AP_rerank.m``: each
    correct image adds Δrecall · (precision at its rank + precision at the rank before it) / 2,
    with precision 1 before rank 1; ``"standard"`` — the mean over the query's correct images
    of the precision at their ranks (the usual re-id mAP).
    chunk_size: query rows per chunk (``None``: automatic).
    """
    sims = _check_scores(sims_t2i, "sims_t2i", "n_queries", "n_gallery")
    n_queries, n_gallery = sims.shape
    if ap_rule not in ("standard", "trapezoid"):
        raise ValueError(f"ap_rule must be 'standard' or 'trapezoid', got {ap_rule!r}")
    qid = np.asarray(query_identity)
    gid = np.asarray(gallery_identity)
    _check_label_shapes(sims, "sims_t2i", "n_queries, n_gallery", ("query_identity", qid), ("gallery_identity", gid))
    orphan = np.flatnonzero(~np.isin(qid, gid))
    if orphan.size:
        raise ValueError(
            f"query(s) {_preview(orphan)} have no gallery image of their identity "
            f"(e.g. query {int(orphan[0])} has identity {qid[orphan[0]]!r}), so their rank is undefined"
        )

    rows = _rows_per_chunk(chunk_size, n_gallery, _REID_CHUNK_ELEMENTS)
    position = np.arange(1, n_gallery + 1)
    first = np.empty(n_queries, dtype=np.intp)
    ap = np.empty(n_queries, dtype=np.float64)
    for start in range(0, n_queries, rows):
        stop = min(start + rows, n_queries)
        block = sims[start:stop]
        _raise_if_nan(block, start, "sims_t2i")
        correct = gid[None, :] == qid[start:stop, None]  # bool [rows, n_gallery]
        # Rank by score descending; among equal scores the incorrect (False) first: pessimistic.
        order = np.lexsort((correct, -block.astype(np.float64)), axis=1)
        hits = np.take_along_axis(correct, order, axis=1)  # correctness in ranked order
        first[start:stop] = hits.argmax(axis=1) + 1
        found = np.cumsum(hits, axis=1)  # correct images at or above each position
        precision = found / position
        if ap_rule == "trapezoid":
            before = np.divide(found - 1, position - 1, out=np.ones_like(precision),
                               where=position > 1)
            precision = (precision + before) / 2
        ap[start:stop] = np.where(hits, precision, 0.0).sum(axis=1) / found[:, -1]

    t2i = _summary(first)
    t2i["map"] = float(100.0 * ap.mean())
    return {"num_queries": int(n_queries), "num_gallery": int(n_gallery), "t2i": t2i}


# --------------------------------------------------------------------------------------------
# Several images per class (emoji renderings): both directions by class
# --------------------------------------------------------------------------------------------


def _first_hit_ranks(scores: np.ndarray, row_class: np.ndarray, col_class: np.ndarray, name: str,
                     chunk_size: int | None) -> np.ndarray:
    """Per row of ``scores`` [rows, cols], the 1-based rank of its best column of the same class:
    1 + #{columns of another class scoring ≥ that best}, pessimistic ties (int[rows])."""
    n_rows, n_cols = scores.shape
    rows = _rows_per_chunk(chunk_size, n_cols, _CHUNK_ELEMENTS)
    out = np.empty(n_rows, dtype=np.intp)
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        block = scores[start:stop]
        _raise_if_nan(block, start, name)
        same = col_class[None, :] == row_class[start:stop, None]
        best = np.where(same, block, -np.inf).max(axis=1)
        out[start:stop] = 1 + np.count_nonzero((block >= best[:, None]) & ~same, axis=1)
    return out


def class_metrics(
    sims: np.ndarray, image_class: np.ndarray, caption_class: np.ndarray, *, chunk_size: int | None = None
) -> dict:
    """Image↔text retrieval where a class has several images (the ``class`` protocol).

    sims: float[n_images, n_captions]; image_class: [n_images], caption_class: [n_captions] —
    any comparable labels. A caption is correct for an image, and an image for a caption, when
    their classes are equal: i2t rank = 1 + #{captions of other classes scoring ≥ the image's
    best caption of its class}, t2i rank likewise over images. Ties are pessimistic, as in
    :func:`retrieval_metrics`, whose schema this returns; with one image per class (every
    caption's class its image's) the two functions agree. Every image needs a caption of its
    class and every caption an image of its class (ValueError otherwise).
    chunk_size: rows per chunk in each direction (``None``: automatic).
    """
    sims = _check_scores(sims, "sims", "n_images", "n_captions")
    n_images, n_captions = sims.shape
    img, cap = np.asarray(image_class), np.asarray(caption_class)
    _check_label_shapes(sims, "sims", "n_images, n_captions", ("image_class", img), ("caption_class", cap))
    for name, ids, other, what in (("image", img, cap, "caption"), ("caption", cap, img, "image")):
        orphan = np.flatnonzero(~np.isin(ids, other))
        if orphan.size:
            raise ValueError(f"{name}(s) {_preview(orphan)} have no {what} of their class (e.g. {name} "
                             f"{int(orphan[0])} has class {ids[orphan[0]]!r}), so their rank is undefined")
    i2t = _summary(_first_hit_ranks(sims, img, cap, "sims", chunk_size))
    t2i = _summary(_first_hit_ranks(sims.T, cap, img, "sims.T", chunk_size))
    return {
        "num_images": int(n_images),
        "num_captions": int(n_captions),
        "i2t": i2t,
        "t2i": t2i,
        "rsum": float(sum(d[k] for d in (i2t, t2i) for k in ("r1", "r5", "r10"))),
    }
