"""Tests for dpcnn.metrics: hand-worked cases, a plain-Python reference, chunking, validation.

Every expected value in the hand cases is worked out in the comments next to it. Ranks are
1-based; ties are pessimistic (an item tied with the ground truth counts as ranked above it).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from dpcnn.metrics import (
    average_metrics,
    class_metrics,
    fold_metrics,
    median_rank,
    ranks_i2t,
    ranks_t2i,
    recall_at,
    reid_metrics,
    retrieval_metrics,
)

approx = pytest.approx


def close(expected):
    """``expected`` with every number wrapped in ``pytest.approx``, nesting kept (for ``==``)."""
    if isinstance(expected, dict):
        return {k: close(v) for k, v in expected.items()}
    return approx(expected)

# ---------------------------------------------------------------------------------------------
# An independent reference: plain Python loops over lists, no numpy in the ranking.
# ---------------------------------------------------------------------------------------------


def loop_ranks_i2t(sims, c2i):
    """Rank of each ground-truth caption against the other images' captions, best one kept."""
    sims, c2i = np.asarray(sims).tolist(), list(np.asarray(c2i).tolist())
    ranks = []
    for i, row in enumerate(sims):
        best = None
        for gt, owner in enumerate(c2i):
            if owner != i:
                continue
            rank = 1
            for other, other_owner in enumerate(c2i):
                if other_owner != i and row[other] >= row[gt]:
                    rank += 1
            best = rank if best is None else min(best, rank)
        ranks.append(best)
    return ranks


def loop_ranks_t2i(sims, c2i):
    """Rank of each caption's own image: 1 + other images scoring at least as high."""
    sims, c2i = np.asarray(sims).tolist(), list(np.asarray(c2i).tolist())
    ranks = []
    for c, owner in enumerate(c2i):
        rank = 1
        for j in range(len(sims)):
            if j != owner and sims[j][c] >= sims[owner][c]:
                rank += 1
        ranks.append(rank)
    return ranks


def loop_summary(ranks):
    n = len(ranks)
    out = {f"r{k}": 100.0 * sum(1 for r in ranks if r <= k) / n for k in (1, 5, 10)}
    k = 1
    while sum(1 for r in ranks if r <= k) / n <= 0.5:  # smallest K with CMC(K) > 0.5
        k += 1
    out["medr"] = float(k)
    out["meanr"] = sum(ranks) / n
    return out


def loop_retrieval_metrics(sims, c2i):
    i2t = loop_summary(loop_ranks_i2t(sims, c2i))
    t2i = loop_summary(loop_ranks_t2i(sims, c2i))
    return {
        "num_images": len(sims),
        "num_captions": len(c2i),
        "i2t": i2t,
        "t2i": t2i,
        "rsum": sum(d[k] for d in (i2t, t2i) for k in ("r1", "r5", "r10")),
    }


def loop_reid(sims, qid, gid):
    """Sort the gallery by (score desc, correct last among equals); first hit and AP from the list."""
    sims = np.asarray(sims).tolist()
    firsts, aps = [], []
    for q, row in enumerate(sims):
        correct = [g == qid[q] for g in gid]
        ranking = sorted(range(len(row)), key=lambda g: (-row[g], correct[g]))
        hits, precisions = 0, []
        for pos, g in enumerate(ranking, start=1):
            if correct[g]:
                hits += 1
                precisions.append(hits / pos)
        firsts.append(next(pos for pos, g in enumerate(ranking, start=1) if correct[g]))
        aps.append(sum(precisions) / len(precisions))
    t2i = loop_summary(firsts)
    t2i["map"] = 100.0 * sum(aps) / len(aps)
    return {"num_queries": len(sims), "num_gallery": len(gid), "t2i": t2i}


def random_case(rng, n_images, n_captions, decimals=None):
    """Random sims; every image gets ≥ 1 caption, the rest at random, columns shuffled."""
    c2i = np.concatenate([np.arange(n_images), rng.integers(0, n_images, n_captions - n_images)])
    c2i = rng.permutation(c2i)
    sims = rng.standard_normal((n_images, n_captions))
    if decimals is not None:
        sims = np.round(sims, decimals)
    return sims, c2i


# ---------------------------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------------------------

# 3 images × 6 captions, 2 captions each: captions 0,1 → image 0; 2,3 → image 1; 4,5 → image 2.
SIMS_3x6 = np.array(
    [
        #  c0    c1    c2    c3    c4    c5
        [0.90, 0.10, 0.80, 0.20, 0.30, 0.40],  # image 0
        [0.50, 0.60, 0.70, 0.10, 0.90, 0.20],  # image 1
        [0.20, 0.30, 0.10, 0.95, 0.40, 0.50],  # image 2
    ]
)
C2I_3x6 = np.array([0, 0, 1, 1, 2, 2])


