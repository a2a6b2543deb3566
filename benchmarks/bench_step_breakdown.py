"""Benchmark: where a training step's time goes, on the CPU at the demo resolution.

    .venv/bin/python benchmarks/bench_step_breakdown.py [--root /tmp/bench_data] [--stages 1 2]
                                                        [--calls 20] [--repeats 5]

The model is set up for each stage exactly as ``run_stage`` does (demo preset: 40 px crops,
batch 32; stage II: A = 16 anchors + 16 negative images, a pool of 64 candidate captions), and
one real batch from the pipeline is kept in memory. Each part of ``DualPath.train_step`` is
then run alone as its own ``tf.function``:

* **image branch fwd+bwd**: ``image_features(training=True)`` → ReLU on the step's images and
  the gradient of a scalar of it w.r.t. the image encoder's trained variables;
* **text branch fwd+bwd**: the same for ``text_features`` on the step's captions;
* **heads + losses fwd+bwd**: dropout, the shared classifier, instance losses (and, stage II,
  L2 + ranking loss) on fixed embeddings, with their gradients;
* **hard-negative mining** (stage II): the inference-mode encoding of the anchors and of the
  candidate pool and the arg-max (``DualPath._mine``);
* **optimiser apply**: ``MultiplierSGD.apply_gradients`` of one step's gradients to every
  trained variable;

and the **full step** (``train_step`` in one ``tf.function``) as the reference. Each part is
traced once, then timed as the mean of ``--calls`` calls, best of ``--repeats`` rounds that each
time every part in turn (the machine is shared). The table gives each part's share of the full
step; the slowest part is named.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402


def time_interleaved(fns: dict, calls: int, repeats: int) -> dict:
    """Best-of-``repeats`` mean seconds per call of each callable (first call, which traces, untimed).

    The repeats are the outer loop, so a slow phase of the shared machine hits every part alike.
    """
    for fn in fns.values():
        _sync(fn())
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                out = fn()
            _sync(out)
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return best


def _sync(out) -> None:
    import tensorflow as tf

    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def parts_for(model, batch: dict, stage: int) -> dict:
    """The step's parts as traced callables (see the module docstring)."""
    import tensorflow as tf
    from keras import ops

    from dpcnn import losses
    from dpcnn.model.layers import l2_normalize

    trained = list(model.train_variables)
    ids = {id(v) for v in trained}
    image_vars = [v for v in model.image_encoder.trainable_variables if id(v) in ids]
    text_vars = [v for v in model.text_encoder.trainable_variables if id(v) in ids]
    head_vars = [v for v in model.classifier.trainable_variables if id(v) in ids]
    w_rank, w_img, w_txt = model.loss_weights

    if stage == 1:
        images, tokens = batch["images"], batch["tokens"]
        image_labels = text_labels = batch["labels"]
    else:
        neg_tokens, neg_labels = model._mine(batch)
        images = tf.concat([batch["anchor_images"], batch["negative_images"]], 0)
        tokens = tf.concat([batch["positive_tokens"], neg_tokens], 0)
        image_labels = tf.concat([batch["anchor_labels"], batch["negative_labels"]], 0)
        text_labels = tf.concat([batch["anchor_labels"], neg_labels], 0)
    image_emb = ops.relu(model.image_features(images, training=False))
    text_emb = ops.relu(model.text_features(tokens, training=False))

    def branch(features, inputs, target, variables):
        """One branch's forward + backward: the gradient of Σ relu(features(inputs)) · target."""
        @tf.function
        def fwd_bwd():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(ops.relu(features(inputs, training=True)) * target)
            return tape.gradient(loss, variables)
        return fwd_bwd

    image_branch = branch(model.image_features, images, image_emb, image_vars)
    text_branch = branch(model.text_features, tokens, text_emb, text_vars)

    @tf.function
    def heads():
        with tf.GradientTape() as tape:
            tape.watch([image_emb, text_emb])
            il = model._classify(image_emb, 1)
            tl = model._classify(text_emb, 2)
            loss = w_img * losses.instance_loss(image_labels, il) + w_txt * losses.instance_loss(text_labels, tl)
            if stage == 2:
                x, y = l2_normalize(image_emb), l2_normalize(text_emb)
                a = tf.shape(batch["anchor_images"])[0]
                loss = loss + w_rank * losses.ranking_loss(x[:a], y[:a], x[a:], y[a:], model.margin)
        return tape.gradient(loss, [*head_vars, image_emb, text_emb])

    grads = [tf.ones_like(v) * 1e-12 for v in trained]

    @tf.function
    def optimiser():
        model.optimizer.apply_gradients(zip(grads, trained))
        return model.optimizer.iterations

    @tf.function
    def full_step():
        return model.train_step(batch)

    parts = {
        "image branch fwd+bwd": image_branch,
        "text branch fwd+bwd": text_branch,
        "heads + losses fwd+bwd": heads,
    }
    if stage == 2 and model.mining == "hard":
        parts["hard-negative mining (inference)"] = tf.function(lambda: model._mine(batch))
    parts["optimiser apply"] = optimiser
    return parts, full_step, (len(image_vars), len(text_vars), len(head_vars))


def run(stage: int, cfg, data, calls: int, repeats: int) -> dict:
    from dpcnn.data import pipeline

    train = data.splits["train"]
    make = pipeline.stage1_dataset if stage == 1 else pipeline.stage2_dataset
    batch = next(iter(make(train, cfg, 0, 1)))
    model = B.stage_model(cfg, data, stage)
    parts, full_step, counts = parts_for(model, batch, stage)
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
    print(f"\n== stage {'I' if stage == 1 else 'II'}: batch {shapes}; trained tensors: image "
          f"{counts[0]}, text {counts[1]}, classifier {counts[2]}", flush=True)
    times = time_interleaved({**parts, "full": full_step}, calls, repeats)
    t_full = times.pop("full")
    total = sum(times.values())
    print("| part | ms/step | share of the full step |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t * 1000:.1f} | {t / t_full:.0%} |")
    print(f"| sum of the parts | {total * 1000:.1f} | {total / t_full:.0%} |")
    print(f"| **full train_step** | **{t_full * 1000:.1f}** | 100% |")
    slowest = max(times, key=times.get)
    print(f"SLOWEST stage {stage}: {slowest} ({times[slowest] * 1000:.1f} ms = "
          f"{times[slowest] / t_full:.0%} of the step)")
    print(f"RATIO stage {stage} sum of parts / full step: {total / t_full:.3f}", flush=True)
    return {"parts": times, "full": t_full, "slowest": slowest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT)
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--calls", type=int, default=20, help="calls per timing")
    ap.add_argument("--repeats", type=int, default=5, help="timings per part (best kept)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    cfg, data = B.demo_setup(args.root, args.set)
    for stage in args.stages:
        run(stage, cfg, data, args.calls, args.repeats)
    print(f"load average at end: {B.load_average()}")


if __name__ == "__main__":
    main()
