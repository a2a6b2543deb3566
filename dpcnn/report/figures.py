"""``dpcnn eval``: metrics.json, metrics.md (side by side with the paper), curves.png, examples.png.

Files (DESIGN §1), for the stage-II model (the default once stage II is finished)::

    DIR/metrics.json   one key per protocol, each exactly the DESIGN §1 schema, plus "meta"
    DIR/metrics.md     our numbers beside the paper's (REFERENCE_RESULTS.md), the split caveat
    DIR/curves.png     the training history of both stages on one epoch axis
    DIR/examples.png   text queries of the split with their top-5 images

For ``--stage 1`` (or a run whose stage II is not finished) the files go to ``DIR/stage1/``;
``DIR/metrics.md`` shows stage I and stage II side by side whenever both metrics files exist.
A split other than ``test`` writes ``metrics-<split>.json`` / ``.md`` / ``examples-<split>.png``.

``metrics.json`` layout::

    {"full": {"num_images", "num_captions", "i2t": {r1, r5, r10, medr, meanr}, "t2i": {...}, "rsum"},
     "5k": {...}, "1k": {... the mean over the folds ...},
     "meta": {"stage": 2, "split": "test", "date": ISO 8601, "config": "demo", "dataset": "synthetic",
              "weights": "stage2/model.weights.h5",
              "test_features": {"image_mode", "flip", "all_shifts"},
              "folds": {"1k": [per-fold schema dicts]}}}      # "folds" only with the 1k protocol

``reid`` (CUHK-PEDES, text→image only) fills the same keys: num_images = gallery images,
num_captions = query captions, ``"i2t": null``, ``t2i`` adds ``"map"`` (%), rsum = t2i R@1+R@5+R@10.
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpcnn import run_dir as rd
from dpcnn.config import PROTOCOLS, Config, ConfigError
from dpcnn.utils import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

HISTORY = "history.csv"
CURVES = "curves.png"

SPLIT_CAVEAT = (
    "the paper's own splits are not Karpathy's (Flickr30k test = the images in Flickr8k's test "
    "list; COCO test = a random 5,000 that cannot be regenerated), so comparisons with "
    "Karpathy-split runs are approximate."
)
"""Verbatim from REFERENCE_RESULTS.md ("Caveat that every report must repeat")."""

PAPER_SIZE_COMMAND = "dpcnn train --config demo-full --run runs/demo-full"


# --------------------------------------------------------------------------------------------
# The paper's numbers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperResult:
    """One published DP-CNN result. Recalls in %; ``None`` where the paper reports nothing."""

    dataset: str
    protocol: str
    setting: str
    i2t: tuple[float, float, float] | None
    t2i: tuple[float, float, float]
    medr: tuple[float | None, float | None]
    """(i2t, t2i) Med r; REFERENCE_RESULTS.md: "recalled, unverified"."""
    rsum: float | None
    how_sure: str


# From /work/shared/REFERENCE_RESULTS.md, "DP-CNN (the paper)" table (R@1 / R@5 / R@10, rsum,
# and its "how sure" column); Med r from its note "reported as 1 (i2t) and 2 (t2i) on Flickr30k
# and COCO 1K (recalled, unverified)". Only the rows that match a preset's dataset/protocol.
PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("flickr30k", "full", 'Flickr30k 1K test, "ResNet"', (55.6, 81.9, 89.5), (39.1, 69.2, 80.9),
                (1.0, 2.0), 416.2, "cited verbatim by later papers; backbone may be ResNet-152"),
    PaperResult("coco", "1k", "MSCOCO 1K (mean of 5 folds), ResNet-50", (65.6, 89.8, 95.5), (47.1, 79.9, 90.0),
                (1.0, 2.0), 467.9, "secondary list"),
    PaperResult("coco", "5k", "MSCOCO 5K, ResNet-50", (41.2, 70.5, 81.1), (25.3, 53.4, 66.4),
                (None, None), 337.9, "cited verbatim"),
    PaperResult("cuhk-pedes", "reid", "CUHK-PEDES (t2i only), ResNet-50", None, (44.40, 66.26, 75.07),
                (None, None), None, "cited verbatim"),
)


def paper_result(dataset: str, protocol: str) -> PaperResult | None:
    """The paper's row for a dataset and protocol, or None (synthetic, coco-format, coco ``full``)."""
    for row in PAPER_RESULTS:
        if row.dataset == dataset and row.protocol == protocol:
            return row
    return None


# --------------------------------------------------------------------------------------------
# File locations
# --------------------------------------------------------------------------------------------


def results_dir(run: Path, stage: int) -> Path:
    """Where a stage's eval files go: the run folder for stage II, ``stage1/`` for stage I."""
    return Path(run) if stage == 2 else rd.stage_dir(run, stage)