def test_hand_case_3_images_6_captions():
    # i2t (best own caption, then count other images' captions scoring ≥ it):
    #   image 0: own c0 .90, c1 .10 → best .90; others ≥ .90: none            → rank 1
    #   image 1: own c2 .70, c3 .10 → best .70; others ≥ .70: c4 (.90)        → rank 2
    #            (using c3 instead would give rank 5: the best own caption counts)
    #   image 2: own c4 .40, c5 .50 → best .50; others ≥ .50: c3 (.95)        → rank 2
    assert ranks_i2t(SIMS_3x6, C2I_3x6).tolist() == [1, 2, 2]
    # t2i (own image's score in the caption's column, count other images ≥ it):
    #   c0 [.90 .50 .20] own img0 .90 → 1     c1 [.10 .60 .30] own img0 .10 → 3
    #   c2 [.80 .70 .10] own img1 .70 → 2     c3 [.20 .10 .95] own img1 .10 → 3
    #   c4 [.30 .90 .40] own img2 .40 → 2     c5 [.40 .20 .50] own img2 .50 → 1
    assert ranks_t2i(SIMS_3x6, C2I_3x6).tolist() == [1, 3, 2, 3, 2, 1]

    m = retrieval_metrics(SIMS_3x6, C2I_3x6)
    assert m == {
        "num_images": 3,
        "num_captions": 6,
        # i2t ranks [1, 2, 2]: R@1 1/3, R@5 = R@10 = 3/3; Med r sorted[3 // 2] = sorted[1] = 2;
        # mean r 5/3.
        "i2t": {"r1": approx(100 / 3), "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": approx(5 / 3)},
        # t2i ranks [1, 3, 2, 3, 2, 1]: R@1 2/6; sorted [1 1 2 2 3 3], Med r sorted[3] = 2;
        # mean r 12/6 = 2.
        "t2i": {"r1": approx(100 / 3), "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 2.0},
        # rsum = 33.33 + 100 + 100 + 33.33 + 100 + 100
        "rsum": approx(400 + 200 / 3),
    }
    # The schema is a contract: exactly these keys, plain Python numbers.
    assert list(m) == ["num_images", "num_captions", "i2t", "t2i", "rsum"]
    assert list(m["i2t"]) == list(m["t2i"]) == ["r1", "r5", "r10", "medr", "meanr"]
    assert all(type(v) is float for d in (m["i2t"], m["t2i"]) for v in d.values())
    assert type(m["num_images"]) is int and type(m["rsum"]) is float


def test_ties_are_pessimistic():
    # 2 images × 4 captions: c0, c1 → image 0; c2, c3 → image 1.
    sims = np.array(
        [
            [0.7, 0.3, 0.7, 0.1],  # image 0: best own .7 (c0); c2 ties at .7 → counted above → rank 2
            [0.2, 0.6, 0.6, 0.1],  # image 1: best own .6 (c2); c1 ties at .6 → counted above → rank 2
        ]
    )
    c2i = [0, 0, 1, 1]
    # An optimistic (or position-order) tie rule would give image 0 rank 1.
    assert ranks_i2t(sims, c2i).tolist() == [2, 2]
    # t2i: c0 [.7 .2] own .7 → 1; c1 [.3 .6] own .3 → 2; c2 [.7 .6] own .6 → 2;
    #      c3 [.1 .1] own img1 .1, image 0 ties at .1 → counted above → 2.
    assert ranks_t2i(sims, c2i).tolist() == [1, 2, 2, 2]


def test_ties_among_own_captions_cost_nothing():
    # c0, c1 → image 0 (tied at .9 with each other); c2 → image 1.
    sims = np.array(
        [
            [0.9, 0.9, 0.1],  # image 0: best own .9, no other caption ≥ .9 → rank 1 (not 2)
            [0.3, 0.2, 0.3],  # image 1: own c2 .3, c0 ties at .3 → rank 2
        ]
    )
    assert ranks_i2t(sims, [0, 0, 1]).tolist() == [1, 2]
    # t2i: c0 [.9 .3] → 1; c1 [.9 .2] → 1; c2 [.1 .3] own img1 .3 → 1
    assert ranks_t2i(sims, [0, 0, 1]).tolist() == [1, 1, 1]


def test_unequal_caption_counts_in_any_column_order():
    # image 0 has 1 caption (c2), image 1 has 2 (c1, c4), image 2 has 3 (c0, c3, c5).
    c2i = [2, 1, 0, 2, 1, 2]
    sims = np.array(
        [
            #  c0   c1   c2   c3   c4   c5
            [0.6, 0.2, 0.5, 0.1, 0.7, 0.3],  # img0: own c2 .5; others ≥ .5: c0 .6, c4 .7 → rank 3
            [0.1, 0.4, 0.3, 0.2, 0.8, 0.9],  # img1: own .4/.8 → .8; others ≥ .8: c5 .9 → rank 2
            [0.3, 0.5, 0.2, 0.9, 0.1, 0.4],  # img2: own .3/.9/.4 → .9; none ≥ .9 → rank 1
        ]
    )
    assert ranks_i2t(sims, c2i).tolist() == [3, 2, 1]
    # t2i: c0 own img2 .3, [.6 .1 .3] → 2;  c1 own img1 .4, [.2 .4 .5] → 2;
    #      c2 own img0 .5, [.5 .3 .2] → 1;  c3 own img2 .9 → 1;  c4 own img1 .8 → 1;
    #      c5 own img2 .4, [.3 .9 .4] → 2.
    assert ranks_t2i(sims, c2i).tolist() == [2, 2, 1, 1, 1, 2]
    m = retrieval_metrics(sims, c2i)
    # i2t [3, 2, 1]: R@1 33.3, Med r sorted[1] = 2, mean r 2.
    assert m["i2t"] == {"r1": approx(100 / 3), "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 2.0}
    # t2i [2, 2, 1, 1, 1, 2]: R@1 50; sorted [1 1 1 2 2 2] → Med r sorted[3] = 2 (np.median 1.5).
    assert m["t2i"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.5}


def test_recalls_and_official_median_on_a_12_by_12_case():
    # 12 images, 12 captions, caption k ↔ image k. Own score 1, all others 0, except that image 0
    # scores 2 with captions 1..6.
    sims = np.eye(12)
    sims[0, 1:7] = 2.0
    c2i = np.arange(12)
    # i2t: image 0 has 6 other captions above its own → rank 7; every other image rank 1.
    #   R@1 = R@5 = 11/12 = 91.67 (rank 7 > 5), R@10 = 100; Med r 1; mean r (7 + 11)/12 = 1.5.
    # t2i: captions 1..6 have image 0 (2) above their own (1) → rank 2; the other 6 rank 1.
    #   R@1 = 6/12 = 50; ranks sorted [1×6, 2×6]: the fraction ≤ 1 is exactly 0.5, not > 0.5,
    #   so the official Med r is 2 — np.median would say 1.5. Mean r 18/12 = 1.5.
    m = retrieval_metrics(sims, c2i)
    assert m["i2t"] == {"r1": approx(1100 / 12), "r5": approx(1100 / 12), "r10": 100.0,
                        "medr": 1.0, "meanr": 1.5}
    assert m["t2i"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.5}
    assert np.median(ranks_t2i(sims, c2i)) == 1.5


def test_recall_at_and_median_rank_helpers():
    ranks = np.array([1, 3, 6, 11, 20])
    assert recall_at(ranks, 1) == 20.0  # 1 of 5
    assert recall_at(ranks, 5) == 40.0  # 1, 3
    assert recall_at(ranks, 10) == 60.0  # 1, 3, 6
    # Odd n: the official Med r is the ordinary median.
    assert median_rank(ranks) == 6.0 == np.median(ranks)
    # Even n: [1, 1, 2, 2] → fraction ≤ 1 is 0.5 (not > 0.5), fraction ≤ 2 is 1 → Med r 2; np.median 1.5.
    assert median_rank([2, 1, 2, 1]) == 2.0 and np.median([2, 1, 2, 1]) == 1.5
    # Even n with a gap: [1, 5] → 5 (np.median 3): the difference is half the gap.
    assert median_rank([5, 1]) == 5.0
    with pytest.raises(ValueError, match="no ranks"):
        median_rank([])
    with pytest.raises(ValueError, match="no ranks"):
        recall_at([], 1)


# ---------------------------------------------------------------------------------------------
# Agreement with the plain-Python reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 0])  # 1 and 0 decimals: many exact ties
def test_agrees_with_python_loops(seed, decimals):
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(1, 16))
    sims, c2i = random_case(rng, n_images, n_images + int(rng.integers(0, 40)), decimals)
    expected = loop_retrieval_metrics(sims, c2i)
    for chunk_size in (None, 1, 2, 5):
        got = retrieval_metrics(sims, c2i, chunk_size=chunk_size)
        assert got == close(expected), chunk_size
        assert ranks_i2t(sims, c2i, chunk_size=chunk_size).tolist() == loop_ranks_i2t(sims, c2i)
        assert ranks_t2i(sims, c2i, chunk_size=chunk_size).tolist() == loop_ranks_t2i(sims, c2i)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.uint8])
