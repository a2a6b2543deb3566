"""The paper's claim tested — its ablations and today's objectives side by side.

For each dataset preset (``demo``, ``emoji``) and each seed (``train.seed``), five variants of one
code path, with the same encoders, the same data and the same budget of training steps:

- ``paper``: stage I (instance loss), then stage II with the ranking loss + instance loss.
- ``instance-alone``: stage I, then stage II with the instance loss only (rank weight 0).
- ``ranking-alone``: no stage I; stage II with the ranking loss only (instance weights 0),
  trained for the stage-I epochs plus the stage-II epochs (the first stage-II rate held longer).
- ``vsepp``: stage I, then stage II with VSE++'s hardest in-batch negative + instance loss.
- ``infonce``: stage I, then stage II with CLIP's contrastive loss (learned temperature) + instance loss.

The four variants that begin with stage I share one stage-I run per seed (its weights are copied
into their run folders), so stage I is trained once. The stage-I weights are evaluated too: a
sixth row, with fewer steps than the others. Every result is the test split of the preset's
first protocol. Results accumulate in ``<out>/results.json`` (an interrupted compare continues
where it stopped); ``--report-only`` redraws ``docs/compare.md`` and its picture from it.

``make compare`` (tools/compare.py) runs :func:`run_compare` and writes ``docs/compare.md`` with
:func:`write_report`; notebook 06 runs it on one seed of its preset.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from dpcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

VARIANTS = {
    "paper": "stage I, then ranking + instance (the paper)",
    "instance-alone": "stage I, then instance loss only",
    "ranking-alone": "ranking loss only, no stage I",
    "vsepp": "stage I, then VSE++ hardest in-batch + instance",
    "infonce": "stage I, then InfoNCE (CLIP) + instance",
}
STAGE1_ROW = "stage-I-only"
"""The shared stage I evaluated on its own (fewer steps than the other rows)."""
ORDER = (*VARIANTS, STAGE1_ROW)
TABLE_MARKER = "<!-- compare:table -->"
"""docs/compare.md: :func:`write_report` replaces the text between two of these."""


def variant_overrides(name: str, base) -> list[str]:
    """The ``--set`` overrides of a variant on top of the base config ``base``."""
    t = base.train
    w_rank, w_img, w_txt = t.stage2_loss_weights
    if name == "paper":
        return []
    if name == "instance-alone":
        return [f"train.stage2_loss_weights=0,{w_img},{w_txt}"]
    if name == "ranking-alone":
        stage1_epochs = sum(e for e, _ in t.stage1_schedule)
        (first_epochs, first_lr), *rest = t.stage2_schedule
        schedule = ",".join(f"{e}:{lr}" for e, lr in ((first_epochs + stage1_epochs, first_lr), *rest))
        return ["train.with_stage1=false", f"train.stage2_loss_weights={w_rank},0,0", f"train.stage2_schedule={schedule}"]
    if name in ("vsepp", "infonce"):
        return [f"train.stage2_objective={name}"]
    raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def evaluate(run_path: Path, stage: int) -> dict:
    """Test-split metrics of one stage of a run (the config's first protocol), without the report files."""
    from dpcnn.data.prepare import ensure_prepared
    from dpcnn.evaluation import compute
    from dpcnn.run import Run

    run = Run.open(run_path)
    cfg = run.config
    arrays = ensure_prepared(cfg, progress=False, need=("test",)).splits["test"]
    images, texts = run.split_features(stage, arrays, "test", progress=False)
    protocol = cfg.eval.protocols[0]
    entry = compute([protocol], images, texts, arrays, cfg.eval.ap_rule)[0][protocol]
    return {"protocol": protocol, "rsum": entry["rsum"],
            "i2t_r1": entry["i2t"]["r1"] if entry.get("i2t") else None, "t2i_r1": entry["t2i"]["r1"],
            "num_images": entry.get("num_images"), "num_captions": entry.get("num_captions")}


def stage_seconds(run_path: Path, stage: int) -> float:
    done = json.loads((run_path / f"stage{stage}" / "done.json").read_text())
    return float(done.get("seconds_this_session", 0.0))


def train_variant(dataset: str, seed: int, name: str, out: Path, sets: Sequence[str] = ()) -> list[dict]:
    """Train (or find finished) one variant of one seed in ``out/<dataset>/seed<seed>/<name>``;
    its result entries (one; two for ``paper``, whose stage I is also a row)."""
    import keras

    from dpcnn.presets import resolve
    from dpcnn.training.trainer import train

    base = resolve(dataset, [f"train.seed={seed}", *sets])
    cfg = resolve(dataset, [f"train.seed={seed}", *sets, *variant_overrides(name, base)])
    run = out / dataset / f"seed{seed}" / name
    shared = out / dataset / f"seed{seed}" / "paper"
    started = time.time()
    copies_stage1 = name not in ("paper", "ranking-alone")
    if not (run / "stage2" / "done.json").is_file():
        if copies_stage1 and run.exists():
            shutil.rmtree(run)  # an interrupted copy starts again from the copied stage I
        if copies_stage1:  # the paper run's stage I, copied
            run.mkdir(parents=True)
            cfg.save(run / "config.json")
            shutil.copytree(shared / "stage1", run / "stage1", ignore=shutil.ignore_patterns("backups", "results"))
        keras.backend.clear_session()
        train(cfg, run, stage="2" if copies_stage1 else "all", verbose=0)  # an interrupted run resumes
    results = [{"dataset": dataset, "seed": seed, "variant": name, **evaluate(run, 2),
                "train_seconds": stage_seconds(run, 2) + (stage_seconds(run, 1) if name == "paper" else 0.0),
                "steps": _steps(run, cfg)}]
    if name == "paper":
        results.append({"dataset": dataset, "seed": seed, "variant": STAGE1_ROW, **evaluate(run, 1),
                        "train_seconds": stage_seconds(run, 1), "steps": _steps(run, cfg, stages=(1,))})
    log.info("%s seed %d %-15s rsum %.1f (%.0f s)", dataset, seed, name, results[0]["rsum"], time.time() - started)
    return results


def _steps(run: Path, cfg, stages=(1, 2)) -> int:
    """Optimiser steps the run trained in ``stages`` (epochs × steps per epoch of each done.json)."""
    total = 0
    for s in stages:
        path = run / f"stage{s}" / "done.json"
        if path.is_file():
            done = json.loads(path.read_text())
            total += int(done["epochs"]) * int(done["steps_per_epoch"])
    return total


# -- the report --------------------------------------------------------------------------------


def summarise(results: list[dict]) -> dict:
    """{(dataset, variant): {metric: (mean, std, n)}} — std is the sample standard deviation (n − 1)."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    out = {}
    for key, rows in groups.items():
        out[key] = {}
        for metric in ("rsum", "i2t_r1", "t2i_r1", "train_seconds", "steps"):
            values = [float(r[metric]) for r in rows if r.get(metric) is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                out[key][metric] = (statistics.mean(values), std, len(values))
        out[key]["seeds"] = sorted(r["seed"] for r in rows)
        out[key]["rsums"] = [r["rsum"] for r in sorted(rows, key=lambda r: r["seed"])]
    return out


def _cell(stat, digits: int = 1) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 and std > 0 else f"{mean:.{digits}f}"


def markdown_tables(summary: dict, datasets: list[str], meta: dict) -> str:
    lines = []
    for dataset in datasets:
        rows = [(v, summary[(dataset, v)]) for v in ORDER if (dataset, v) in summary]
        if not rows:
            continue
        m = meta.get(dataset, {})
        lines += [f"### {dataset}", ""]
        training = sum(st["train_seconds"][0] * st["train_seconds"][2] for v, st in rows
                       if v != STAGE1_ROW and "train_seconds" in st) / 60  # the shared stage I is in `paper`
        if m:
            lines += [f"Measured {m['date']} with `{m['command']}` (git {m['git']}; {m['machine']}; TensorFlow "
                      f"{m['tensorflow']}, Keras {m['keras']}); the runs trained for {training:.0f} min in all.", ""]
        lines += [
                  "| variant | what trains | rsum | R@1 image→text | R@1 text→image | steps | train s | seeds |",
                  "|---|---|---|---|---|---|---|---|"]
        for v, s in rows:
            what = VARIANTS.get(v, "the shared stage I alone (instance loss; fewer steps)")
            lines.append(f"| {v} | {what} | {_cell(s.get('rsum'))} | {_cell(s.get('i2t_r1'))} | "
                         f"{_cell(s.get('t2i_r1'))} | {_cell(s.get('steps'), 0)} | {_cell(s.get('train_seconds'), 0)} | "
                         f"{', '.join(map(str, s['seeds']))} |")
        lines.append("")
    return "\n".join(lines)


def draw(summary: dict, datasets: list[str], path: Path) -> Path:
    """Bars of the mean rsum per variant, one panel per dataset, each seed's value as a dot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [d for d in datasets if any((d, v) in summary for v in ORDER)]
    fig = Figure(figsize=(6.2 * max(1, len(shown)), 4.2))
    FigureCanvasAgg(fig)
    for i, dataset in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        names = [v for v in ORDER if (dataset, v) in summary]
        means = [summary[(dataset, v)]["rsum"][0] for v in names]
        stds = [summary[(dataset, v)]["rsum"][1] for v in names]
        colors = ["#1f77b4" if v == "paper" else "#bbbbbb" if v == STAGE1_ROW else "#ff7f0e" for v in names]
        ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=4, alpha=0.85)
        for k, v in enumerate(names):
            values = summary[(dataset, v)]["rsums"]
            ax.plot([k] * len(values), values, "k.", markersize=5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test rsum (R@1+5+10, both ways; max 600)")
        ax.set_title(f"{dataset}: mean ± std over seeds (dots: each seed)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_report(results: list[dict], meta: dict, report: Path, picture: Path) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    summary = summarise(results)
    draw(summary, datasets, picture)
    table = markdown_tables(summary, datasets, meta)
    marker = TABLE_MARKER
    text = report.read_text() if report.is_file() else f"# Compare\n\n{marker}\n{marker}\n"
    head, _, rest = text.partition(marker)
    _, _, tail = rest.partition(marker)
    block = (f"{marker}\nEach cell: mean ± sample standard deviation over the seeds listed (a single value where "
             f"they agree or one seed ran).\n\n{table}\n![compare](images/{picture.name})\n{marker}")
    report.write_text(head + block + tail)


def run_compare(datasets: Sequence[str], seeds: Sequence[int], variants: Sequence[str], out: str | Path,
                sets: Sequence[str] = ()) -> list[dict]:
    """Train and evaluate every (dataset, seed, variant); results accumulate in ``out/results.json``
    (finished runs are not trained again). Returns every stored result."""
    out = Path(out)
    store = out / "results.json"
    saved = json.loads(store.read_text()) if store.is_file() else {"results": [], "meta": {}}
    variants = list(variants)
    if "paper" not in variants and any(v != "ranking-alone" for v in variants):
        variants.insert(0, "paper")  # the shared stage I comes from the paper run
    jobs = [(d, s, v) for d in datasets for s in seeds for v in variants]
    start = time.time()
    for k, (dataset, seed, name) in enumerate(jobs):
        entries = train_variant(dataset, seed, name, out, sets)
        done = {(e["dataset"], e["seed"], e["variant"]) for e in entries}
        if store.is_file():  # another compare may have written its results meanwhile
            saved = json.loads(store.read_text())
        saved["results"] = [r for r in saved["results"] if (r["dataset"], r["seed"], r["variant"]) not in done] + entries
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(store, json.dumps(saved, indent=1))
        log.info("compare: job %d/%d done, %.1f min so far", k + 1, len(jobs), (time.time() - start) / 60)
    return saved["results"]