def _suffix(split: str) -> str:
    return "" if split == "test" else f"-{split}"


def metrics_path(run: Path, stage: int, split: str = "test") -> Path:
    return results_dir(run, stage) / f"metrics{_suffix(split)}.json"


def _markdown_path(run: Path, stage: int, split: str) -> Path:
    return results_dir(run, stage) / f"metrics{_suffix(split)}.md"


def check_run(run: Path) -> None:
    """RunDirError unless ``run`` is a run folder (has config.json)."""
    run = Path(run)
    if not run.is_dir():
        raise rd.RunDirError(f"run folder {run} does not exist: train one with `dpcnn train --config … --run {run}`")
    if not (run / "config.json").is_file():
        raise rd.RunDirError(f"{run} is not a dpcnn run folder (no config.json): "
                             "pass the --run folder of `dpcnn train`")


def resolve_stage(run: Path, stage: int | None) -> int:
    """``stage``, or the last finished stage; RunDirError if it is not finished."""
    if stage is None:
        stage = 2 if rd.stage_done(run, 2) else 1
    if stage not in (1, 2):
        raise rd.RunDirError(f"stage must be 1 or 2, got {stage}")
    if not rd.stage_done(run, stage):
        raise rd.RunDirError(f"{run} has no finished stage {stage}: train it first (`dpcnn train --run {run}`)")
    return stage


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _check_protocols(protocols: Sequence[str], num_images: int, split: str) -> None:
    for p in protocols:
        if p not in PROTOCOLS:
            raise ConfigError(f"unknown protocol '{p}'; valid: {', '.join(PROTOCOLS)}")
        need = {"1k": 1000, "5k": 5000}.get(p, 0)
        if num_images < need:
            raise ConfigError(f"protocol {p} needs at least {need} {split} images, the split has {num_images}: "
                              "use --protocol full")


def schema_entry(protocol: str, raw: Mapping) -> tuple[dict, dict]:
    """A protocol's result in the metrics.json schema, plus what goes to ``meta`` (1k folds)."""
    if protocol == "reid":
        t2i = dict(raw["t2i"])
        entry = {"num_images": int(raw["num_gallery"]), "num_captions": int(raw["num_queries"]),
                 "i2t": None, "t2i": t2i, "rsum": float(t2i["r1"] + t2i["r5"] + t2i["r10"])}
        return entry, {}
    entry = {k: raw[k] for k in ("num_images", "num_captions", "i2t", "t2i", "rsum")}
    extra = {"folds": raw["folds"]} if "folds" in raw else {}
    return entry, extra


def evaluate_run(run: Path, split: str = "test", protocols: Sequence[str] | None = None,
                 stage: int | None = None, progress: bool = True) -> str:
    """``dpcnn eval``: encode ``split`` once, compute each protocol, write the report files.

    Returns the text the CLI prints (the markdown table and the files written).
    """
    from dpcnn.encoders import Encoders
    from dpcnn.evaluation import encode_split, protocol_metrics
    from dpcnn.prepare import ensure_prepared
    from dpcnn.training import load_trained

    run = Path(run)
    check_run(run)
    stage = resolve_stage(run, stage)
    cfg = Config.load(run / "config.json")
    protocols = tuple(protocols) if protocols else tuple(cfg.eval.protocols)
    data = ensure_prepared(cfg, progress=progress)
    if split not in data.splits or data.splits[split].num_images == 0:
        raise ConfigError(f"the prepared data of {run} has no '{split}' images to evaluate")
    arrays = data.splits[split]
    _check_protocols(protocols, arrays.num_images, split)

    cfg, model, data = load_trained(run, stage, data=data)
    encoders = Encoders(model.image_encoder, model.text_encoder, cfg)
    log.info("evaluating stage %d of %s on %s: %d images, %d captions", stage, run, split,
             arrays.num_images, arrays.num_captions)
    image_feats, text_feats = encode_split(encoders, arrays, progress=progress, name=split)

    result: dict = {}
    folds: dict = {}
    for p in protocols:
        entry, extra = schema_entry(p, protocol_metrics(p, image_feats, text_feats, arrays, cfg.eval.ap_rule))
        result[p] = entry
        if extra:
            folds[p] = extra["folds"]
    meta = {
        "stage": stage, "split": split,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": cfg.name, "dataset": cfg.data.dataset,
        "weights": f"stage{stage}/{rd.WEIGHTS}",
        "test_features": {"image_mode": cfg.eval.image_mode, "flip": cfg.eval.flip,
                          "all_shifts": cfg.eval.all_shifts},
    }
    if folds:
        meta["folds"] = folds
    result["meta"] = meta
    out_json = metrics_path(run, stage, split)
    atomic_write_json(out_json, result)
    written = [out_json, *write_markdown(run, cfg, split)]

    if (run / HISTORY).is_file():
        written.append(plot_history(run))
    else:
        log.warning("%s has no %s: no training curves drawn", run, HISTORY)
    examples = results_dir(run, stage) / f"examples{_suffix(split)}.png"
    written.append(plot_examples(run, stage=stage, split=split, out=examples,
                                 features=(arrays, image_feats, text_feats)))
    table = _markdown_path(run, stage, split).read_text()
    return table + "\nwrote:\n" + "\n".join(f"  {p}" for p in written)


