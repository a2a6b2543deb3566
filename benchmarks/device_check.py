"""The one device check: what a session with a lent GPU runs once (under 8 minutes, graph builds included).

    python benchmarks/device_check.py [--out DIR]          # on the GPU machine; DIR defaults to $OUT
    .venv/bin/python benchmarks/device_check.py --smoke --out /tmp/dc   # the same code on a CPU, tiny

It needs only TensorFlow/Keras and dpcnn's own dependencies (the repository root is put on the
path, so a checkout works without installing dpcnn); nothing is downloaded. It writes
``device_check.json`` and ``device_check.md`` (the table to paste into ``benchmarks/RESULTS.md``,
section "GPU device check") into ``--out``, after every measurement, so a run cut short still
leaves what it measured.

What it measures, in one process, on generated data in a temporary folder:

* **the input pipeline alone**: ``stage1_dataset`` and ``stage2_dataset`` on ``--files`` JPEG
  files of 500 × 375 (Flickr/COCO size) → 224 px crops with flips, cache off (the ``coco``
  preset's data settings): images/s, CPU time per image, **images/s per CPU core** (= 1 / CPU
  seconds per image) and how many cores it kept busy;
* **the paper-size model**: the ``coco`` preset (ResNet-50 image branch from random weights —
  ``model.image_weights=none`` —, the paper's text CNN, D = 2048, L = 32, batch 32, hard negatives
  from a pool of 256) with ``--classes`` instance classes (113,287: COCO's Karpathy training
  images) and a vocabulary of ``--vocab`` × ``--word-dim``, built with ``build_dual_path`` and set
  up with ``compile_stage`` exactly as ``dpcnn train`` does: stage I, then stage II on the same
  model; steps/s on batches made by the real pipeline from the generated files and cycled from
  memory (so the figure is the model's, not the pipeline's);
* **the baseline**: bare Keras ResNet-50 training — ``keras.applications.ResNet50(weights=None)``
  (global average pooling) + a 1,000-way Dense classifier, plain SGD, sparse cross-entropy — at
  the same batch and image size, on random images held in memory, in the same process;
* for each **condition**: ``mixed_float16`` (the GPU default: ``train.mixed_precision=auto``),
  ``mixed_float16+xla`` (``train.jit_compile=true`` on top) and ``float32``; the baseline runs
  under the same precision policy and XLA setting. Ratio = dual-path images/s ÷ ResNet-50
  images/s at the same batch (goal ≥ 0.6; a stage-II step also encodes the anchors and the
  candidate pool to mine the negatives, and trains B captions beside the B images);
* **peak GPU memory** of each measurement (``tf.config.experimental.get_memory_info('GPU:0')
  ['peak']``, reset before each; ``null`` without a GPU).

Each measurement: one fit of ``--warmup`` steps timed step by step (the first step includes
tracing and graph building, XLA compilation with XLA: reported as ``first_step_s``; the steps
after it estimate the step time), then 2 epochs of n steps, n chosen so that an epoch takes about
``--seconds`` (at least 3, at most ``--max-steps``): steps/s = n / the faster epoch. Before each
measurement the check estimates what it will cost (from the same measurement in an earlier
condition, else a guess) and skips it — recorded as skipped, with the reason — if it would end
past ``--budget`` seconds since start; a running estimate of the total is printed.

``--smoke`` (for a CPU, and for the test suite): the ``coco:tiny`` model at 32 px, batch 8, 24
files, 1 warm-up step and 2 timed steps; the bare ResNet-50 runs only in float32 (float16 is
emulated on a CPU: its 3 steps take about a minute), and the mixed-precision conditions of the
dual path run 1 warm-up + 1 timed step. Its figures say nothing about a GPU: it proves the script
works before a GPU is lent. ``--allow-cpu`` runs the full sizes without a GPU, to check the
paper-size path itself (``--allow-cpu --conditions float32 --batch 4 --warmup 2 --min-steps 1
--seconds 0 --files 16``: about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # a checkout works without installing dpcnn

import benchlib as B  # noqa: E402

GOAL = 0.6
CONDITIONS = {  # name → (train.mixed_precision, train.jit_compile)
    "mixed_float16": ("true", "false"),
    "mixed_float16+xla": ("true", "true"),
    "float32": ("false", "false"),
}
ITEMS = ("resnet50", "stage1", "stage2")
GUESS_S = {"resnet50": 45.0, "stage1": 60.0, "stage2": 80.0}
"""A first measurement's cost (build + graph + timing) on a GPU before any was measured; XLA × 2."""
JSON_NAME, MD_NAME = "device_check.json", "device_check.md"


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def describe_device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU only ({os.cpu_count()} cores)"
    names = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(f"{details.get('device_name', gpu.name)} (compute capability "
                         f"{details.get('compute_capability')})")
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    build = tf.sysconfig.get_build_info()
    return (f"{', '.join(names)}; CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}; "
            f"{os.cpu_count()} CPU cores")


