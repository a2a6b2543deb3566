"""Benchmark: training throughput with the real tf.data pipeline vs the same batches cached in memory.

    .venv/bin/python benchmarks/bench_pipeline.py [--root /tmp/bench_data] [--stages 1 2]
                                                  [--epochs 3] [--rounds 8] [--no-variant]

On the ``demo`` preset (synthetic JPEG files, 48 px images → 40 px crops, batch 32) and for
each stage:

* **pipeline alone**: batches/s of ``stage{1,2}_dataset`` with no model, and the process CPU
  time per batch (all threads), with ``data.cache_images`` on (the CPU presets' default: the
  decoded images are kept in memory, the crops are drawn from them every epoch) and off (every
  JPEG file decoded every epoch): what the input pipeline costs the machine;
* **training**: one model compiled with ``compile_stage`` (set up as ``run_stage`` does), trained
  in interleaved rounds on (a) the *same* batches taken from the pipeline, materialised once and
  served from memory with ``.cache()`` (the baseline), (b) the real pipeline with
  ``data.cache_images=true``, (c) the real pipeline with ``data.cache_images=false`` and, stage I
  only, (d) the experimental variant of the pipeline described below. Every round is a fresh
  ``fit`` of ``--epochs`` epochs per condition whose first epoch is dropped (iterator start-up);
  the order of the conditions alternates (ABCD, DCBA, …) so slow phases of a shared machine hit
  all of them;
* the ratio **pipeline throughput / cached throughput** per pipeline condition = best cached
  s/step ÷ best pipeline s/step (best of all measured epochs: interference from other processes
  only adds time), and the median of the per-round ratios as a second opinion. Goal ≥ 0.95.

The first batch of the pipeline is checked to be identical to the first cached batch, with the
cache on and off.

Stage I also gets a profile of the pipeline's CPU per batch (no model): the full pipeline with
the cache on and off, and variants that each leave one part of the per-image work out (the
resize, the crop, all of it), switch tf.data's autotuning off, or do the crop + resize of the
whole batch at once:

* **batched Keys-cubic resample** (the experiment; not in ``dpcnn/``): with the decoded images in
  memory and all of one size (the demo's), each image's antialiased bicubic crop-and-resize is
  written as two small weight matrices (rows, columns; the same kernel, support and
  normalisation as TensorFlow's ``ScaleAndTranslate``, which ``tf.image.resize(…, "bicubic",
  antialias=True)`` runs) and the whole batch is resampled with two batched matmuls instead of 32
  ``tf.map_fn`` iterations. Its pixels are checked against the real pipeline's (max |difference|
  on the 0-255 scale) and it runs as condition (d) of the training rounds;
* **batched bilinear** ``tf.image.crop_and_resize`` (not the same pixels: no antialiasing): the
  cheapest one-op batch crop, as a floor.

Then, for the paper presets' input (no model): the stage-I and stage-II pipelines alone on 128
generated 500 × 375 JPEG files (Flickr/COCO size) → 224 px crops with flips, batch 32, cache off
(the ``coco`` preset's data settings): images/s on this machine's cores and the CPU time per
image, i.e. how many cores a GPU's throughput needs (compare with ``device_check.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

GOAL = 0.95
STAGE_NAME = {1: "I", 2: "II"}
VARIANT = "pipeline, cache on, batched resample (experiment)"


# --------------------------------------------------------------------------------------------
# The experiment: the batch's crop + resize as two batched matmuls (same kernel as ScaleAndTranslate)
# --------------------------------------------------------------------------------------------


def keys_cubic(x):
    """The Keys cubic kernel with a = −0.5 (TensorFlow's ``keyscubic``) at |x|: float → float."""
    import tensorflow as tf

    x2, x3 = x * x, x * x * x
    near = 1.5 * x3 - 2.5 * x2 + 1.0
    far = -0.5 * x3 + 2.5 * x2 - 4.0 * x + 2.0
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def resample_weights(start, size, out: int, frame: int):
    """Weights of an antialiased bicubic resize of the crop [start, start + size) of a ``frame``-long
    axis to ``out`` samples: start, size int [B] → float32 [B, out, frame] (rows sum to 1).

    ``ScaleAndTranslate`` (scale = out / size, no translation, half-pixel centres): sample i sits at
    (i + ½)·size/out in the crop; source pixel s weighs K(|s + ½ − sample| / max(size/out, 1)),
    zero outside the crop, normalised per sample.
    """
    import tensorflow as tf

    size_f = tf.cast(size, tf.float32)[:, None, None]
    inv_scale = size_f / float(out)
    kernel_scale = tf.maximum(inv_scale, 1.0)
    sample = (tf.range(out, dtype=tf.float32)[None, :, None] + 0.5) * inv_scale
    source = tf.range(frame, dtype=tf.float32)[None, None, :] - tf.cast(start, tf.float32)[:, None, None]
    weights = keys_cubic(tf.abs(source + 0.5 - sample) / kernel_scale)
    weights = tf.where((source >= 0.0) & (source < size_f), weights, tf.zeros_like(weights))
    return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


def batched_resample_images(tables, indices, uniform, data):
    """A replacement for ``pipeline._Tables.images`` (same inputs, same output): the decoded images
    of the batch gathered from memory at once, crop boxes as the pipeline draws them, then the
    crop + resize of all of them as two batched matmuls, the flip and the clip as ``augment``."""
    import tensorflow as tf

    from dpcnn.data import pipeline

    flat, _ = tables.pixels
    height, width = tables.uniform_size
    size = data.image_size
    pixels = tf.gather(tf.reshape(flat, [tables.n, height, width, 3]), indices)
    sizes = tf.gather(tables.sizes, indices)
    y0, x0, ch, cw = pipeline.crop_boxes(sizes[:, 0], sizes[:, 1], uniform[:, :4], data.crop_size, data.crop_aspect)
    rows = resample_weights(y0, ch, size, height)
    cols = resample_weights(x0, cw, size, width)
    out = tf.einsum("bih,bhwc->biwc", rows, tf.cast(pixels, tf.float32))
    out = tf.einsum("bjw,biwc->bijc", cols, out)
    if data.flip:
        out = tf.where((uniform[:, 4] < 0.5)[:, None, None, None], tf.reverse(out, axis=[2]), out)
    return tf.clip_by_value(out, 0.0, 255.0)


def bilinear_batch_images(tables, indices, uniform, data):
    """``tf.image.crop_and_resize`` of the whole batch (bilinear, no antialiasing: not the pipeline's pixels)."""
    import tensorflow as tf

    from dpcnn.data import pipeline

    flat, _ = tables.pixels
    height, width = tables.uniform_size
    pixels = tf.gather(tf.reshape(flat, [tables.n, height, width, 3]), indices)
    sizes = tf.gather(tables.sizes, indices)
    y0, x0, ch, cw = (tf.cast(v, tf.float32) for v in pipeline.crop_boxes(
        sizes[:, 0], sizes[:, 1], uniform[:, :4], data.crop_size, data.crop_aspect))
    boxes = tf.stack([y0 / (height - 1), x0 / (width - 1), (y0 + ch - 1) / (height - 1), (x0 + cw - 1) / (width - 1)], 1)
    out = tf.image.crop_and_resize(tf.cast(pixels, tf.float32), boxes, tf.range(tf.shape(indices)[0]),
                                   [data.image_size, data.image_size])
    if data.flip:
        out = tf.where((uniform[:, 4] < 0.5)[:, None, None, None], tf.reverse(out, axis=[2]), out)
    return tf.clip_by_value(out, 0.0, 255.0)


@contextlib.contextmanager
def patched(module_or_class, name: str, value):
    """Replace an attribute of the pipeline while datasets are built (their map functions trace then)."""
    original = getattr(module_or_class, name)
    setattr(module_or_class, name, value)
    try:
        yield
    finally:
        setattr(module_or_class, name, original)


@contextlib.contextmanager
def variant_images(fn, split):
    """``_Tables.images`` replaced by ``fn`` (needs the decoded images in memory, all of one size)."""
    import numpy as np

    from dpcnn.data import pipeline

    if not np.all(split.sizes == split.sizes[0]):
        raise ValueError("the batched variants need training images of one size")
    height, width = (int(v) for v in split.sizes[0])
    original_init = pipeline._Tables.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.uniform_size = (height, width)

    with patched(pipeline._Tables, "__init__", init), patched(pipeline._Tables, "images", fn):
        yield


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


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


def cost_breakdown(cfg_on, cfg_off, data, batches: int, repeats: int) -> dict:
    """CPU (and wall) per stage-I batch of the pipeline alone: the full pipeline with the cache on
    and off, and the variants of the module docstring. Interleaved rounds, best of ``repeats``."""
    import tensorflow as tf

    from dpcnn.data import pipeline

    train = data.splits["train"]
    size = cfg_on.data.image_size

    def crop_only(image, box, size_):  # the crop, cast and padded to S × S instead of resized
        crop = tf.image.crop_to_bounding_box(image, box[0], box[1], tf.minimum(box[2], size_), tf.minimum(box[3], size_))
        padded = tf.image.pad_to_bounding_box(tf.cast(crop, tf.float32), 0, 0, size_, size_)
        return tf.ensure_shape(padded, [size_, size_, 3])

    def resize_only(image, box, size_):  # the whole image resized: no crop
        out = tf.image.resize(tf.cast(image, tf.float32), [size_, size_], method="bicubic", antialias=True)
        return tf.ensure_shape(out + tf.cast(box[0] * 0, tf.float32), [size_, size_, 3])

    def no_image_work(images_of, heights, widths, uniform, d):
        return tf.zeros([tf.shape(uniform)[0], size, size, 3]) + uniform[:, :1, None, None] * 0.0

    variants = {
        "full pipeline, data.cache_images=true": (cfg_on, contextlib.nullcontext),
        "full pipeline, data.cache_images=false (decode every image)": (cfg_off, contextlib.nullcontext),
        "cache on, without the resize (crop, cast, pad)": (
            cfg_on, lambda: patched(pipeline, "crop_and_resize", crop_only)),
        "cache on, without the crop (resize the whole image)": (
            cfg_on, lambda: patched(pipeline, "crop_and_resize", resize_only)),
        "cache on, batched Keys-cubic resample (experiment)": (
            cfg_on, lambda: variant_images(batched_resample_images, train)),
        "cache on, batched bilinear crop_and_resize (other pixels)": (
            cfg_on, lambda: variant_images(bilinear_batch_images, train)),
        "cache on, without any per-image work (zeros)": (
            cfg_on, lambda: patched(pipeline, "augment", no_image_work)),
        "cache on, tf.data autotuning off (options.autotune.enabled=False)": (cfg_on, contextlib.nullcontext),
    }
    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    items = list(variants.items())
    for r in range(repeats):
        for name, (run_cfg, context) in (items if r % 2 == 0 else items[::-1]):
            with context():
                ds = pipeline.stage1_dataset(train, run_cfg, 0, 10**4)
            if "autotuning off" in name:
                ds = ds.with_options(no_autotune)
            it = iter(ds)
            for _ in range(3):
                next(it)
            w, c = time.perf_counter(), time.process_time()
            for _ in range(batches):
                next(it)
            cpu[name] = min(cpu.get(name, float("inf")), (time.process_time() - c) / batches)
            wall[name] = min(wall.get(name, float("inf")), (time.perf_counter() - w) / batches)
            del it
            gc.collect()
    full = cpu["full pipeline, data.cache_images=true"]
    print(f"where the pipeline's CPU goes (stage I, no model; per batch of {cfg_on.train.batch_size}, "
          f"best of {repeats} interleaved; difference to the full pipeline with the cache on):")
    print("| variant | CPU / batch | wall / batch | difference |")
    print("|---|---:|---:|---:|")
    for name in variants:
        diff = "" if name.startswith("full pipeline, data.cache_images=true") else \
            f"{(cpu[name] - full) * 1000:+.1f} ms ({(cpu[name] - full) / full:+.0%})"
        print(f"| {name} | {B.ms(cpu[name])} | {B.ms(wall[name])} | {diff} |", flush=True)
    return cpu


def variant_agreement(cfg_on, train) -> float:
    """Max |batched resample − pipeline| over the first stage-I batch (0-255 scale)."""
    import numpy as np

    from dpcnn.data import pipeline

    want = next(iter(pipeline.stage1_dataset(train, cfg_on, 0, 1)))["images"].numpy()
    with variant_images(batched_resample_images, train):
        got = next(iter(pipeline.stage1_dataset(train, cfg_on, 0, 1)))["images"].numpy()
    return float(np.abs(got - want).max())


def run_stage_benchmark(stage: int, cfg, data, epochs: int, rounds: int, repeats: int, variant: bool) -> dict:
    import numpy as np

    from dpcnn.data import pipeline

    train = data.splits["train"]
    cfg_on = B.with_overrides(cfg, ["data.cache_images=true"])
    cfg_off = B.with_overrides(cfg, ["data.cache_images=false"])
    steps = B.steps_of(cfg_on, train)
    make = pipeline.stage1_dataset if stage == 1 else pipeline.stage2_dataset
    variant = variant and stage == 1
    print(f"\n== stage {STAGE_NAME[stage]}: {train.num_images} training images, batch {cfg.train.batch_size}, "
          f"{steps} steps/epoch, {epochs} epochs per round (first dropped), {rounds} rounds per condition",
          flush=True)

    alone = {}
    for tag, run_cfg in (("cache on", cfg_on), ("cache off", cfg_off)):
        alone[tag] = pipeline_alone(make, train, run_cfg, batches=4 * steps, repeats=repeats)
        print(f"pipeline alone (no model), {tag:9s}: {1 / alone[tag][0]:.0f} batches/s = {B.ms(alone[tag][0])}/batch "
              f"wall, {B.ms(alone[tag][1])}/batch CPU (best of {repeats})", flush=True)
    if stage == 1:
        cost_breakdown(cfg_on, cfg_off, data, batches=4 * steps, repeats=repeats + 1)
        if variant:
            print(f"batched Keys-cubic resample vs the pipeline's crop + resize, first batch: max |difference| "
                  f"= {variant_agreement(cfg_on, train):.2e} (0-255 scale)", flush=True)

    cached = make(train, cfg_on, 0, epochs).cache()
    first_cached = None
    for batch in cached:  # materialise: the cache is filled by one full pass
        if first_cached is None:
            first_cached = batch
    for tag, run_cfg in (("cache on", cfg_on), ("cache off", cfg_off)):
        first = next(iter(make(train, run_cfg, 0, epochs)))
        same = all(np.array_equal(first_cached[k].numpy(), first[k].numpy()) for k in first_cached)
        print(f"first batch identical to the cached one ({tag}): {'yes' if same else 'NO'}")

    conditions = {"cached": lambda: cached,
                  "pipeline, cache on": lambda: make(train, cfg_on, 0, epochs),
                  "pipeline, cache off": lambda: make(train, cfg_off, 0, epochs)}
    if variant:
        def variant_dataset():
            with variant_images(batched_resample_images, train):
                return make(train, cfg_on, 0, epochs)
        conditions[VARIANT] = variant_dataset

    task = B.stage_model(cfg_on, data, stage)
    B.fit_epochs(task, cached, 2, steps)  # trace and warm up
    names = list(conditions)
    per = {k: [] for k in names}
    cpu = {k: [] for k in names}
    foreign = {k: [] for k in names}
    round_ratios = {k: [] for k in names[1:]}
    for r in range(rounds):
        best_this_round = {}
        for cond in (names if r % 2 == 0 else names[::-1]):
            t = B.fit_epochs(task, conditions[cond](), epochs, steps)
            per[cond] += [w / steps for w in t.wall]
            cpu[cond] += [c / steps for c in t.cpu]
            foreign[cond] += t.foreign
            best_this_round[cond] = min(t.wall) / steps
        for cond in names[1:]:
            round_ratios[cond].append(best_this_round["cached"] / best_this_round[cond])
    best = {k: min(v) for k, v in per.items()}
    for cond in names:
        print(f"train on {cond:20s}: best {B.ms(best[cond])}/step ({1 / best[cond]:.1f} steps/s), "
              f"median {B.ms(statistics.median(per[cond]))}/step; CPU median "
              f"{B.ms(statistics.median(cpu[cond]))}/step; other processes used "
              f"{statistics.median(foreign[cond]):.2f} cores (median)", flush=True)
    result = {}
    for cond in names[1:]:
        ratio = best["cached"] / best[cond]
        median_ratio = statistics.median(round_ratios[cond])
        print(f"per-round ratios ({cond}): {', '.join(f'{x:.3f}' for x in round_ratios[cond])}")
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"RATIO stage {stage} {cond} / cached throughput: {ratio:.3f} (best of all epochs; median of "
              f"rounds {median_ratio:.3f}); goal ≥ {GOAL}: {verdict}", flush=True)
        result[cond] = {"ratio": ratio, "median_ratio": median_ratio}
    return {"ratios": result, "best": best, "pipeline_alone": alone}