def test_agrees_with_python_loops_for_other_dtypes(dtype):
    rng = np.random.default_rng(1)
    sims, c2i = random_case(rng, 9, 30)
    sims = np.clip(sims * 4 + 5, 0, 20).astype(dtype)  # integers: heavy ties
    assert retrieval_metrics(sims, c2i, chunk_size=4) == close(loop_retrieval_metrics(sims, c2i))


def test_infinities_and_memory_layouts():
    rng = np.random.default_rng(2)
    sims, c2i = random_case(rng, 7, 20, decimals=1)
    sims[rng.random(sims.shape) < 0.15] = np.inf
    sims[rng.random(sims.shape) < 0.15] = -np.inf
    expected = loop_retrieval_metrics(sims, c2i)
    assert retrieval_metrics(sims, c2i) == close(expected)
    assert retrieval_metrics(np.asfortranarray(sims), c2i, chunk_size=3) == close(expected)
    wide = np.repeat(sims, 2, axis=1)  # a non-contiguous view with the same values
    assert retrieval_metrics(wide[:, ::2], c2i, chunk_size=2) == close(expected)
    assert retrieval_metrics(sims.T.copy().T, list(c2i)) == close(expected)


# ---------------------------------------------------------------------------------------------
# Chunking and memory
# ---------------------------------------------------------------------------------------------


