"""Benchmark: ``dpcnn.metrics.retrieval_metrics`` on the COCO 5K shape vs per-query Python loops.

    .venv/bin/python benchmarks/bench_metrics.py [--images 5000] [--per-image 5] [--seed 0]

Random float32 similarities, 5,000 images × 25,000 captions (5 per image, the 500 MB matrix of
the COCO 5K protocol). Prints:

* the time of ``retrieval_metrics`` (best of ``--repeats`` runs);
* the time of two per-query Python loops over the same matrix, each timed on a subset of
  queries (``--loop-images`` image queries and ``--loop-captions`` caption queries) and
  extrapolated linearly to all queries — every query costs the same there, so this is sound:
  - "sort loop": the usual implementation (vsepp's ``i2t``/``t2i``, the official MATLAB
    ``evaluate.m``): per query, argsort all scores and find the ground truth's position;
  - "compare loop": the same pessimistic-tie semantics as ``retrieval_metrics``, one numpy
    comparison per query (a stronger baseline than the sort loop);
  and checks that each loop's ranks match ``retrieval_metrics`` on the subset;
* the time of ``fold_metrics`` (the COCO 1K protocol: 5 folds of 1,000 images) for reference;
* the extra peak memory of ``retrieval_metrics`` (on top of the matrix), measured before any
  timing so that no earlier call has left freed memory for the allocator to reuse, two ways:
  - tracemalloc: numpy reports every array-buffer allocation to tracemalloc, so the traced peak
    during the call, with tracing started after the matrix exists, is exactly the peak of the
    Python objects and numpy buffers the call allocates (it cannot see memory that C libraries
    allocate outside numpy; the metric code calls none);
  - peak RSS: VmHWM from /proc/self/status after resetting it by writing 5 to
    /proc/self/clear_refs (Linux ≥ 4.0), minus the RSS before the call. It counts resident pages
    of any origin, including allocator slack, so it is an upper-side cross-check; skipped where
    clear_refs cannot be written.
* the ratios against the goals: ≥ 20× faster than the loop, ≤ 1 GB (10⁹ bytes) extra peak memory.
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from dpcnn.metrics import fold_metrics, ranks_i2t, ranks_t2i, retrieval_metrics

GB = 10**9
MIB = 1 << 20


def sort_loop_ranks(sims: np.ndarray, c2i: np.ndarray, images: np.ndarray, captions: np.ndarray):
    """vsepp-style per-query argsort loops (ties broken by position, as ``np.argsort`` does)."""
    r_i2t = []
    for i in images:
        order = np.argsort(sims[i])[::-1]
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        r_i2t.append(1 + position[c2i == i].min())
    r_t2i = []
    for c in captions:
        order = np.argsort(sims[:, c])[::-1]
        r_t2i.append(1 + int(np.flatnonzero(order == c2i[c])[0]))
    return np.array(r_i2t), np.array(r_t2i)


def compare_loop_ranks(sims: np.ndarray, c2i: np.ndarray, images: np.ndarray, captions: np.ndarray):
    """Per-query loops with the same pessimistic-tie definition as ``retrieval_metrics``."""
    r_i2t = []
    for i in images:
        row = sims[i]
        own = c2i == i
        best = row[own].max()
        r_i2t.append(1 + int(np.count_nonzero(row[~own] >= best)))
    r_t2i = []
    for c in captions:
        col = sims[:, c]
        r_t2i.append(int(np.count_nonzero(col >= col[c2i[c]])))
    return np.array(r_i2t), np.array(r_t2i)


def peak_rss_supported() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--per-image", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-images", type=int, default=250, help="image queries timed in the loops")
    parser.add_argument("--loop-captions", type=int, default=1250, help="caption queries timed in the loops")
    args = parser.parse_args()

    n_images, n_captions = args.images, args.images * args.per_image
    rng = np.random.default_rng(args.seed)
    sims = rng.random((n_images, n_captions), dtype=np.float32)
    c2i = np.repeat(np.arange(n_images), args.per_image)
    print(f"platform: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"sims: {n_images} × {n_captions} float32 = {sims.nbytes / MIB:.0f} MiB, "
          f"{args.per_image} captions per image")

    # --- extra peak memory: first, so that no earlier call has left freed memory to reuse ------
    rss_peak = None
    if peak_rss_supported():
        rss_before = status_kib("VmRSS")
        retrieval_metrics(sims, c2i)
        rss_peak = (status_kib("VmHWM") - rss_before) * 1024
        print(f"extra peak memory (VmHWM − VmRSS before, after clear_refs reset): {rss_peak / MIB:.1f} MiB")
    else:
        print("extra peak memory (peak RSS): skipped, /proc/self/clear_refs is not writable here")

    tracemalloc.start()
    tracemalloc.reset_peak()
    retrieval_metrics(sims, c2i)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"extra peak memory (tracemalloc, numpy buffers + Python objects): {traced_peak / MIB:.1f} MiB")

    # --- retrieval_metrics: time -------------------------------------------------------------
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = retrieval_metrics(sims, c2i)
        times.append(time.perf_counter() - t0)
    t_vec = min(times)
    print(f"retrieval_metrics: {t_vec:.3f} s (best of {args.repeats}: "
          f"{', '.join(f'{t:.3f}' for t in times)}); rsum {result['rsum']:.2f}")
    if n_images % 1000 == 0:
        t0 = time.perf_counter()
        fold_metrics(sims, c2i, fold_size=1000)
        print(f"fold_metrics (1K protocol, {n_images // 1000} folds): {time.perf_counter() - t0:.3f} s")

    # --- the loops, on a subset of queries, extrapolated ----------------------------------------
    images = rng.choice(n_images, size=min(args.loop_images, n_images), replace=False)
    captions = rng.choice(n_captions, size=min(args.loop_captions, n_captions), replace=False)
    ref_i2t = ranks_i2t(sims, c2i)[images]
    ref_t2i = ranks_t2i(sims, c2i)[captions]
    loop_totals = {}
    for name, loop in (("sort loop", sort_loop_ranks), ("compare loop", compare_loop_ranks)):
        t0 = time.perf_counter()
        r_i2t, _ = loop(sims, c2i, images, captions[:0])
        t_i2t = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, r_t2i = loop(sims, c2i, images[:0], captions)
        t_t2i = time.perf_counter() - t0
        total = t_i2t * n_images / images.size + t_t2i * n_captions / captions.size
        loop_totals[name] = total
        agree = np.count_nonzero(r_i2t == ref_i2t) + np.count_nonzero(r_t2i == ref_t2i)
        print(f"{name}: i2t {t_i2t:.2f} s for {images.size} images, t2i {t_t2i:.2f} s for "
              f"{captions.size} captions → extrapolated to all {n_images} + {n_captions} queries: "
              f"{total:.1f} s; ranks agree with retrieval_metrics on {agree}/"
              f"{images.size + captions.size} subset queries")

    # --- verdict --------------------------------------------------------------------------------
    for name, total in loop_totals.items():
        ratio = total / t_vec
        print(f"speed-up vs {name}: {ratio:.0f}× (goal ≥ 20×: {'met' if ratio >= 20 else 'NOT met'})")
    worst = max(traced_peak, rss_peak or 0)
    print(f"extra peak memory {worst / MIB:.1f} MiB = {worst / GB:.3f} GB "
          f"(goal ≤ 1 GB: {'met' if worst <= GB else 'NOT met'})")


if __name__ == "__main__":
    main()
