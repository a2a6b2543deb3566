"""Benchmark: training throughput with the real tf.data pipeline vs the same batches cached in memory.

    .venv/bin/python benchmarks/bench_pipeline.py [--root /tmp/bench_data] [--stages 1 2]
                                                  [--epochs 3] [--rounds 5]

On the ``demo`` preset (synthetic JPEG files, 48 px images → 40 px crops, batch 32) and for
each stage:

* **pipeline alone**: batches/s of ``stage{1,2}_dataset`` with no model, and the process CPU
  time per batch (all threads): what the input pipeline costs the machine;
* **training**: one compiled model (set up as ``run_stage`` does), trained in alternating rounds
  (a) on the real pipeline from the JPEG files and (b) on the *same* batches taken from that
  pipeline, materialised once and served from memory with ``.cache()``. Every round is a fresh
  ``fit`` of ``--epochs`` epochs whose first epoch is dropped (iterator start-up, tracing); the
  two conditions alternate (ABBA…) so slow phases of a shared machine hit both;
* the ratio **pipeline throughput / cached throughput** = best cached s/step ÷ best pipeline
  s/step (best of all measured epochs: interference from other processes only adds time), and
  the median of the per-round ratios as a second opinion. Goal ≥ 0.95.

The first batch of the pipeline is checked to be identical to the first cached batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

GOAL = 0.95


def pipeline_alone(make, train, cfg, batches: int, repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds per batch of the dataset alone (no model)."""
    ds = make(train, cfg, 0, 10**4)
    it = iter(ds)
    for _ in range(4):
        next(it)
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(it)
        walls.append((time.perf_counter() - w) / batches)
        cpus.append((time.process_time() - c) / batches)
    return min(walls), min(cpus)


def run_stage_benchmark(stage: int, cfg, data, epochs: int, rounds: int, repeats: int) -> dict:
    import numpy as np

    from dpcnn.data import pipeline

    train = data.splits["train"]
    steps = pipeline.steps_per_epoch(train.num_images, cfg.train.batch_size, cfg.train.steps_per_epoch)
    make = pipeline.stage1_dataset if stage == 1 else pipeline.stage2_dataset
    print(f"\n== stage {'I' if stage == 1 else 'II'}: {train.num_images} training images, "
          f"batch {cfg.train.batch_size}, {steps} steps/epoch, {epochs} epochs per round "
          f"(first dropped), {rounds} rounds per condition", flush=True)

    wall_alone, cpu_alone = pipeline_alone(make, train, cfg, batches=4 * steps, repeats=repeats)
    print(f"pipeline alone (no model): {1 / wall_alone:.0f} batches/s = {B.ms(wall_alone)}/batch wall, "
          f"{B.ms(cpu_alone)}/batch CPU (best of {repeats})", flush=True)

    cached = make(train, cfg, 0, epochs).cache()
    first_cached = None
    for batch in cached:  # materialise: the cache is filled by one full pass
        if first_cached is None:
            first_cached = batch
    first_fresh = next(iter(make(train, cfg, 0, epochs)))
    same = all(np.array_equal(first_cached[k].numpy(), first_fresh[k].numpy()) for k in first_cached)
    print(f"first batch identical in both conditions: {'yes' if same else 'NO'}")

    model = B.stage_model(cfg, data, stage)
    B.fit_epochs(model, cached, 2, steps)  # trace and warm up
    per = {"cached": [], "pipeline": []}
    cpu = {"cached": [], "pipeline": []}
    round_ratios = []
    for r in range(rounds):
        order = ("cached", "pipeline") if r % 2 == 0 else ("pipeline", "cached")
        best_this_round = {}
        for cond in order:
            ds = cached if cond == "cached" else make(train, cfg, 0, epochs)
            t = B.fit_epochs(model, ds, epochs, steps)
            per[cond] += [w / steps for w in t.wall]
            cpu[cond] += [c / steps for c in t.cpu]
            best_this_round[cond] = min(t.wall) / steps
        round_ratios.append(best_this_round["cached"] / best_this_round["pipeline"])
    best = {k: min(v) for k, v in per.items()}
    ratio = best["cached"] / best["pipeline"]
    for cond in ("cached", "pipeline"):
        print(f"train on {cond:8s}: best {B.ms(best[cond])}/step ({1 / best[cond]:.1f} steps/s), "
              f"median {B.ms(statistics.median(per[cond]))}/step; CPU median "
              f"{B.ms(statistics.median(cpu[cond]))}/step", flush=True)
    median_ratio = statistics.median(round_ratios)
    print(f"per-round ratios: {', '.join(f'{x:.3f}' for x in round_ratios)}")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"RATIO stage {stage} pipeline/cached throughput: {ratio:.3f} (best of all epochs; median of "
          f"rounds {median_ratio:.3f}); goal ≥ {GOAL}: {verdict}", flush=True)
    return {"ratio": ratio, "median_ratio": median_ratio, "best": best,
            "pipeline_alone": (wall_alone, cpu_alone)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT, help="data root for the generated demo data")
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per round (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per condition")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the pipeline-alone timing")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    print(B.versions())
    print(f"load average at start: {B.load_average()}")
    cfg = B.demo_config(args.root, args.set)
    data = B.prepared(cfg)
    for stage in args.stages:
        run_stage_benchmark(stage, cfg, data, args.epochs, args.rounds, args.repeats)
    print(f"load average at end: {B.load_average()}")


if __name__ == "__main__":
    main()
