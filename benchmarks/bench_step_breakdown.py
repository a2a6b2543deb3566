"""Benchmark: a training step on the CPU at the demo resolution — its first call, XLA, its parts.

    .venv/bin/python benchmarks/bench_step_breakdown.py [--root /tmp/bench_data] [--stages 1 2]
                                                        [--calls 20] [--repeats 5] [--rounds 6]

The model is set up for each stage with ``compile_stage`` exactly as ``run_stage`` does (demo
preset: 40 px crops, batch 32; stage II: A = 16 anchors + 16 negative images, a pool of 64
candidate captions); four real batches of each stage from the pipeline are kept in memory and
cycled. Three measurements, in this order (the first one needs a process in which nothing has
been traced yet):

1. **first step vs steady state**, in the order ``dpcnn train`` runs them: one DualPath, stage I
   compiled and fitted, then stage II compiled on the same model and fitted; every step timed on
   its own (``benchlib.fit_batches``). The first step of a stage includes tracing its
   ``train_step`` and building the graph (stage II is a different step function — mining and the
   ranking loss — so it is a new trace by construction); steady state = the median of steps 3….
   Done once without and once with XLA (``train.jit_compile=true``, on a second fresh DualPath:
   its first step includes the XLA compilation). One-shot figures: a trace cannot be repeated
   in the same process without changing what it costs.
2. **XLA vs no XLA**: the four compiled stages of (1) fitted in interleaved rounds (``--rounds``,
   the order alternating), each round a ``fit`` of 2 epochs × ``--xla-steps`` steps whose first
   epoch is dropped; steps/s = the best epoch; ratio XLA / no XLA per stage.
3. **where a step's time goes**: each part of the stage's ``train_step`` run alone as its own
   ``tf.function``:

   * **image branch fwd+bwd**: ``image_embedding(training=True)`` → ReLU on the step's images and
     the gradient of a scalar of it w.r.t. the image encoder's trained variables;
   * **text branch fwd+bwd**: the same for ``text_embedding`` on the step's captions;
   * **heads + losses fwd+bwd**: dropout, the shared classifier, instance losses (and, stage II,
     L2 + ranking loss) on fixed embeddings, with their gradients;
   * **hard-negative mining** (stage II): ``mining.mine`` — the inference-mode encoding of the
     anchors and of the candidate pool and the arg-max;
   * **optimiser apply**: ``MultiplierSGD.apply_gradients`` of one step's gradients to every
     trained variable;

   and the **full step** (``train_step`` in one ``tf.function``) as the reference. Each part is
   traced once, then timed as the mean of ``--calls`` calls, best of ``--repeats`` rounds that
   each time every part in turn (the machine is shared). The table gives each part's share of
   the full step; the slowest part is named.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

STAGE_NAME = {1: "I", 2: "II"}


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


def parts_for(task, batch: dict, stage: int):
    """The step's parts as traced callables (see the module docstring), the full step, and the
    numbers of trained tensors (image, text, classifier)."""
    import tensorflow as tf
    from keras import ops

    from dpcnn import losses
    from dpcnn.training import mining

    model = task.dual_path
    trained = list(task.train_variables)
    ids = {id(v) for v in trained}
    image_vars = [v for v in model.image_encoder.trainable_variables if id(v) in ids]
    text_vars = [v for v in model.text_encoder.trainable_variables if id(v) in ids]
    head_vars = [v for v in model.classifier.trainable_variables if id(v) in ids]
    w_rank, w_img, w_txt = task.loss_weights

    if stage == 1:
        images, tokens = batch["images"], batch["tokens"]
        image_labels = text_labels = batch["labels"]
    else:
        neg_tokens, neg_labels = mining.mine(model, batch["anchor_images"], batch["pool_tokens"],
                                             batch["pool_labels"], task.mining_mode)
        images = tf.concat([batch["anchor_images"], batch["negative_images"]], 0)
        tokens = tf.concat([batch["positive_tokens"], neg_tokens], 0)
        image_labels = tf.concat([batch["anchor_labels"], batch["negative_labels"]], 0)
        text_labels = tf.concat([batch["anchor_labels"], neg_labels], 0)
    image_emb = model.image_embedding(images, training=False)
    text_emb = model.text_embedding(tokens, training=False)

    def branch(embedding, inputs, target, variables):
        """One branch's forward + backward: the gradient of Σ relu(embedding(inputs)) · target."""
        @tf.function
        def fwd_bwd():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(ops.relu(embedding(inputs, training=True)) * ops.relu(target))
            return tape.gradient(loss, variables)
        return fwd_bwd

    image_branch = branch(model.image_embedding, images, image_emb, image_vars)
    text_branch = branch(model.text_embedding, tokens, text_emb, text_vars)

    @tf.function
    def heads():
        with tf.GradientTape() as tape:
            tape.watch([image_emb, text_emb])
            il = model.logits(image_emb, task.dropout_seed(1))
            tl = model.logits(text_emb, task.dropout_seed(2))
            loss = w_img * losses.instance_loss(image_labels, il) + w_txt * losses.instance_loss(text_labels, tl)
            if stage == 2:
                x, y = model.ranking_features(image_emb), model.ranking_features(text_emb)
                a = tf.shape(batch["anchor_images"])[0]
                loss = loss + w_rank * losses.ranking_loss(x[:a], y[:a], x[a:], y[a:], task.margin)
        return tape.gradient(loss, [*head_vars, image_emb, text_emb])

    grads = [tf.ones_like(v) * 1e-12 for v in trained]

    @tf.function
    def optimiser():
        task.optimizer.apply_gradients(zip(grads, trained))
        return task.optimizer.iterations

    @tf.function
    def full_step():
        return task.train_step(batch)

    parts = {
        "image branch fwd+bwd": image_branch,
        "text branch fwd+bwd": text_branch,
        "heads + losses fwd+bwd": heads,
    }
    if stage == 2 and task.mining_mode == "hard":
        parts["hard-negative mining (inference)"] = tf.function(
            lambda: mining.mine(model, batch["anchor_images"], batch["pool_tokens"], batch["pool_labels"], "hard"))
    parts["optimiser apply"] = optimiser
    return parts, full_step, (len(image_vars), len(text_vars), len(head_vars))