def peak_memory_mib() -> float | None:
    """Peak GPU memory since the last reset, in MiB; None without a GPU."""
    import tensorflow as tf

    try:
        return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    except (ValueError, RuntimeError):
        return None


def reset_device(clear: bool = True) -> None:
    """Reset the GPU's peak-memory counter (and, with ``clear``, drop the previous models first)."""
    import keras
    import tensorflow as tf

    if clear:
        keras.backend.clear_session()
    gc.collect()
    try:
        tf.config.experimental.reset_memory_stats("GPU:0")
    except (ValueError, RuntimeError):
        pass


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def pipeline_rate(make, split, cfg, seconds: float, min_batches: int) -> dict:
    """The pipeline alone: images/s, CPU ms per image, images/s per core, cores busy (best of 2 runs)."""
    best: dict = {}
    for _ in range(2):
        it = iter(make(split, cfg, 0, 10**6))
        for _ in range(3):
            next(it)
        n, w, c = 0, time.perf_counter(), time.process_time()
        while n < min_batches or time.perf_counter() - w < seconds:
            next(it)
            n += 1
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        images = n * cfg.train.batch_size
        if not best or images / wall > best["images_per_s"]:
            best = {"images_per_s": round(images / wall, 1), "cpu_ms_per_image": round(cpu / images * 1000, 3),
                    "images_per_s_per_core": round(images / cpu, 1) if cpu > 0 else None,
                    "cores_busy": round(cpu / wall, 2), "batches": n}
        del it
        gc.collect()
    return best


def time_training(model, dataset, batch: int, args) -> dict:
    """Warm-up steps one by one (the first traces), then 2 epochs of n steps; see the module docstring."""
    walls = B.fit_batches(model, dataset, args.warmup)
    estimate = statistics.median(walls[1:]) if len(walls) > 1 else walls[0]
    n = max(args.min_steps, min(args.max_steps, int(args.seconds / max(estimate, 1e-6))))
    t = B.fit_epochs(model, dataset, 2, n, warmup=0)
    best = min(t.wall)
    return {"first_step_s": round(walls[0], 3), "warmup_step_ms": [round(x * 1000, 1) for x in walls[1:]],
            "steps_timed": n, "epoch_s": [round(x, 3) for x in t.wall], "step_ms": round(best / n * 1000, 2),
            "steps_per_s": round(n / best, 3), "images_per_s": round(n / best * batch, 1)}


