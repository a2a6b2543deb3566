"""Where the host memory of a paper-size run goes: peak RSS after each phase, in one process.

    .venv/bin/python benchmarks/bench_memory.py                      # coco at its real size (≈ 5 min, ≈ 14 GB)
    .venv/bin/python benchmarks/bench_memory.py --image-size 64      # the same model, smaller activations
    .venv/bin/python benchmarks/bench_memory.py --classes 1000       # the same model with a small classifier

The ``coco`` preset's model (ResNet-50 from random weights, the paper's text CNN, D = 2048,
``--classes`` instance classes: 113,287 = COCO's training images) is built with
``build_dual_path`` and set up with ``compile_stage`` exactly as ``dpcnn train`` does, then
trained on random batches held in memory (the input pipeline is not measured): stage I for two
steps, a backup (``save_weights`` of the stage: weights + optimiser state), a restore, stage II
for two steps. After each phase it prints the process's peak RSS so far (``ru_maxrss``) and its
RSS now (``VmRSS``), in GB (10⁹ bytes); the rise of the peak in a phase is what that phase added
on top of everything before it.

Reading it: the model's weights are ``4 × parameters`` bytes; SGD momentum adds the same for the
trained variables; a step adds the gradients, the optimiser's temporaries and the activations.
``--classes 1000`` against the default separates what the 113,287-way shared classifier costs
(232 M of the 297 M parameters) from the rest; ``--image-size 64`` separates the activations.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_gb() -> tuple[float, float]:
    """(peak so far, now) resident set size of this process in GB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    now = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) * 1024 / 1e9
    return peak, now


def stage1_batch(rng, batch: int, size: int, max_len: int, vocab: int, classes: int) -> dict:
    return {"images": rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"),
            "tokens": rng.integers(1, vocab, (batch, max_len)).astype("int32"),
            "labels": rng.integers(0, classes, (batch,)).astype("int32")}


def stage2_batch(rng, batch: int, size: int, max_len: int, vocab: int, classes: int, pool: int) -> dict:
    half = batch // 2

    def images(n):
        return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")

    return {"anchor_images": images(half), "negative_images": images(half),
            "positive_tokens": rng.integers(1, vocab, (half, max_len)).astype("int32"),
            "pool_tokens": rng.integers(1, vocab, (pool, max_len)).astype("int32"),
            "pool_labels": rng.integers(0, classes, (pool,)).astype("int32"),
            "anchor_labels": rng.integers(0, classes, (half,)).astype("int32"),
            "negative_labels": rng.integers(0, classes, (half,)).astype("int32")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="coco")
    ap.add_argument("--classes", type=int, default=113_287)
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--set", nargs="*", default=[], help="more --set overrides")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows: list[tuple[str, float, float, float]] = []
    start = time.time()

    def mark(phase: str) -> None:
        peak, now = rss_gb()
        rows.append((phase, peak, now, time.time() - start))
        print(f"{phase:38s} peak {peak:6.2f} GB   now {now:6.2f} GB   {time.time() - start:7.1f} s", flush=True)

    import keras
    import tensorflow as tf

    from dpcnn.model.dual_path import ModelSizes, build_dual_path
    from dpcnn.presets import resolve
    from dpcnn.training.stages import compile_stage

    mark("import TensorFlow and dpcnn")
    cfg = resolve(args.preset, ["model.image_weights=none", "train.mixed_precision=false",
                                f"data.image_size={args.image_size}", *args.set])
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build_dual_path(cfg, ModelSizes(args.classes, args.vocab, 300, (123.7, 116.8, 103.9),
                                            rng.normal(size=(args.vocab, 300)).astype("float32")))
    print(f"{model.count_params():,} parameters", flush=True)
    mark("build the model")
    b, size, L = cfg.train.batch_size, args.image_size, cfg.data.max_len
    one = stage1_batch(rng, b, size, L, args.vocab, args.classes)
    task = compile_stage(model, cfg, 1, steps_per_epoch=2)
    mark("compile stage I (optimiser built)")
    data = tf.data.Dataset.from_tensors(one).repeat(1)
    task.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    mark("stage I: first step (graph built)")
    task.fit(tf.data.Dataset.from_tensors(one).repeat(1), epochs=1, steps_per_epoch=1, verbose=0)
    mark("stage I: second step")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup.weights.h5"
        task.save_weights(str(path))
        print(f"backup: {path.stat().st_size / 1e9:.2f} GB", flush=True)
        mark("stage I: backup written")
        task.load_weights(str(path))
        mark("stage I: backup restored")
    del task
    two = stage2_batch(rng, b, size, L, args.vocab, args.classes, cfg.train.negative_pool)
    task = compile_stage(model, cfg, 2, steps_per_epoch=2)
    mark("compile stage II")
    task.fit(tf.data.Dataset.from_tensors(two).repeat(1), epochs=1, steps_per_epoch=1, verbose=0)
    mark("stage II: first step")
    task.fit(tf.data.Dataset.from_tensors(two).repeat(1), epochs=1, steps_per_epoch=1, verbose=0)
    mark("stage II: second step")
    print("\n| phase | peak RSS GB | RSS now GB | s |\n|---|---:|---:|---:|")
    for phase, peak, now, t in rows:
        print(f"| {phase} | {peak:.2f} | {now:.2f} | {t:.0f} |")


if __name__ == "__main__":
    main()
