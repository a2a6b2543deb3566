"""Benchmark: training throughput with the real tf.data pipeline vs the same batches cached in memory.

    .venv/bin/python benchmarks/bench_pipeline.py [--root /tmp/bench_data] [--stages 1 2]
                                                  [--epochs 3] [--rounds 8]

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

Then, for the paper presets' input (no model): the stage-I and stage-II pipelines alone on 128
generated 500 × 375 JPEG files (Flickr/COCO size) → 224 px crops with flips, batch 32: images/s
on this machine's cores and the CPU time per image, i.e. how many cores a GPU's throughput needs
(compare with ``bench_gpu``'s pairs/s).
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


def cost_breakdown(cfg, data, batches: int, repeats: int) -> None:
    """CPU per stage-I batch of the pipeline alone with one piece of the per-image work left out.

    Each variant replaces ``pipeline.train_image`` (restored after): the differences to the full
    pipeline say what reading + decoding, the bicubic antialiased resize and the random crop box
    cost. Interleaved rounds, best of ``repeats``.
    """
    import gc

    import numpy as np
    import tensorflow as tf

    from dpcnn.data import pipeline

    train = data.splits["train"]
    size = cfg.data.image_size
    first = pipeline.decode_image(tf.constant(str(train.paths[0]))).numpy()
    same_size = bool(np.all(train.sizes == np.asarray(first.shape[:2])))
    const = tf.constant(first)
    original = pipeline.train_image

    def no_resize(path, seed, d):  # the crop, cast and padded to S × S instead of resized
        image = pipeline.decode_image(path)
        s = tf.shape(image)
        crop_seed, _ = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        y0, x0, ch, cw = pipeline.random_crop_box(s[0], s[1], crop_seed, d.crop_size, d.crop_aspect)
        crop = tf.image.crop_to_bounding_box(image, y0, x0, tf.minimum(ch, size), tf.minimum(cw, size))
        return tf.ensure_shape(tf.image.pad_to_bounding_box(tf.cast(crop, tf.float32), 0, 0, size, size),
                               [size, size, 3])

    def fixed_box(path, seed, d):  # no random numbers: a fixed box of the median crop size
        image = pipeline.decode_image(path)
        s = tf.shape(image)
        side = tf.cast(tf.cast(tf.minimum(s[0], s[1]), tf.float32) * sum(d.crop_size) / 2, tf.int32)
        crop = tf.image.crop_to_bounding_box(image, 0, 0, side, side)
        out = tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bicubic", antialias=True)
        return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), [size, size, 3]) + tf.cast(seed[0] * 0, tf.float32)

    def no_decode(path, seed, d):  # no file read, no JPEG decode: the first image, already decoded
        decode = pipeline.decode_image
        pipeline.decode_image = lambda p: const + tf.cast(tf.strings.length(p) * 0, tf.uint8)
        try:
            return original(path, seed, d)
        finally:
            pipeline.decode_image = decode

    def no_image_work(path, seed, d):
        return tf.zeros([size, size, 3]) + tf.cast(tf.strings.length(path) * 0, tf.float32) + tf.cast(
            seed[0] * 0, tf.float32)

    variants = {"full pipeline": original}
    if same_size:  # a constant stands in for every decoded image only if they all have its size
        variants["without reading + decoding (a constant decoded image)"] = no_decode
    variants["without the bicubic antialiased resize"] = no_resize
    variants["without the random crop box (a fixed box)"] = fixed_box
    variants["without any per-image work (zeros)"] = no_image_work
    results: dict[str, float] = {}
    try:
        for r in range(repeats):
            for name, fn in (variants.items() if r % 2 == 0 else list(variants.items())[::-1]):
                pipeline.train_image = fn
                it = iter(pipeline.stage1_dataset(train, cfg, 0, 10**4))
                for _ in range(3):
                    next(it)
                c = time.process_time()
                for _ in range(batches):
                    next(it)
                results[name] = min(results.get(name, float("inf")), (time.process_time() - c) / batches)
                del it
                gc.collect()
    finally:
        pipeline.train_image = original
    full = results["full pipeline"]
    print(f"where the pipeline's CPU goes (stage I, no model; CPU per batch of {cfg.train.batch_size}, "
          f"best of {repeats}):")
    for name, t in results.items():
        extra = "" if name == "full pipeline" else f"  → that part: {B.ms(full - t)} ({(full - t) / full:.0%})"
        print(f"  {name:55s} {B.ms(t)}{extra}", flush=True)


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
    if stage == 1:
        cost_breakdown(cfg, data, batches=4 * steps, repeats=repeats + 1)

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
    foreign = {"cached": [], "pipeline": []}
    round_ratios = []
    for r in range(rounds):
        order = ("cached", "pipeline") if r % 2 == 0 else ("pipeline", "cached")
        best_this_round = {}
        for cond in order:
            ds = cached if cond == "cached" else make(train, cfg, 0, epochs)
            t = B.fit_epochs(model, ds, epochs, steps)
            per[cond] += [w / steps for w in t.wall]
            cpu[cond] += [c / steps for c in t.cpu]
            foreign[cond] += t.foreign
            best_this_round[cond] = min(t.wall) / steps
        round_ratios.append(best_this_round["cached"] / best_this_round["pipeline"])
    best = {k: min(v) for k, v in per.items()}
    ratio = best["cached"] / best["pipeline"]
    for cond in ("cached", "pipeline"):
        print(f"train on {cond:8s}: best {B.ms(best[cond])}/step ({1 / best[cond]:.1f} steps/s), "
              f"median {B.ms(statistics.median(per[cond]))}/step; CPU median "
              f"{B.ms(statistics.median(cpu[cond]))}/step; other processes used "
              f"{statistics.median(foreign[cond]):.2f} cores (median)", flush=True)
    median_ratio = statistics.median(round_ratios)
    print(f"per-round ratios: {', '.join(f'{x:.3f}' for x in round_ratios)}")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"RATIO stage {stage} pipeline/cached throughput: {ratio:.3f} (best of all epochs; median of "
          f"rounds {median_ratio:.3f}); goal ≥ {GOAL}: {verdict}", flush=True)
    return {"ratio": ratio, "median_ratio": median_ratio, "best": best,
            "pipeline_alone": (wall_alone, cpu_alone)}


def paper_resolution(root: str, batches: int, repeats: int) -> None:
    import os

    from dpcnn.config import resolve
    from dpcnn.data import pipeline

    cfg = resolve("demo-full", [f"data.root={root}", "data.flip=true", "data.max_len=32"])
    split = B.paper_size_split(Path(root) / "paper_jpegs", n=128, max_len=cfg.data.max_len)
    print(f"\n== paper resolution, pipeline alone: {split.num_images} JPEG files of 500 × 375 → "
          f"{cfg.data.image_size} px crops, flip on, batch {cfg.train.batch_size}, pool "
          f"{cfg.train.negative_pool}; {os.cpu_count()} CPUs", flush=True)
    for stage, make in ((1, pipeline.stage1_dataset), (2, pipeline.stage2_dataset)):
        rate, cpu = B.pipeline_images_per_second(make, split, cfg, batches, repeats)
        print(f"stage {'I' if stage == 1 else 'II'} pipeline alone: {rate:.0f} images/s (best of {repeats}), "
              f"{cpu * 1000:.1f} ms CPU per image → {cpu * 1000:.1f} cores per 1,000 images/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT, help="data root for the generated demo data")
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per round (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per condition")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the pipeline-alone timing")
    ap.add_argument("--paper-batches", type=int, default=15,
                    help="batches per timing of the paper-resolution pipeline (0 = skip it)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    cfg, data = B.demo_setup(args.root, args.set)
    for stage in args.stages:
        run_stage_benchmark(stage, cfg, data, args.epochs, args.rounds, args.repeats)
    if args.paper_batches > 0:
        paper_resolution(args.root, args.paper_batches, args.repeats)
    print(f"load average at end: {B.load_average()}")


if __name__ == "__main__":
    main()
