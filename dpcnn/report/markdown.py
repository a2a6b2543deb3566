"""``metrics.md``: our numbers beside the paper's (REFERENCE_RESULTS.md), stage I beside stage II.

``DIR/metrics.md`` shows stage II, with stage I beside it when ``stage1/metrics.json`` exists;
``DIR/stage1/metrics.md`` shows stage I alone; another split than test writes ``metrics-<split>.md``.
Every report repeats the split caveat, says which protocols were skipped and why, and names what
the paper has no row for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from dpcnn.config import Config
from dpcnn.data.datasets import PaperResult, get
from dpcnn.utils import atomic_write_text, read_json

SPLIT_CAVEAT = (
    "the paper's own splits are not Karpathy's (Flickr30k test = the images in Flickr8k's test "
    "list; COCO test = a random 5,000 that cannot be regenerated), so comparisons with "
    "Karpathy-split runs are approximate."
)
"""Verbatim from REFERENCE_RESULTS.md ("Caveat that every report must repeat")."""

PAPER_SIZE_COMMAND = "dpcnn train --config demo-full --run runs/demo-full"


def paper_result(dataset: str, protocol: str) -> PaperResult | None:
    """The paper's row for a dataset and protocol, or None (synthetic, your own data, COCO ``full``)."""
    return next((r for r in get(dataset).paper_results if r.protocol == protocol), None)


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "–"
    if digits == 0:  # ranks: whole numbers as such, fold means (COCO 1K) with one decimal
        return str(int(value)) if value.is_integer() else f"{value:.1f}"
    return f"{value:.{digits}f}"


def _rows(protocol: str, ours: Sequence[Mapping | None], paper: PaperResult | None) -> list[list[str]]:
    """Table rows: metric name, one column per result in ``ours``, then the paper's."""

    def get(entry: Mapping | None, direction: str, key: str):
        if entry is None or entry.get(direction) is None:
            return None
        return entry[direction].get(key)

    rows = []
    directions = ("t2i",) if protocol == "reid" else ("i2t", "t2i")
    keys = ("r1", "r5", "r10", "medr", "meanr") + (("map",) if protocol == "reid" else ())
    names = {"r1": "R@1", "r5": "R@5", "r10": "R@10", "medr": "Med r", "meanr": "mean r", "map": "mAP"}
    for d in directions:
        label = "image→text" if d == "i2t" else "text→image"
        for k in keys:
            row = [f"{label} {names[k]}"]
            row += [_fmt(get(e, d, k), 0 if k == "medr" else 1) for e in ours]
            if paper is not None:
                triple = paper.i2t if d == "i2t" else paper.t2i
                if k in ("r1", "r5", "r10") and triple is not None:
                    row.append(_fmt(triple[("r1", "r5", "r10").index(k)], 2 if protocol == "reid" else 1))
                elif k == "medr" and paper.medr[0 if d == "i2t" else 1] is not None:
                    row.append(_fmt(paper.medr[0 if d == "i2t" else 1], 0) + " †")
                else:
                    row.append("–")
            rows.append(row)
    rsum = ["rsum (t2i R@1+5+10)" if protocol == "reid" else "rsum"]
    rsum += [_fmt(e.get("rsum") if e else None) for e in ours]
    if paper is not None:
        rsum.append(_fmt(paper.rsum))
    rows.append(rsum)
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(cfg: Config, stages: Mapping[int, Mapping], run_name: str = "") -> str:
    """metrics.md text: ``stages`` maps stage (1, 2) → a metrics.json dict of the same split."""
    if not stages:
        raise ValueError("render_markdown: no metrics to show")
    order = sorted(stages)
    metas = {s: stages[s].get("meta", {}) for s in order}
    split = metas[order[-1]].get("split", "test")
    roman = {1: "stage I", 2: "stage II"}
    protocols: list[str] = []
    for s in order:
        protocols += [p for p in stages[s] if p != "meta" and p not in protocols]

    out = [f"# Retrieval results{f' — {run_name}' if run_name else ''}", ""]
    out.append(f"Config `{cfg.name}`, dataset `{cfg.data.dataset}`, split `{split}`. "
               "Recalls in %; ranks are 1-based (Med r = the official upper median, ties pessimistic).")
    for s in order:
        m = metas[s]
        out.append(f"- ours, {roman[s]}: weights `{m.get('weights', f'stage{s}')}`, evaluated {m.get('date', '?')}")
    out.append("")
    notes: list[str] = []
    for p in protocols:
        entries = [stages[s].get(p) for s in order]
        first = next(e for e in entries if e is not None)
        paper = paper_result(cfg.data.dataset, p) if split == "test" else None
        what = "gallery images, query captions" if p == "reid" else "images, captions"
        n1, n2 = what.split(", ")
        out.append(f"## Protocol `{p}` — {first['num_images']} {n1}, {first['num_captions']} {n2}")
        out.append("")
        header = ["metric"] + [f"ours, {roman[s]}" for s in order]
        if paper is not None:
            header.append(f"paper: {paper.setting}")
        out.append(_table(header, _rows(p, entries, paper)))
        out.append("")
        if paper is not None:
            out.append(f"Paper row from REFERENCE_RESULTS.md; how sure: {paper.how_sure}.")
            if any(v is not None for v in paper.medr):
                out.append("† Med r recalled, unverified (REFERENCE_RESULTS.md).")
        else:
            out.append(_no_paper_row(cfg, p, split))
        out.append("")
        fold_list = metas[order[-1]].get("folds", {}).get(p)
        if fold_list:
            out.append(f"{p}: the mean of {len(fold_list)} folds "
                       "(each fold's numbers are in metrics.json → meta.folds).")
            out.append("")
    skipped = metas[order[-1]].get("skipped", {})
    if skipped:
        notes.append("Skipped protocols (the preset's defaults that this split cannot support): "
                     + "; ".join(f"`{p}` {why}" for p, why in skipped.items()) + ".")
    if cfg.data.dataset == "synthetic":
        notes.append(_synthetic_note(cfg))
    notes.append(f"Split caveat: {SPLIT_CAVEAT}")
    out.append("\n\n".join(notes))
    return "\n".join(out).rstrip() + "\n"


