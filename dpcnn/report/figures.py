"""The pictures of a run: training curves, retrieval examples, search results (matplotlib, Agg canvas,
no pyplot state; every PNG is written atomically).

    DIR/curves.png     the training history of both stages on one epoch axis
    DIR/examples.png   text queries of the split with their top-5 images (stage I: stage1/)
"""

from __future__ import annotations

import csv
import io
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpcnn.errors import RunError
from dpcnn.utils import atomic_write_bytes

log = logging.getLogger(__name__)


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
        raise RunError(f"no training history at {path}: train the run first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RunError(f"{path} has no epochs yet: train the run for at least one epoch")

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


def plot_history(run) -> Path:
    """``DIR/curves.png`` of a :class:`dpcnn.run.Run`: losses, instance accuracy per branch,
    validation R@K and rsum per epoch, stage I and II on one epoch axis with a line at the boundary."""
    from matplotlib.ticker import MaxNLocator


    h = read_history(run.history_path)
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
    fig.suptitle(f"training history — {run.path.name}")
    return save_png(fig, run.curves_path)


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


def plot_examples(run, stage: int, split: str, arrays, image_feats: np.ndarray, text_feats: np.ndarray, *,
                  out: Path | None = None, n_success: int = 4, n_failure: int = 2, k: int = 5,
                  by_identity: bool = False) -> Path:
    """A grid of text queries of ``split`` with their top-k images (ground truth framed green,
    others red, cosine scores as titles): ``n_success`` queries whose own image is rank 1 and
    ``n_failure`` where it is not (:func:`choose_examples`). Default file: the stage's examples.png.

    arrays: the split's SplitArrays; image_feats float [N, D], text_feats float [M, D].
    by_identity: frame green every image of the caption's identity (the ``class`` protocol: an
    emoji's other rendering is a hit too), not only its own image.
    """
    out = Path(out) if out is not None else run.examples_path(stage, split)
    ranks = caption_ranks(image_feats, text_feats, arrays.caption_image)
    chosen = choose_examples(ranks, n_success, n_failure)
    if not chosen:
        raise ValueError(f"the {split} split has no captions to show")
    k = min(k, arrays.num_images)
    truth_label = "images of the caption's class" if by_identity else "true image"
    fig = new_figure(2.0 * k + 0.5, 0.5 + 2.6 * len(chosen))
    parts = fig.subfigures(len(chosen) + 1, 1, squeeze=False, height_ratios=[0.5] + [2.6] * len(chosen))[:, 0]
    parts[0].suptitle(f"{run.path.name}, stage {stage}, {split} split: text → image, top {k} "
                      f"({truth_label} framed green, others red; titles: cosine score)", fontsize=11)
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
            hit = arrays.identities[i] == arrays.identities[truth] if by_identity else i == truth
            frame(ax, "green" if hit else "red")
    return save_png(fig, out)


def draw_text_results(text: str, results: list[tuple[float, str]], out: Path) -> Path:
    """A PNG of a query caption over its top-k images [(score, path)], scores as titles."""
    fig = new_figure(2.2 * len(results) + 0.5, 3.0)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for rank, (ax, (score, path)) in enumerate(zip(axes, results), start=1):
        ax.imshow(load_thumbnail(path))
        ax.set_title(f"#{rank}  {score:.3f}", fontsize=9)
        ax.set_xlabel(textwrap.shorten(Path(path).name, 28), fontsize=7)
        frame(ax, "black")
    fig.suptitle(f"“{textwrap.shorten(text, 120)}”", fontsize=11)
    return save_png(fig, out)


def draw_image_results(image: str | Path, results: list[tuple[float, str]], out: Path) -> Path:
    """A PNG of a query image beside its top-k captions [(score, caption)]."""
    fig = new_figure(11, max(3.0, 0.5 * len(results) + 1))
    left, right = fig.subplots(1, 2, width_ratios=[1, 3])
    left.imshow(load_thumbnail(str(image)))
    left.set_title(textwrap.shorten(Path(image).name, 30), fontsize=9)
    frame(left, "black")
    right.axis("off")
    text = "\n".join(f"#{r}  {s:.3f}  {textwrap.shorten(c, 90)}" for r, (s, c) in enumerate(results, start=1))
    right.text(0.0, 1.0, text, va="top", ha="left", fontsize=9, family="monospace", transform=right.transAxes)
    fig.suptitle("image → text", fontsize=11)
    return save_png(fig, out)
