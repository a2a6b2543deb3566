"""Benchmark (GPU only): stage-II training throughput at 224 px vs bare Keras ResNet-50 training.

    .venv/bin/python benchmarks/bench_gpu.py [--batches 32 128] [--precision both]
                                             [--steps 20] [--repeats 5]

Skips cleanly (exit status 0, a line starting with ``SKIPPED``) where TensorFlow sees no GPU.

The model is the paper-size one of the ``demo-full`` preset: the ResNet-50 image branch from
random weights (``model.image_weights=none``: nothing is downloaded), the paper's text CNN,
D = 2048, and the paper's L = 32 instead of the synthetic data's 16 (``data.max_len=32``). It is
set up for stage II exactly as ``run_stage`` does (whole backbone trained with the stage-II
multipliers, hard-negative mining over a pool of ``train.negative_pool`` = 256 candidate
captions). Its sizes that depend on a dataset are options: ``--classes`` (default 29,000: the
Flickr30k training images, one instance class each), ``--vocab`` (20,000 words) and
``--word-dim`` (300). Synthetic batches (random pixels, ids and labels) stay on the device, so
the figures are the model's own throughput, not the input pipeline's.

For each batch size B (the paper's 32 and a large one) and mixed precision off/on, in the same
process and on the same device:

* **dual path, stage II**: image-text pairs per second = B × steps/s (each step trains B images
  — A = B/2 anchors and A negatives — with B captions, after encoding the A anchors and the
  candidate pool in inference mode to mine the negatives);
* **bare ResNet-50**: ``keras.applications.ResNet50(weights=None)`` trained with SGD +
  momentum on B random 224 px images per step (images/s), same precision policy, same
  ``jit_compile=False`` as the dual path;
* the ratio dual-path pairs/s ÷ ResNet-50 images/s (goal ≥ 0.6), and the peak device memory.

Each measurement is ``--repeats`` epochs of ``--steps`` steps after one warm-up epoch (traced
there); the fastest epoch is reported.

Finally (unless ``--no-pipeline``) the host side: the real stage-II tf.data pipeline alone on
128 generated 500 × 375 JPEG files (under ``--root``) → 224 px crops with flips, at each batch
size, in images/s on this host's CPU cores, against the model's best pairs/s: a ratio below 1
means the input pipeline, not the GPU, would bound training on this machine.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

GOAL = 0.6


def synthetic_stage2_batch(batch: int, pool: int, size: int, max_len: int, vocab: int, classes: int,
                           seed: int = 0) -> dict:
    """One stage-II batch of random data: the dict ``DualPath.train_step`` takes (A = batch / 2)."""
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    a = batch // 2

    def ids(n):
        return g.uniform([n, max_len], 1, vocab, dtype=tf.int32)

    def labels(n):
        return g.uniform([n], 0, classes, dtype=tf.int32)

    return {
        "anchor_images": g.uniform([a, size, size, 3], 0.0, 255.0),
        "negative_images": g.uniform([a, size, size, 3], 0.0, 255.0),
        "anchor_labels": labels(a),
        "negative_labels": labels(a),
        "positive_tokens": ids(a),
        "pool_tokens": ids(pool),
        "pool_labels": labels(pool),
    }


def steps_per_second(model, dataset, steps: int, repeats: int) -> float:
    t = B.fit_epochs(model, dataset, 1 + repeats, steps, warmup=1)
    return steps / min(t.wall)


def peak_memory_mib() -> float | None:
    import tensorflow as tf

    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (ValueError, RuntimeError):
        return None


def reset_memory() -> None:
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    gc.collect()
    try:
        tf.config.experimental.reset_memory_stats("GPU:0")
    except (ValueError, RuntimeError):
        pass


def dual_path_rate(cfg, batch: int, mixed: bool, args) -> tuple[float, float | None]:
    import tensorflow as tf

    from dpcnn.distribute import precision_policy
    from dpcnn.model.build import build_dual_path

    reset_memory()
    with precision_policy(mixed):
        model = build_dual_path(cfg, args.classes, args.vocab, args.word_dim, (123.7, 116.8, 103.9))
        B.compile_for_stage(model, cfg, 2, args.steps)
        data = synthetic_stage2_batch(batch, cfg.train.negative_pool, cfg.data.image_size, cfg.data.max_len,
                                      args.vocab, args.classes)
        ds = tf.data.Dataset.from_tensors(data).repeat()
        rate = steps_per_second(model, ds, args.steps, args.repeats) * batch
    peak = peak_memory_mib()
    del model, ds, data
    return rate, peak


def resnet_rate(size: int, batch: int, mixed: bool, args) -> tuple[float, float | None]:
    import keras
    import tensorflow as tf

    from dpcnn.distribute import precision_policy

    reset_memory()
    with precision_policy(mixed):
        net = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=1000)
        net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                    loss="sparse_categorical_crossentropy", jit_compile=False)
        g = tf.random.Generator.from_seed(1)
        x = g.uniform([batch, size, size, 3], 0.0, 255.0)
        y = g.uniform([batch], 0, 1000, dtype=tf.int32)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        rate = steps_per_second(net, ds, args.steps, args.repeats) * batch
    peak = peak_memory_mib()
    del net, ds
    return rate, peak


def describe_device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(f"{details.get('device_name', gpu.name)} (compute capability "
                         f"{details.get('compute_capability')})")
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    build = tf.sysconfig.get_build_info()
    return (f"{', '.join(names)}; CUDA {build.get('cuda_version', '?')}, "
            f"cuDNN {build.get('cudnn_version', '?')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128], help="global batch sizes (even)")
    ap.add_argument("--precision", choices=["both", "float32", "mixed"], default="both")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs (the fastest is kept)")
    ap.add_argument("--classes", type=int, default=29_000, help="instance classes (training images)")
    ap.add_argument("--vocab", type=int, default=20_000, help="vocabulary size")
    ap.add_argument("--word-dim", type=int, default=300)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides on top of demo-full (e.g. data.image_size=64 for a smoke run)")
    ap.add_argument("--root", default=B.DEFAULT_ROOT, help="folder for the generated JPEG files")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the input-pipeline measurement")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run on the CPU when there is no GPU (a smoke test of this script; figures meaningless)")
    args = ap.parse_args()

    import tensorflow as tf

    from dpcnn.config import resolve

    if not tf.config.list_physical_devices("GPU") and not args.allow_cpu:
        print("SKIPPED bench_gpu: TensorFlow sees no GPU on this machine "
              "(tf.config.list_physical_devices('GPU') is empty); run it where one is present.")
        return
    print(B.versions())
    if tf.config.list_physical_devices("GPU"):
        print(f"device: {describe_device()}")
    else:
        print("device: CPU (--allow-cpu smoke run: the figures say nothing about a GPU)")
    cfg = resolve("demo-full", ["model.image_weights=none", "data.max_len=32", *args.set])
    precisions = {"both": (False, True), "float32": (False,), "mixed": (True,)}[args.precision]
    print(f"stage II, {cfg.data.image_size} px, L = {cfg.data.max_len}, pool {cfg.train.negative_pool}, "
          f"{args.classes} classes, vocabulary {args.vocab} × {args.word_dim}; "
          f"best of {args.repeats} epochs × {args.steps} steps", flush=True)
    rows = []
    for batch in args.batches:
        for mixed in precisions:
            tag = f"batch {batch}, {'mixed_float16' if mixed else 'float32'}"
            try:
                ours, ours_mem = dual_path_rate(cfg, batch, mixed, args)
                bare, bare_mem = resnet_rate(cfg.data.image_size, batch, mixed, args)
            except tf.errors.ResourceExhaustedError as e:
                print(f"{tag}: out of device memory ({str(e).splitlines()[0]})", flush=True)
                continue
            ratio = ours / bare
            rows.append((batch, mixed, ours, bare, ratio, ours_mem, bare_mem))
            mem = ""
            if ours_mem is not None and bare_mem is not None:
                mem = f"; peak memory {ours_mem:.0f} MiB vs {bare_mem:.0f} MiB"
            print(f"{tag}: dual path stage II {ours:.1f} pairs/s, bare ResNet-50 {bare:.1f} images/s{mem}")
            print(f"RATIO gpu {tag} dual-path/ResNet-50: {ratio:.3f}; goal ≥ {GOAL}: "
                  f"{'met' if ratio >= GOAL else 'NOT met'}", flush=True)
    print()
    print("| batch | precision | dual path stage II (pairs/s) | bare ResNet-50 (images/s) | ratio | peak MiB (ours / bare) |")
    print("|---:|---|---:|---:|---:|---|")
    for batch, mixed, ours, bare, ratio, om, bm in rows:
        mem = f"{om:.0f} / {bm:.0f}" if om is not None and bm is not None else "n/a"
        print(f"| {batch} | {'mixed_float16' if mixed else 'float32'} | {ours:.1f} | {bare:.1f} | {ratio:.3f} | {mem} |")
    if not args.no_pipeline:
        input_pipeline(cfg, rows, args)


def input_pipeline(cfg, rows, args) -> None:
    """The stage-II tf.data pipeline alone on this host vs the model's best pairs/s per batch size."""
    import os

    from dpcnn.config import apply_overrides
    from dpcnn.data import pipeline

    split = B.paper_size_split(Path(args.root) / "paper_jpegs", n=128, max_len=cfg.data.max_len)
    print(f"\ninput pipeline alone (stage II, {split.num_images} JPEG files of 500 × 375 → "
          f"{cfg.data.image_size} px, flip on) on {os.cpu_count()} CPU cores:")
    for batch in args.batches:
        run_cfg = apply_overrides(cfg, ["data.flip=true", f"train.batch_size={batch}"])
        rate, cpu = B.pipeline_images_per_second(pipeline.stage2_dataset, split, run_cfg,
                                                 batches=max(4, 480 // batch), repeats=3)
        model_best = max((r[2] for r in rows if r[0] == batch), default=None)
        line = f"batch {batch}: {rate:.0f} images/s, {cpu * 1000:.1f} ms CPU per image"
        print(line, flush=True)
        if model_best:
            print(f"RATIO gpu input pipeline / dual path stage II (batch {batch}, best precision): "
                  f"{rate / model_best:.2f} (below 1: the input pipeline would be the bottleneck here)",
                  flush=True)


if __name__ == "__main__":
    main()