def _no_paper_row(cfg: Config, protocol: str, split: str) -> str:
    if split != "test":
        return f"No paper row: the paper's numbers are on the test split, this is `{split}`."
    if cfg.data.dataset == "synthetic":
        return "No paper row: the synthetic shapes dataset is this project's own demo; the paper has no numbers for it."
    if cfg.data.dataset == "emoji":
        return "No paper row: the emoji (OpenMoji) are this project's own small real dataset, not one of the paper's."
    if cfg.data.dataset == "coco-format":
        return "No paper row: this is your own COCO-format data."
    if cfg.data.dataset == "coco":
        return f"No paper row: the paper reports MSCOCO with the 1k and 5k protocols, not `{protocol}`."
    return f"No paper row for {cfg.data.dataset} with protocol `{protocol}`."


def _synthetic_note(cfg: Config) -> str:
    if cfg.model.image_backbone == "small":
        return ("This demo is the CPU-sized configuration (a small residual image CNN and a shallower text CNN "
                "of the same family), not the paper-size model; for the paper-size model on the same data run "
                f"`{PAPER_SIZE_COMMAND}` (a GPU is advised).")
    return (f"This is the paper-size model ({cfg.model.image_backbone}) on the synthetic data, "
            "started from random weights.")


def write_markdown(run, split: str = "test") -> list[Path]:
    """(Re)write the metrics.md files that the existing metrics files of ``split`` call for
    (``run``: a :class:`dpcnn.run.Run`). Returns the files written."""
    found = {s: read_json(run.metrics_path(s, split)) for s in (1, 2) if run.metrics_path(s, split).is_file()}
    written = []
    for stage in sorted(found):
        path = run.metrics_path(stage, split, ".md")
        shown = {1: found[1]} if stage == 1 else found
        atomic_write_text(path, render_markdown(run.config, shown, run.path.name))
        written.append(path)
    return written