def test_chunk_sizes_give_identical_ranks_on_a_medium_matrix():
    rng = np.random.default_rng(3)
    sims, c2i = random_case(rng, 600, 2600, decimals=2)
    sims = sims.astype(np.float32)
    ref_i2t, ref_t2i = ranks_i2t(sims, c2i, chunk_size=600), ranks_t2i(sims, c2i, chunk_size=600)
    # Spot-check the one-chunk result against the loop reference on a few queries.
    rows = [0, 17, 599]
    assert ref_i2t[rows].tolist() == [loop_ranks_i2t(sims, c2i)[r] for r in rows]
    # Sizes below, at and above 255 (the uint8 column-sum limit), not dividing 600, and None.
    for chunk_size in (1, 7, 64, 255, 256, 599, 1000, None):
        assert np.array_equal(ranks_i2t(sims, c2i, chunk_size=chunk_size), ref_i2t), chunk_size
        assert np.array_equal(ranks_t2i(sims, c2i, chunk_size=chunk_size), ref_t2i), chunk_size


def test_more_than_65535_captions_per_row():
    # Exercises the wide-row counting path (row counts beyond uint16).
    n_captions = 70_000
    sims = np.zeros((2, n_captions), dtype=np.float32)
    c2i = np.ones(n_captions, dtype=np.int64)
    c2i[0] = 0
    sims[0, 0] = -1.0  # image 0's only caption scores below all 69,999 others (0) → rank 70,000
    sims[1, :] = 1.0  # image 1: its own 69,999 captions tie at 1 (free) ...
    sims[1, 0] = 0.5  # ... and image 0's caption is below them → rank 1
    assert ranks_i2t(sims, c2i).tolist() == [70_000, 1]
    # t2i: caption 0 own image 0 (−1) < image 1 (.5) → 2; the others: own image 1 (1) > 0 → 1.
    r = ranks_t2i(sims, c2i)
    assert r[0] == 2 and (r[1:] == 1).all()