def resnet50_item(size: int, batch: int, jit: bool, args) -> dict:
    """Bare Keras ResNet-50 training (the baseline), under the current precision policy."""
    import keras
    import tensorflow as tf

    base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3))
    logits = keras.layers.Dense(1000, dtype="float32", name="classifier")(base.output)
    net = keras.Model(base.input, logits, name="bare_resnet50")
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    g = tf.random.Generator.from_seed(1)
    x = g.uniform([4, batch, size, size, 3], 0.0, 255.0)
    y = g.uniform([4, batch], 0, 1000, dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().prefetch(2)
    return time_training(net, ds, batch, args)


def dual_path_items(cfg, batches: dict, args, run_item) -> None:
    """Stage I, then stage II on the same DualPath (as ``dpcnn train``), each through ``run_item``."""
    from dpcnn.model.dual_path import ModelSizes, build_dual_path

    state: dict = {}

    def stage_item(stage: int):
        def measure() -> dict:
            t0 = time.perf_counter()
            if "model" not in state:
                state["model"] = build_dual_path(cfg, ModelSizes(args.classes, args.vocab, args.word_dim, (123.7, 116.8, 103.9)))
            build = time.perf_counter() - t0
            task = B.compile_for_stage(state["model"], cfg, stage, steps_per_epoch=1000)
            out = time_training(task, B.repeat_batches(batches[stage]), cfg.train.batch_size, args)
            return {"build_s": round(build, 2), **out}
        return measure

    for stage in (1, 2):
        run_item(f"stage{stage}", stage_item(stage))
    state.clear()


class Check:
    """The run: results, budget, the files in ``--out``."""

    def __init__(self, args, meta: dict):
        self.args = args
        self.start = time.perf_counter()
        self.result = {"meta": meta, "pipeline": {}, "conditions": {}, "peak_gpu_memory_mib": None,
                       "goal_ratio": GOAL, "skipped": {}, "errors": {}, "total_s": None}
        self.spent: dict[tuple[str, bool], float] = {}
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def estimate(self, item: str, xla: bool) -> float:
        """What ``item`` will cost: measured in an earlier condition (× 2 for a first XLA one), else a guess."""
        if (item, xla) in self.spent:
            return self.spent[(item, xla)]
        if (item, not xla) in self.spent:
            return self.spent[(item, not xla)] * (2.0 if xla else 0.6)
        guess = GUESS_S[item] * (0.25 if self.args.smoke else 1.0)
        return guess * (2.0 if xla else 1.0)

    def remaining_estimate(self, todo: list[tuple[str, bool]]) -> float:
        return sum(self.estimate(item, xla) for item, xla in todo)

    def run_item(self, condition: str, item: str, xla: bool, measure, todo: list) -> None:
        entry = self.result["conditions"][condition]
        cost = self.estimate(item, xla)
        if self.elapsed() + cost > self.args.budget:
            why = (f"budget: {self.elapsed():.0f} s spent, this one estimated at {cost:.0f} s, budget "
                   f"{self.args.budget:.0f} s")
            entry[item] = {"status": "skipped", "reason": why}
            self.result["skipped"][f"{condition}/{item}"] = why
            print(f"[device_check] SKIPPED {condition}/{item}: {why}", flush=True)
            return
        import tensorflow as tf

        reset_device(clear=item != "stage2")  # stage II trains stage I's model: keep it
        t0 = time.perf_counter()
        try:
            entry[item] = {"status": "ok", **measure()}
        except (tf.errors.ResourceExhaustedError, tf.errors.OpError, ValueError, RuntimeError) as e:
            message = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:400] if str(e).strip() else ''}"
            entry[item] = {"status": "error", "reason": message}
            self.result["errors"][f"{condition}/{item}"] = message
            print(f"[device_check] ERROR {condition}/{item}: {message}", flush=True)
        seconds = time.perf_counter() - t0
        self.spent[(item, xla)] = seconds
        entry[item]["seconds"] = round(seconds, 1)
        entry[item]["peak_gpu_memory_mib"] = peak_memory_mib()
        got = entry[item]
        if got["status"] == "ok":
            print(f"[device_check] {condition}/{item}: {got['steps_per_s']:.2f} steps/s = {got['images_per_s']:.1f} "
                  f"images/s (first step {got['first_step_s']:.1f} s, {got['steps_timed']} steps × 2 epochs), peak "
                  f"GPU memory {got['peak_gpu_memory_mib']} MiB; {seconds:.0f} s", flush=True)
        left = self.remaining_estimate(todo)
        print(f"[device_check] {self.elapsed():.0f} s elapsed; about {left:.0f} s to go by estimate → "
              f"≈ {self.elapsed() + left:.0f} s in all (budget {self.args.budget:.0f} s)", flush=True)
        self.write()

    def finish_condition(self, condition: str) -> None:
        entry = self.result["conditions"][condition]
        base = entry.get("resnet50", {})
        for stage in (1, 2):
            got = entry.get(f"stage{stage}", {})
            ok = got.get("status") == "ok" and base.get("status") == "ok"
            entry[f"ratio_stage{stage}"] = round(got["images_per_s"] / base["images_per_s"], 3) if ok else None
        peaks = [v.get("peak_gpu_memory_mib") for c in self.result["conditions"].values() for v in c.values()
                 if isinstance(v, dict) and v.get("peak_gpu_memory_mib") is not None]
        self.result["peak_gpu_memory_mib"] = max(peaks) if peaks else None
        self.write()

    def write(self) -> None:
        self.result["total_s"] = round(self.elapsed(), 1)
        (self.out / JSON_NAME).write_text(json.dumps(self.result, indent=2) + "\n")
        (self.out / MD_NAME).write_text(markdown(self.result))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _cell(item: dict | None, key: str, fmt: str = "{:.2f}") -> str:
    if not item:
        return "–"
    if item.get("status") != "ok":
        return item.get("status", "–")
    value = item.get(key)
    return "–" if value is None else fmt.format(value)