# --------------------------------------------------------------------------------------------
# metrics.md
# --------------------------------------------------------------------------------------------


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


def write_markdown(run: Path, cfg: Config, split: str = "test") -> list[Path]:
    """(Re)write the metrics.md files that the existing metrics files of ``split`` call for.

    ``DIR/metrics.md``: stage II, with stage I beside it when ``stage1/metrics.json`` exists.
    ``DIR/stage1/metrics.md``: stage I alone. Returns the files written.
    """
    run = Path(run)
    found = {s: read_json(metrics_path(run, s, split)) for s in (1, 2) if metrics_path(run, s, split).is_file()}
    written = []
    if 1 in found:
        path = _markdown_path(run, 1, split)
        atomic_write_text(path, render_markdown(cfg, {1: found[1]}, run.name))
        written.append(path)
    if 2 in found:
        path = _markdown_path(run, 2, split)
        atomic_write_text(path, render_markdown(cfg, found, run.name))
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg canvas, no pyplot state)
# --------------------------------------------------------------------------------------------


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: Path) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    fig.clear()
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


@dataclass(frozen=True)
class HistorySeries:
    """history.csv on one epoch axis: x float [E] (1, 2, … over stage I then II), stage int [E],
    columns name → float [E] (NaN where empty), boundary = x between the stages (None if one stage)."""

    x: np.ndarray
    stage: np.ndarray
    columns: dict[str, np.ndarray]
    boundary: float | None