def breakdown(stage: int, task, batch: dict, calls: int, repeats: int) -> dict:
    parts, full_step, counts = parts_for(task, batch, stage)
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
    print(f"\n== 3. where the step's time goes, stage {STAGE_NAME[stage]}: batch {shapes}; trained "
          f"tensors: image {counts[0]}, text {counts[1]}, classifier {counts[2]}", flush=True)
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


def first_steps(cfg, data, batches: dict, stages, steps: int, jits=("false", "true")) -> tuple[dict, dict]:
    """Section 1: {(jit, stage): compiled stage} and {(jit, stage): (first s, steady s, fit call s)}."""
    tasks, figures = {}, {}
    train = data.splits["train"]
    print("\n== 1. first step (trace + graph build + run) vs steady-state step, in dpcnn train's order "
          f"(stage I then stage II on one DualPath), {steps} steps each", flush=True)
    for jit in jits:
        run_cfg = B.with_overrides(cfg, [f"train.jit_compile={jit}"])
        with B.precision(run_cfg):
            t0 = time.perf_counter()
            model = B.build_model(run_cfg, data)
            build = time.perf_counter() - t0
            print(f"train.jit_compile={jit}: DualPath built in {build:.1f} s", flush=True)
            for stage in stages:
                t0 = time.perf_counter()
                task = B.compile_for_stage(model, run_cfg, stage, B.steps_of(run_cfg, train))
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                walls = B.fit_batches(task, B.repeat_batches(batches[stage]), steps)
                fit_s = time.perf_counter() - t0
                first, steady = walls[0], statistics.median(walls[2:])
                tasks[(jit, stage)] = task
                figures[(jit, stage)] = (first, steady, fit_s)
                print(f"  stage {STAGE_NAME[stage]:2s} (jit {jit:5s}): compile_stage {compile_s:.2f} s; first step "
                      f"{first:.2f} s, steady state {B.ms(steady)} (median of steps 3-{steps}) → graph build "
                      f"≈ {first - steady:.2f} s = {first / steady:.0f} steady steps; the whole first fit "
                      f"call {fit_s:.1f} s", flush=True)
                print(f"FIRST STEP stage {stage} jit_compile={jit}: {first:.2f} s vs steady {B.ms(steady)}",
                      flush=True)
    return tasks, figures


def xla_speed(tasks: dict, batches: dict, stages, rounds: int, steps: int) -> dict:
    """Section 2: interleaved fits of the compiled stages with and without XLA."""
    print(f"\n== 2. XLA vs no XLA: best epoch of {rounds} interleaved rounds × (2 epochs × {steps} steps, "
          "the first dropped)", flush=True)
    out = {}
    for stage in stages:
        ds = B.repeat_batches(batches[stage])
        per = {"false": [], "true": []}
        foreign = {"false": [], "true": []}
        for r in range(rounds):
            for jit in (("false", "true") if r % 2 == 0 else ("true", "false")):
                t = B.fit_epochs(tasks[(jit, stage)], ds, 2, steps, warmup=1)
                per[jit] += [w / steps for w in t.wall]
                foreign[jit] += t.foreign
        best = {k: min(v) for k, v in per.items()}
        for jit in ("false", "true"):
            print(f"  stage {STAGE_NAME[stage]:2s} jit_compile={jit:5s}: best {B.ms(best[jit])}/step "
                  f"({1 / best[jit]:.1f} steps/s), median {B.ms(statistics.median(per[jit]))}; rounds "
                  f"{B.fmt_list(per[jit])} ms; other processes {statistics.median(foreign[jit]):.2f} cores",
                  flush=True)
        ratio = best["false"] / best["true"]
        median_ratio = statistics.median(per["false"]) / statistics.median(per["true"])
        print(f"RATIO stage {stage} XLA / no-XLA steps/s: {ratio:.3f} (best epochs; medians {median_ratio:.3f})",
              flush=True)
        out[stage] = {"best": best, "ratio": ratio, "median_ratio": median_ratio}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT)
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    ap.add_argument("--first-steps", type=int, default=12, help="steps of each stage's first fit (section 1)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds of the XLA comparison")
    ap.add_argument("--xla-steps", type=int, default=10, help="steps per epoch of the XLA comparison")
    ap.add_argument("--no-xla", action="store_true", help="skip the XLA half of sections 1 and 2")
    ap.add_argument("--calls", type=int, default=20, help="calls per timing (section 3)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per part (best kept; section 3)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    from dpcnn.data import pipeline

    start = time.perf_counter()
    cfg, data = B.demo_setup(args.root, args.set)
    train = data.splits["train"]
    batches = {1: B.cached_batches(pipeline.stage1_dataset(train, cfg, 0, 1), 4),
               2: B.cached_batches(pipeline.stage2_dataset(train, cfg, 0, 1), 4)}
    jits = ("false",) if args.no_xla else ("false", "true")
    tasks, _ = first_steps(cfg, data, batches, args.stages, args.first_steps, jits)
    if not args.no_xla:
        xla_speed(tasks, batches, args.stages, args.rounds, args.xla_steps)
    for stage in args.stages:
        breakdown(stage, tasks[("false", stage)], batches[stage][0], args.calls, args.repeats)
    print(f"load average at end: {B.load_average()}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