def markdown(result: dict) -> str:
    """The table to paste into benchmarks/RESULTS.md."""
    m = result["meta"]
    note = (" (--smoke: CPU, tiny sizes; figures say nothing about a GPU)" if m["smoke"] else
            " (no GPU: --allow-cpu; figures say nothing about a GPU)" if m["device"].startswith("CPU only") else "")
    lines = [
        f"### GPU device check — {m['date']}{note}",
        "",
        f"Device: {m['device']}. {m['versions']}.",
        f"Model: `{m['config']}` preset, {m['backbone']} from random weights, {m['image_size']} px, batch "
        f"{m['batch']} (stage II: {m['batch'] // 2} anchors + {m['batch'] // 2} negatives), pool {m['negative_pool']}, "
        f"L = {m['max_len']}, {m['classes']:,} classes, vocabulary {m['vocab']:,} × {m['word_dim']}; generated "
        f"data; `benchmarks/device_check.py{' --smoke' if m['smoke'] else ''}`, {result['total_s']:.0f} s in all.",
        "",
        "| condition | stage I steps/s (images/s) | stage II steps/s (images/s) | bare ResNet-50 steps/s (images/s) "
        "| ratio I | ratio II | first step s (I / II / ResNet) | peak GPU MiB (I / II / ResNet) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in result["conditions"].items():
        def rate(item):
            if not item or item.get("status") != "ok":
                return _cell(item, "")
            return f"{item['steps_per_s']:.2f} ({item['images_per_s']:.0f})"
        ratios = [("–" if c.get(f"ratio_stage{s}") is None else f"{c[f'ratio_stage{s}']:.2f}") for s in (1, 2)]
        firsts = " / ".join(_cell(c.get(i), "first_step_s", "{:.1f}") for i in ("stage1", "stage2", "resnet50"))
        peaks = " / ".join(_cell(c.get(i), "peak_gpu_memory_mib", "{:.0f}") for i in ("stage1", "stage2", "resnet50"))
        lines.append(f"| {name} | {rate(c.get('stage1'))} | {rate(c.get('stage2'))} | {rate(c.get('resnet50'))} | "
                     f"{ratios[0]} | {ratios[1]} | {firsts} | {peaks} |")
    peak = result["peak_gpu_memory_mib"]
    lines += ["", f"Goal: ratio ≥ {result['goal_ratio']} (dual-path images/s ÷ bare ResNet-50 images/s, same batch, "
                  "same precision and XLA setting). Peak GPU memory over all measurements: "
                  f"{'n/a (no GPU)' if peak is None else f'{peak:,.0f} MiB'}.",
              ""]
    p = result["pipeline"]
    if p:
        lines += [f"Input pipeline alone ({m['files']} JPEG files of 500 × 375 → {m['image_size']} px crops, flip on, "
                  f"cache off, batch {m['batch']}) on {m['cpu_cores']} CPU cores:", "",
                  "| pipeline | images/s | CPU ms / image | images/s per core | cores busy |",
                  "|---|---:|---:|---:|---:|"]
        for stage in ("stage1", "stage2"):
            if stage in p:
                s = p[stage]
                lines.append(f"| {stage.replace('stage', 'stage ')} | {s['images_per_s']:.0f} | {s['cpu_ms_per_image']:.2f} | "
                             f"{s['images_per_s_per_core'] or 0:.0f} | {s['cores_busy']:.1f} |")
        lines.append("")
    for key, title in (("skipped", "Skipped"), ("errors", "Errors")):
        if result[key]:
            lines.append(f"{title}: " + "; ".join(f"{k}: {v}" for k, v in result[key].items()))
            lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def run_condition(check: Check, condition: str, cfg, batches: dict, todo: list) -> None:
    """The bare ResNet-50, then stage I and stage II of one DualPath, under one precision policy and XLA setting."""
    import keras

    from dpcnn.training.distribute import precision_policy

    args, smoke = check.args, check.args.smoke
    mixed, jit = CONDITIONS[condition]
    xla = jit == "true"
    run_cfg = B.with_overrides(cfg, [f"train.mixed_precision={mixed}", f"train.jit_compile={jit}"])
    check.result["conditions"][condition] = {}
    print(f"\n[device_check] == {condition} (train.mixed_precision={mixed}, train.jit_compile={jit})", flush=True)

    def run_item(item, measure):
        todo.remove((item, xla))
        if smoke and item == "resnet50" and mixed == "true":
            why = "--smoke: float16 is emulated on a CPU (ResNet-50's 3 steps take about a minute)"
            check.result["conditions"][condition][item] = {"status": "skipped", "reason": why}
            check.result["skipped"][f"{condition}/{item}"] = why
            print(f"[device_check] SKIPPED {condition}/{item}: {why}", flush=True)
            return
        saved = (args.warmup, args.min_steps)
        if smoke and mixed == "true":  # float16 on a CPU: one warm-up and one timed step
            args.warmup, args.min_steps = 1, 1
        try:
            check.run_item(condition, item, xla, measure, todo)
        finally:
            args.warmup, args.min_steps = saved

    with precision_policy(mixed):
        keras.utils.set_random_seed(0)
        run_item("resnet50", lambda: resnet50_item(cfg.data.image_size, cfg.train.batch_size, xla, args))
        dual_path_items(run_cfg, batches, args, run_item)
    check.finish_condition(condition)
    reset_device()


def configure(args):
    """(the run's config, sizes) for the full check or ``--smoke``."""
    from dpcnn.presets import resolve

    if args.smoke:
        cfg = resolve("coco:tiny", ["data.image_size=32", "data.cache_images=false", f"train.batch_size={args.batch or 8}"])
    else:
        cfg = resolve("coco", ["model.image_weights=none", f"train.batch_size={args.batch or 32}"])
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(HERE.parent / "runs" / "device_check"),
                    help="folder for device_check.json and device_check.md (default: $OUT, else runs/device_check)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on a CPU (the test suite runs this)")
    ap.add_argument("--budget", type=float, default=None, help="seconds since start after which no measurement "
                    "is started (default 420; --smoke 240)")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    ap.add_argument("--batch", type=int, default=0, help="global batch (default 32; --smoke 8)")
    ap.add_argument("--classes", type=int, default=None, help="instance classes (default 113,287; --smoke 64)")
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary size (default 20,000; --smoke 200)")
    ap.add_argument("--word-dim", type=int, default=None, help="word-vector dimension (default 300; --smoke 16)")
    ap.add_argument("--files", type=int, default=None, help="generated JPEG files (default 256; --smoke 24)")
    ap.add_argument("--seconds", type=float, default=None, help="target seconds per timed epoch (default 4; --smoke 0)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps, the first traces (default 5; --smoke 1)")
    ap.add_argument("--min-steps", type=int, default=None, help="fewest steps per timed epoch (default 3; --smoke 2)")
    ap.add_argument("--max-steps", type=int, default=200, help="most steps per timed epoch")
    ap.add_argument("--data", default="", help="folder for the generated files (default: a temporary folder)")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run the full-size check without a GPU (very slow: only to check the script itself)")
    ap.add_argument("--skip-without-gpu", action="store_true",
                    help="print SKIPPED and exit 0 where TensorFlow sees no GPU (and --smoke is not given)")
    args = ap.parse_args()
    smoke = args.smoke
    for key, full, small in (("budget", 420.0, 240.0), ("classes", 113_287, 64), ("vocab", 20_000, 200),
                             ("word_dim", 300, 16), ("files", 256, 24), ("seconds", 4.0, 0.0), ("warmup", 5, 1),
                             ("min_steps", 3, 2)):
        if getattr(args, key) is None:
            setattr(args, key, small if smoke else full)

    from dpcnn.data import pipeline

    if not has_gpu() and not smoke and not args.allow_cpu:
        if args.skip_without_gpu:
            print("SKIPPED device_check: TensorFlow sees no GPU here; `--smoke` runs it on a CPU at tiny sizes "
                  "(tests/test_device_check.py does)")
            return
        ap.error("TensorFlow sees no GPU: run with --smoke for the CPU check at tiny sizes")
    cfg = configure(args)
    batch = cfg.train.batch_size
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "smoke": smoke,
        "device": describe_device(), "versions": B.versions(), "cpu_cores": os.cpu_count(), "config": cfg.name,
        "backbone": cfg.model.image_backbone, "image_size": cfg.data.image_size, "batch": batch,
        "negative_pool": cfg.train.negative_pool, "max_len": cfg.data.max_len, "classes": args.classes,
        "vocab": args.vocab, "word_dim": args.word_dim, "files": args.files, "budget_s": args.budget,
        "conditions": {c: {"train.mixed_precision": CONDITIONS[c][0], "train.jit_compile": CONDITIONS[c][1]}
                       for c in args.conditions},
    }
    check = Check(args, meta)
    print(f"[device_check] {meta['device']}; {meta['versions']}", flush=True)
    print(f"[device_check] {cfg.name}: {cfg.model.image_backbone}, {cfg.data.image_size} px, batch {batch}, pool "
          f"{cfg.train.negative_pool}, {args.classes} classes; budget {args.budget:.0f} s; writing to {check.out}",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        t0 = time.perf_counter()
        split = B.paper_size_split(folder / "jpegs", n=args.files, max_len=cfg.data.max_len, vocab=args.vocab)
        print(f"[device_check] {split.num_images} JPEG files of 500 × 375 written in {time.perf_counter() - t0:.1f} s",
              flush=True)

        # -- the input pipeline alone, before any model competes for the cores ------------------
        for stage, make in ((1, pipeline.stage1_dataset), (2, pipeline.stage2_dataset)):
            got = pipeline_rate(make, split, cfg, seconds=0.0 if smoke else 4.0, min_batches=3 if smoke else 20)
            check.result["pipeline"][f"stage{stage}"] = got
            print(f"[device_check] pipeline stage {stage}: {got['images_per_s']:.0f} images/s, "
                  f"{got['cpu_ms_per_image']:.2f} ms CPU per image = {got['images_per_s_per_core']} images/s per core, "
                  f"{got['cores_busy']:.1f} cores busy", flush=True)
        check.write()

        # -- the model's batches: made once by the real pipeline, cycled from memory ---------------
        batches = {1: B.cached_batches(pipeline.stage1_dataset(split, cfg, 0, 1), 4),
                   2: B.cached_batches(pipeline.stage2_dataset(split, cfg, 0, 1), 4)}

        todo = [(item, CONDITIONS[c][1] == "true") for c in args.conditions for item in ITEMS]
        for condition in args.conditions:
            run_condition(check, condition, cfg, batches, todo)
        check.result["total_s"] = round(check.elapsed(), 1)
        check.write()
    print(f"\n{markdown(check.result)}")
    print(f"[device_check] wrote {check.out / JSON_NAME} and {check.out / MD_NAME} in {check.elapsed():.0f} s")


if __name__ == "__main__":
    main()