def test_extra_memory_is_bounded_by_the_chunk_not_the_matrix():
    rng = np.random.default_rng(4)
    sims = rng.random((400, 5000), dtype=np.float32)  # 8 MB
    c2i = np.concatenate([np.repeat(np.arange(400), 12), rng.integers(0, 400, 200)])
    for chunk_size in (8, None):
        tracemalloc.start()
        try:
            retrieval_metrics(sims, c2i, chunk_size=chunk_size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Vectors of length n_captions / n_images plus one [rows, 5000] boolean buffer: well
        # under 1 MB, while a single full-size boolean or float temporary would be 5-20 MB.
        assert peak < sims.nbytes / 8, (chunk_size, peak)


# ---------------------------------------------------------------------------------------------
# The 1K protocol and averaging
# ---------------------------------------------------------------------------------------------


def five_fold_case():
    """10 images in 5 folds of 2; image 0 has 4 captions, every other image 1 (13 captions).

    Cross-fold scores are −1, below every in-fold score, so a single pass over the whole
    matrix ranks every query exactly as its fold does: it equals pooling the folds' ranks.
    """
    c2i = np.array([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    sims = np.full((10, 13), -1.0)
    # fold 0: images 0, 1; captions a1..a4 (cols 0-3, image 0) and b (col 4, image 1)
    sims[0, 0:5] = [1.0, 0.1, 0.1, 0.1, 0.0]
    sims[1, 0:5] = [0.5, 0.15, 0.15, 0.15, 0.2]
    # fold 1: images 2, 3; captions col 5 (image 2), col 6 (image 3)
    sims[2, 5:7] = [1.0, 0.0]
    sims[3, 5:7] = [0.5, 0.2]
    # folds 2-4: images 4..9, captions cols 7..12; own 1, fold partner 0
    for img in range(4, 10):
        partner = img + 1 if img % 2 == 0 else img - 1
        sims[img, img + 3] = 1.0
        sims[partner, img + 3] = 0.0
    return sims, c2i


def test_fold_metrics_averages_folds_which_differs_from_pooling():
    sims, c2i = five_fold_case()
    average, folds = fold_metrics(sims, c2i, fold_size=2)
    # Fold 0. i2t: image 0 best own 1.0 > b 0.0 → 1; image 1 own b .2 < a1 .5 (a2-a4 .15 are
    #   below) → 2. Ranks [1, 2]: R@1 50, Med r sorted[1] = 2, mean r 1.5.
    #   t2i: a1 [1.0 .5] → 1; a2-a4 [.1 .15] → 2 each; b [0 .2] → 1. Ranks [1 2 2 2 1]:
    #   R@1 40, Med r sorted[2] = 2, mean r 8/5 = 1.6.
    # Fold 1. i2t: image 2 → 1; image 3 own .2 < .5 → 2: R@1 50, Med r 2, mean r 1.5.
    #   t2i: col 5 [1 .5] → 1; col 6 [0 .2] → 1: R@1 100, Med r 1, mean r 1.
    # Folds 2-4: every rank 1.
    assert [f["num_captions"] for f in folds] == [5, 2, 2, 2, 2]
    assert folds[0]["i2t"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.5}
    assert folds[0]["t2i"] == {"r1": 40.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.6}
    assert folds[1]["i2t"]["medr"] == 2.0 and folds[1]["t2i"]["r1"] == 100.0
    assert all(f["rsum"] == 600.0 for f in folds[2:])
    # Averaged over the 5 folds:
    #   i2t R@1 (50+50+100+100+100)/5 = 80, Med r (2+2+1+1+1)/5 = 1.4, mean r (1.5+1.5+1+1+1)/5 = 1.2
    #   t2i R@1 (40+100·4)/5 = 88, Med r (2+1+1+1+1)/5 = 1.2, mean r (1.6+1+1+1+1)/5 = 1.12
    #   rsum 80+100+100 + 88+100+100 = 568; 2 images per fold; captions per fold differ → mean 13/5.
    assert average == {
        "num_images": 2,
        "num_captions": approx(2.6),
        "i2t": {"r1": approx(80.0), "r5": 100.0, "r10": 100.0, "medr": approx(1.4), "meanr": approx(1.2)},
        "t2i": {"r1": approx(88.0), "r5": 100.0, "r10": 100.0, "medr": approx(1.2), "meanr": approx(1.12)},
        "rsum": approx(568.0),
    }
    # Pooled (one pass over all 10 images, = the folds' ranks concatenated):
    #   i2t ranks [1 2 1 2 1 1 1 1 1 1]: R@1 8/10 = 80 (same), sorted[5] = 1 → Med r 1 (not 1.4),
    #   mean r 1.2 (same).
    #   t2i ranks [1 2 2 2 1 | 1 1 | 1×6]: 10 of 13 at rank 1 → R@1 76.92 (not 88), Med r 1
    #   (not 1.2), mean r 16/13 = 1.2308 (not 1.12). rsum 80+100+100 + 76.92+100+100 = 556.92
    #   (not 568).
    pooled = retrieval_metrics(sims, c2i)
    assert pooled["i2t"] == {"r1": approx(80.0), "r5": 100.0, "r10": 100.0, "medr": 1.0, "meanr": approx(1.2)}
    assert pooled["t2i"] == {"r1": approx(1000 / 13), "r5": 100.0, "r10": 100.0, "medr": 1.0,
                             "meanr": approx(16 / 13)}
    assert pooled["rsum"] == approx(480 + 1000 / 13)


def test_fold_metrics_uses_only_each_folds_captions_in_any_column_order():
    sims, c2i = five_fold_case()
    perm = np.random.default_rng(5).permutation(c2i.size)
    average, folds = fold_metrics(sims[:, perm], c2i[perm], fold_size=2)
    assert (average, folds) == fold_metrics(sims, c2i, fold_size=2)
    # Each fold is exactly retrieval_metrics on its own block.
    cols = np.flatnonzero((c2i >= 2) & (c2i < 4))
    assert folds[1] == retrieval_metrics(sims[2:4, cols], c2i[cols] - 2)
    # One fold of everything = the single pass.
    average, folds = fold_metrics(sims, c2i, fold_size=10, chunk_size=3)
    assert average == folds[0] == retrieval_metrics(sims, c2i)


def test_fold_metrics_needs_whole_folds():
    sims, c2i = five_fold_case()
    with pytest.raises(ValueError, match="not a multiple of fold_size=3"):
        fold_metrics(sims, c2i, fold_size=3)
    with pytest.raises(ValueError, match="not a multiple of fold_size=1000"):
        fold_metrics(sims, c2i)
    with pytest.raises(ValueError, match="fold_size must be a positive integer"):
        fold_metrics(sims, c2i, fold_size=0)


def test_average_metrics_rules():
    a = {"num_images": 2, "num_captions": 4, "i2t": {"r1": 50.0, "medr": 2.0}, "rsum": 150.0}
    b = {"num_images": 2, "num_captions": 6, "i2t": {"r1": 100.0, "medr": 1.0}, "rsum": 250.0}
    avg = average_metrics([a, b])
    assert avg == {"num_images": 2, "num_captions": 5.0, "i2t": {"r1": 75.0, "medr": 1.5}, "rsum": 200.0}
    assert type(avg["num_images"]) is int  # equal counts keep the per-fold value, as an int
    assert average_metrics([a]) == a
    with pytest.raises(ValueError, match="no results"):
        average_metrics([])
    with pytest.raises(ValueError, match="disagrees with result 0 at i2t"):
        average_metrics([a, {**b, "i2t": {"r1": 1.0}}])
    with pytest.raises(ValueError, match="non-numeric rsum"):
        average_metrics([a, {**b, "rsum": "x"}])


def test_average_rsum_equals_sum_of_average_recalls():
    rng = np.random.default_rng(6)
    sims, c2i = random_case(rng, 40, 130, decimals=1)
    c2i = np.sort(c2i)  # keep captions of each 10-image fold together (not required)
    average, _ = fold_metrics(sims, c2i, fold_size=10)
    recalls = sum(average[d][k] for d in ("i2t", "t2i") for k in ("r1", "r5", "r10"))
    assert average["rsum"] == approx(recalls)


# ---------------------------------------------------------------------------------------------
# CUHK-PEDES text→image by identity
# ---------------------------------------------------------------------------------------------


def test_reid_metrics_by_hand():
    # Gallery identities [7, 3, 7, 5, 7]; queries with identities 7 and 3.
    sims = np.array(
        [
            [0.5, 0.9, 0.7, 0.7, 0.2],  # query 0 (id 7): correct g0, g2, g4
            [0.1, 0.8, 0.3, 0.6, 0.9],  # query 1 (id 3): correct g1
        ]
    )
    # Query 0, pessimistic order: g1 .9 (wrong) 1st; tie at .7: g3 (wrong) 2nd, g2 (right) 3rd;
    #   g0 .5 (right) 4th; g4 .2 (right) 5th. First correct rank 3.
    #   AP = (1/3 + 2/4 + 3/5)/3 = 1.43333/3 = 0.477778.
    # Query 1: g4 .9 (wrong) 1st, g1 .8 (right) 2nd. First correct rank 2; AP = 1/2.
    # Ranks [3, 2]: R@1 0, R@5 100; Med r sorted[1] = 3 (np.median 2.5); mean r 2.5;
    # mAP = 100·(0.477778 + 0.5)/2 = 48.8889.
    m = reid_metrics(sims, [7, 3], [7, 3, 7, 5, 7], ap_rule="standard")
    assert m == {
        "num_queries": 2,
        "num_gallery": 5,
        "t2i": {"r1": 0.0, "r5": 100.0, "r10": 100.0, "medr": 3.0, "meanr": 2.5,
                "map": approx(100 * ((1 / 3 + 2 / 4 + 3 / 5) / 3 + 0.5) / 2)},
    }
    assert m["t2i"]["map"] == approx(48.8889, abs=1e-4)
    # Trapezoid rule of the official test_cuhk/compute_AP_rerank.m (called by test_cuhk/evaluate.m):
    # ap += d_recall * (old_precision + precision) / 2, old_precision = 1 before rank 1.
    #   query 0: rank 3 (hit 1): (0/2 + 1/3)/2 = 1/6; rank 4 (hit 2): (1/3 + 2/4)/2 = 5/12;
    #            rank 5 (hit 3): (2/4 + 3/5)/2 = 0.55 → AP = (1/6 + 5/12 + 0.55)/3 = 0.377778
    #   query 1: rank 2 (hit 1): (0/1 + 1/2)/2 = 1/4 → AP 0.25.  mAP = 100·(0.377778 + 0.25)/2.
    trap = reid_metrics(sims, np.array([7, 3]), np.array([7, 3, 7, 5, 7]), ap_rule="trapezoid")
    assert trap["t2i"]["map"] == approx(100 * ((1 / 6 + 5 / 12 + 0.55) / 3 + 0.25) / 2)
    assert trap["t2i"]["map"] == approx(31.3889, abs=1e-4)
    # The official rule is the default (fidelity row #20).
    assert reid_metrics(sims, [7, 3], [7, 3, 7, 5, 7])["t2i"]["map"] == approx(31.3889, abs=1e-4)
    # A correct image at rank 1 counts precision 1 under both rules.
    assert reid_metrics([[0.9, 0.1]], [1], [1, 2], ap_rule="standard")["t2i"]["map"] == 100.0
    assert reid_metrics([[0.9, 0.1]], [1], [1, 2], ap_rule="trapezoid")["t2i"]["map"] == 100.0


@pytest.mark.parametrize("seed", range(4))
def test_reid_agrees_with_python_loops(seed):
    rng = np.random.default_rng(seed)
    n_gallery = int(rng.integers(3, 30))
    gid = [f"person{i}" for i in rng.integers(0, 6, n_gallery)]
    qid = [gid[i] for i in rng.integers(0, n_gallery, int(rng.integers(1, 25)))]
    sims = np.round(rng.standard_normal((len(qid), n_gallery)), 1)  # ties
    expected = loop_reid(sims, qid, gid)
    for chunk_size in (None, 1, 4):
        assert reid_metrics(sims, qid, gid, chunk_size=chunk_size, ap_rule="standard") == close(expected)


def test_reid_validation():
    sims = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shapes disagree: query_identity"):
        reid_metrics(sims, [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="shapes disagree: gallery_identity"):
        reid_metrics(sims, [1, 2], [1, 2])
    with pytest.raises(ValueError, match=r"query\(s\) 1 have no gallery image of their identity"):
        reid_metrics(sims, [1, 9], [1, 2, 3])
    bad = sims.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN \(first at \[1, 2\]"):
        reid_metrics(bad, [1, 2], [1, 2, 3], chunk_size=1)
    with pytest.raises(ValueError, match="ap_rule"):
        reid_metrics(sims, [1, 2], [1, 2, 3], ap_rule="11-point")


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def test_shapes_disagree():
    with pytest.raises(ValueError, match="shapes disagree: caption_to_image has 5 entries but sims has 6"):
        retrieval_metrics(SIMS_3x6, [0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(SIMS_3x6[0], C2I_3x6)
    with pytest.raises(ValueError, match="1-D"):
        retrieval_metrics(SIMS_3x6, C2I_3x6[None])
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(np.zeros((0, 6)), C2I_3x6)


def test_caption_to_image_out_of_range_or_not_integer():
    with pytest.raises(ValueError, match=r"out of range.*\[0, 3\).*caption 5 → 3"):
        retrieval_metrics(SIMS_3x6, [0, 0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match=r"out of range.*caption 0 → -1"):
        ranks_t2i(SIMS_3x6, [-1, 0, 1, 1, 2, 2])
    with pytest.raises(TypeError, match="integer image indices"):
        retrieval_metrics(SIMS_3x6, C2I_3x6.astype(float))
    with pytest.raises(TypeError, match="real numbers"):
        retrieval_metrics(SIMS_3x6 > 0.5, C2I_3x6)


def test_image_without_caption():
    c2i = [0, 0, 2, 2, 2, 2]  # image 1 has no caption
    with pytest.raises(ValueError, match=r"image\(s\) 1 have no caption.*image→text rank is undefined"):
        retrieval_metrics(SIMS_3x6, c2i)
    with pytest.raises(ValueError, match=r"image\(s\) 1 have no caption"):
        ranks_i2t(SIMS_3x6, c2i)
    # text→image alone is defined: image 1 is just a distractor.
    # c0 [.9 .5 .2] own img0 → 1; c1 [.1 .6 .3] → 3; c2 own img2 .1, [.8 .7 .1] → 3;
    # c3 own img2 .95 → 1; c4 own img2 .4, [.3 .9 .4] → 2; c5 own img2 .5 → 1.
    assert ranks_t2i(SIMS_3x6, c2i).tolist() == [1, 3, 3, 1, 2, 1]


def test_nan_is_reported_with_its_position():
    sims = SIMS_3x6.copy()
    sims[2, 4] = np.nan
    for chunk_size in (None, 1, 2):
        with pytest.raises(ValueError, match=r"sims contains NaN \(first at \[2, 4\]"):
            retrieval_metrics(sims, C2I_3x6, chunk_size=chunk_size)
    with pytest.raises(ValueError, match="NaN"):
        ranks_t2i(sims.astype(np.float32), C2I_3x6)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_bad_chunk_size(chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        retrieval_metrics(SIMS_3x6, C2I_3x6, chunk_size=chunk_size)


# ---------------------------------------------------------------------------------------------
# class_metrics: several images per class (the emoji's renderings), both directions by class
# ---------------------------------------------------------------------------------------------

# images 0, 1 of class "a" (two renderings), image 2 of class "b"; captions 0, 2 of "a", 1, 3 of "b"
CLASS_SIMS = np.array([
    [0.9, 0.8, 0.1, 0.3],   # image 0 (a)
    [0.2, 0.7, 0.6, 0.6],   # image 1 (a)
    [0.5, 0.4, 0.9, 0.4],   # image 2 (b)
])
IMAGE_CLASS = np.array(["a", "a", "b"])
CAPTION_CLASS = np.array(["a", "b", "a", "b"])


def test_class_metrics_on_a_hand_worked_3x4_case():
    # i2t: image 0's best "a" caption 0.9, no "b" caption ≥ 0.9 → rank 1;
    #      image 1's best "a" caption 0.6 (caption 2); "b" captions 0.7 ≥ and 0.6 ≥ (a tie, counted) → 3;
    #      image 2's best "b" caption 0.4; "a" captions 0.5 and 0.9 ≥ 0.4 → 3.   ranks [1, 3, 3]
    # t2i: caption 0 ("a"): best "a" image 0.9; image 2 0.5 < 0.9 → 1;
    #      caption 1 ("b"): image 2 0.4; images 0 (0.8), 1 (0.7) ≥ → 3;
    #      caption 2 ("a"): best 0.6 (image 1); image 2 0.9 ≥ → 2;
    #      caption 3 ("b"): image 2 0.4; image 0 0.3 <, image 1 0.6 ≥ → 2.   ranks [1, 3, 2, 2]
    expected = {
        "num_images": 3, "num_captions": 4,
        "i2t": {"r1": 100 / 3, "r5": 100.0, "r10": 100.0, "medr": 3.0, "meanr": 7 / 3},  # sorted [1,3,3][1]
        "t2i": {"r1": 25.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 2.0},       # sorted [1,2,2,3][2]
        "rsum": 100 / 3 + 200 + 25 + 200,
    }
    for chunk in (None, 1, 2):
        assert class_metrics(CLASS_SIMS, IMAGE_CLASS, CAPTION_CLASS, chunk_size=chunk) == close(expected)


def test_class_metrics_is_retrieval_metrics_when_every_class_has_one_image():
    rng = np.random.default_rng(3)
    sims = rng.normal(size=(6, 14))
    sims[2, 5] = sims[2, 4]  # a tie, pessimistic in both
    c2i = np.r_[np.arange(6), rng.integers(0, 6, 8)]
    assert class_metrics(sims, np.arange(6), c2i) == retrieval_metrics(sims, c2i)


def test_class_metrics_rejects_a_class_without_a_match():
    with pytest.raises(ValueError, match=r"image\(s\) 2 have no caption of their class"):
        class_metrics(CLASS_SIMS, IMAGE_CLASS, np.array(["a", "a", "a", "a"]))
    with pytest.raises(ValueError, match=r"caption\(s\) 1, 3 have no image of their class"):
        class_metrics(CLASS_SIMS[:2], IMAGE_CLASS[:2], CAPTION_CLASS)
    with pytest.raises(ValueError, match="shapes disagree"):
        class_metrics(CLASS_SIMS, IMAGE_CLASS[:2], CAPTION_CLASS)
