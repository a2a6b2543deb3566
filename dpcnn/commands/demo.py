"""``dpcnn demo``: the main job on the embedded synthetic data, end to end.

Generates the synthetic dataset, prepares it (word vectors trained with gensim on the training
captions), trains the CPU-sized ``demo`` preset through stage I and stage II, evaluates both
stages on the unseen test split and writes the run folder's report (metrics.json,
stage1/metrics.json, metrics.md, curves.png, examples.png). Re-running resumes an interrupted
demo; a finished one is reported again without retraining (``--overwrite`` trains afresh).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from dpcnn.presets import resolve
from dpcnn.report.markdown import PAPER_SIZE_COMMAND
from dpcnn.run import Run
from dpcnn.utils import atomic_write_json, read_json

log = logging.getLogger(__name__)


def run_demo(run_path: Path, overwrite: bool = False, overrides: Sequence[str] = (), progress: bool = True) -> str:
    """Train and evaluate the demo preset into ``run_path``; returns a short summary for the terminal."""
    from dpcnn.commands.evaluate import evaluate_run
    from dpcnn.data.prepare import ensure_prepared, summarize
    from dpcnn.training.trainer import train

    cfg = resolve("demo", overrides)
    timings: dict[str, float] = {}
    start = time.time()
    data = ensure_prepared(cfg, progress=progress)
    timings["prepare_s"] = time.time() - start
    log.info("data:\n%s", summarize(data.report))
    run = Run(run_path)
    t = time.time()
    if run.stage_done(1) and run.stage_done(2) and not overwrite:
        log.info("%s already holds a finished demo: evaluating it again (use --overwrite to retrain)", run.path)
    else:
        train(cfg, run.path, stage="all", overwrite=overwrite, verbose=1 if progress else 2, data=data)
    timings["train_s"] = time.time() - t
    t = time.time()
    for stage in (1, 2):
        evaluate_run(run.path, stage=stage, progress=progress)
    timings["eval_s"] = time.time() - t
    timings["total_s"] = time.time() - start
    atomic_write_json(run.timings_path, {k: round(v, 1) for k, v in timings.items()})
    stage1 = read_json(run.metrics_path(1))["full"]
    stage2 = read_json(run.metrics_path(2))["full"]
    return "\n".join([
        f"demo finished in {timings['total_s'] / 60:.1f} min "
        f"(prepare {timings['prepare_s']:.0f} s, train {timings['train_s']:.0f} s, eval {timings['eval_s']:.0f} s)",
        f"test split: {stage2['num_images']} unseen images x {stage2['num_captions']} captions",
        f"rsum  stage I {stage1['rsum']:.1f}   stage II {stage2['rsum']:.1f}   (chance ≈ 32, max 600)",
        f"report: {run.metrics_path(2, suffix='.md')}   pictures: {run.examples_path(2)}, {run.curves_path}",
        f"This is the CPU-sized configuration; the paper-size model on the same data: {PAPER_SIZE_COMMAND}",
    ])