def read_history(path: Path) -> HistorySeries:
    """Parse the CSVLogger history of both stages (rows ordered by stage, then epoch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training history at {path}: train the run first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no epochs yet")

    def num(text) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    rows.sort(key=lambda r: (num(r.get("stage", 1)), num(r.get("epoch", 0))))
    stage = np.asarray([int(num(r.get("stage", 1))) for r in rows])
    columns = {k: np.asarray([num(r.get(k)) for r in rows]) for k in rows[0] if k not in ("epoch", "stage")}
    x = np.arange(1, len(rows) + 1, dtype=float)
    first = np.flatnonzero(stage == 2)
    boundary = float(first[0] + 0.5) if first.size and first[0] > 0 else None
    return HistorySeries(x, stage, columns, boundary)


def plot_history(run: Path) -> Path:
    """``DIR/curves.png``: losses, instance accuracy per branch, validation R@K and rsum per epoch,
    stage I and II on one epoch axis with a line at the stage boundary."""
    from matplotlib.ticker import MaxNLocator

    run = Path(run)
    h = read_history(run / HISTORY)
    fig = new_figure(13, 8.5)
    axes = fig.subplots(2, 2)
    panels = [
        (axes[0, 0], "losses", [("loss", "total"), ("rank_loss", "ranking"), ("image_loss", "image instance"),
                                ("text_loss", "text instance")], 1.0),
        (axes[0, 1], "instance accuracy (train, %)",
         [("image_acc", "image branch"), ("text_acc", "text branch")], 100.0),
        (axes[1, 0], "validation R@K (%)",
         [(f"val_{d}_r{k}", f"{d} R@{k}") for d in ("i2t", "t2i") for k in (1, 5, 10)], 1.0),
        (axes[1, 1], "validation rsum", [("val_rsum", "rsum")], 1.0),
    ]
    for ax, title, series, scale in panels:
        drawn = 0
        for key, label in series:
            values = h.columns.get(key)
            if values is None or np.all(np.isnan(values)):
                continue
            style = "--" if "t2i" in key else "-"
            ax.plot(h.x, values * scale, style, marker="o", markersize=3, label=label)
            drawn += 1
        ax.set_title(title)
        ax.set_xlabel("epoch (stage I, then stage II)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        if h.boundary is not None:
            ax.axvline(h.boundary, color="grey", linestyle=":", linewidth=1.5)
            ax.text(h.boundary, 1.0, " stage II →", transform=ax.get_xaxis_transform(), ha="left", va="top",
                    fontsize=8, color="grey")
    fig.suptitle(f"training history — {run.name}")
    return save_png(fig, run / CURVES)


def choose_examples(ranks: np.ndarray, n_success: int = 4, n_failure: int = 2) -> list[int]:
    """Deterministic query choice: up to ``n_success`` captions whose image is rank 1 and
    ``n_failure`` where it is not, each spread evenly over the caption order; a short kind is
    topped up from the other so that min(n_success + n_failure, M) captions are returned.
    ranks int [M] (1-based t2i ranks) → caption indices, successes first."""
    ranks = np.asarray(ranks)
    hits = np.flatnonzero(ranks == 1)
    misses = np.flatnonzero(ranks != 1)
    total = min(n_success + n_failure, len(ranks))
    n_hit = min(len(hits), max(n_success, total - len(misses)))
    n_miss = min(len(misses), total - n_hit)

    def spread(candidates: np.ndarray, n: int) -> list[int]:
        if n <= 0:
            return []
        if len(candidates) <= n:
            return [int(c) for c in candidates]
        return [int(candidates[i]) for i in np.linspace(0, len(candidates) - 1, n).round().astype(int)]

    return spread(hits, n_hit) + spread(misses, n_miss)


def caption_ranks(image_feats: np.ndarray, text_feats: np.ndarray, caption_image: np.ndarray,
                  chunk: int = 2048) -> np.ndarray:
    """Text→image rank of each caption (1-based, ties pessimistic), ``chunk`` captions at a time so
    that the [N, M] score matrix is never built whole (COCO 5K: 500 MB).
    image_feats [N, D], text_feats [M, D], caption_image int [M] → int [M]."""
    from dpcnn.metrics import ranks_t2i

    parts = [ranks_t2i(image_feats @ text_feats[c:c + chunk].T, caption_image[c:c + chunk])
             for c in range(0, len(text_feats), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, np.intp)


def load_thumbnail(path: str, size: int = 256) -> np.ndarray:
    """An RGB uint8 [h, w, 3] preview of an image (a grey square if it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            return np.asarray(im)
    except OSError as e:
        log.warning("cannot show %s: %s", path, e)
        return np.full((size // 4, size // 4, 3), 128, np.uint8)


def frame(ax, color: str) -> None:
    """Hide the ticks of an image axis and draw its border in ``color``."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(4)


def plot_examples(run: Path, stage: int | None = None, split: str = "test", out: Path | None = None, *,
                  features: tuple | None = None, n_success: int = 4, n_failure: int = 2, k: int = 5) -> Path:
    """A grid of text queries of ``split`` with their top-k images (ground truth framed green,
    others red, cosine scores as titles): ``n_success`` queries whose own image is rank 1 and
    ``n_failure`` where it is not (:func:`choose_examples`). Default file: the stage's examples.png.

    ``features``: (SplitArrays, image feats float [N, D], text feats float [M, D]) already encoded;
    without it the split is encoded here.
    """
    run = Path(run)
    stage = resolve_stage(run, stage)
    arrays, image_feats, text_feats = features if features is not None else _encode(run, stage, split)
    out = Path(out) if out is not None else results_dir(run, stage) / f"examples{_suffix(split)}.png"
    ranks = caption_ranks(image_feats, text_feats, arrays.caption_image)
    chosen = choose_examples(ranks, n_success, n_failure)
    if not chosen:
        raise ValueError(f"the {split} split has no captions to show")
    k = min(k, arrays.num_images)
    fig = new_figure(2.0 * k + 0.5, 0.5 + 2.6 * len(chosen))
    parts = fig.subfigures(len(chosen) + 1, 1, squeeze=False, height_ratios=[0.5] + [2.6] * len(chosen))[:, 0]
    parts[0].suptitle(f"{run.name}, stage {stage}, {split} split: text → image, top {k} "
                      "(true image framed green, others red; titles: cosine score)", fontsize=11)
    for row, c in zip(parts[1:], chosen):
        scores = image_feats @ text_feats[c]
        top = np.argsort(-scores, kind="stable")[:k]
        truth = int(arrays.caption_image[c])
        verdict = "hit: true image at rank 1" if ranks[c] == 1 else f"miss: true image at rank {int(ranks[c])}"
        caption = textwrap.shorten(arrays.captions[c] if arrays.captions else f"caption {c}", 110)
        row.suptitle(f"“{caption}” — {verdict}", fontsize=9)
        axes = row.subplots(1, k, squeeze=False)[0]
        for ax, i in zip(axes, top):
            ax.imshow(load_thumbnail(str(arrays.paths[i])))
            ax.set_title(f"{scores[i]:.3f}", fontsize=9)
            frame(ax, "green" if i == truth else "red")
    return save_png(fig, out)


def _encode(run: Path, stage: int, split: str) -> tuple:
    from dpcnn.encoders import Encoders
    from dpcnn.evaluation import encode_split
    from dpcnn.training import load_trained

    cfg, model, data = load_trained(run, stage)
    arrays = data.splits[split]
    encoders = Encoders(model.image_encoder, model.text_encoder, cfg)
    image_feats, text_feats = encode_split(encoders, arrays, progress=False, name=split)
    return arrays, image_feats, text_feats