def paper_resolution(root: str, batches: int, repeats: int) -> None:
    import os

    from dpcnn.data import pipeline
    from dpcnn.presets import resolve

    cfg = resolve("coco", ["model.image_weights=none"])
    split = B.paper_size_split(Path(root) / "paper_jpegs", n=128, max_len=cfg.data.max_len)
    print(f"\n== paper resolution, pipeline alone (the coco preset's data settings): {split.num_images} JPEG "
          f"files of 500 × 375 → {cfg.data.image_size} px crops, flip {'on' if cfg.data.flip else 'off'}, "
          f"cache {'on' if cfg.data.cache_images else 'off'}, batch {cfg.train.batch_size}, pool "
          f"{cfg.train.negative_pool}; {os.cpu_count()} CPUs", flush=True)
    for stage, make in ((1, pipeline.stage1_dataset), (2, pipeline.stage2_dataset)):
        rate, cpu = B.pipeline_images_per_second(make, split, cfg, batches, repeats)
        print(f"stage {STAGE_NAME[stage]} pipeline alone: {rate:.0f} images/s (best of {repeats}), "
              f"{cpu * 1000:.1f} ms CPU per image = {1 / cpu:.0f} images/s per core → {cpu * 1000:.1f} cores "
              "per 1,000 images/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT, help="data root for the generated demo data")
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per round (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per condition")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the pipeline-alone timing")
    ap.add_argument("--no-variant", action="store_true", help="leave the experimental variant out of the training rounds")
    ap.add_argument("--paper-batches", type=int, default=15,
                    help="batches per timing of the paper-resolution pipeline (0 = skip it)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    start = time.perf_counter()
    cfg, data = B.demo_setup(args.root, args.set)
    for stage in args.stages:
        run_stage_benchmark(stage, cfg, data, args.epochs, args.rounds, args.repeats, not args.no_variant)
    if args.paper_batches > 0:
        paper_resolution(args.root, args.paper_batches, args.repeats)
    print(f"load average at end: {B.load_average()}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
