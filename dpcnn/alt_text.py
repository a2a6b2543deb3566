"""Alt-text suggestions: for each image, the nearest existing captions (``dpcnn alt-text``:
:mod:`dpcnn.commands.alt_text`).

This *retrieves* captions from a corpus (default: the model's own training captions; or
``--captions FILE``) by the cosine of the joint embedding; it does not write new sentences. Images
come from a folder (recursive) or a CSV file whose ``path`` column (or first column) names them,
relative to the CSV. The output CSV has one row per suggestion — ``path, rank, caption, score`` —
and one row with an ``error`` for each image that could not be read (never fatal). ``--html``
writes a page of thumbnails beside their suggestions. Image features are cached beside the
images (``.dpcnn-cache``), so a second run over the same folder only encodes what changed.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
from pathlib import Path

from dpcnn.data.images import find_images
from dpcnn.errors import DataNotFoundError, SearchError
from dpcnn.search import CACHE_DIR
from dpcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ("path", "rank", "caption", "score", "error")


def read_image_list(images: str | os.PathLike) -> tuple[list[str], Path]:
    """Image paths from a folder or a CSV file, and the folder their feature cache goes to."""
    images = Path(images)
    if images.is_dir():
        return find_images(images), images / CACHE_DIR
    if not images.is_file():
        raise DataNotFoundError(f"--images {images}: no such folder or CSV file")
    with open(images, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and r[0].strip()]
    if not rows:
        raise SearchError(f"{images} lists no images")
    column = rows[0].index("path") if "path" in rows[0] else 0
    body = rows[1:] if rows[0][column].strip().lower() in ("path", "image", "file") else rows
    base = images.parent
    return [str((base / r[column].strip()).resolve()) for r in body], base / CACHE_DIR


def suggest(embedder, paths: list[str], cache_dir: Path, corpus, k: int = 3, progress: bool = True) -> list[dict]:
    """Rows of :data:`COLUMNS`: the k nearest corpus captions of every readable image, in input order."""
    from dpcnn.search import encode_image_files

    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")
    gallery = encode_image_files(embedder, paths, cache_dir, progress=progress)
    features = dict(zip(gallery.paths, gallery.features))
    errors = dict(gallery.skipped)
    rows = []
    for path in paths:
        if path in errors:
            rows.append({"path": path, "rank": "", "caption": "", "score": "", "error": errors[path]})
            continue
        for rank, (score, i) in enumerate(embedder.search(features[path], corpus.features, k), start=1):
            rows.append({"path": path, "rank": rank, "caption": corpus.captions[i], "score": f"{score:.4f}", "error": ""})
    return rows


def write_csv(rows: list[dict], out: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return out


def write_html(rows: list[dict], out: Path, title: str) -> Path:
    """A page with each image's thumbnail beside its suggestions (images linked relative to the page)."""
    by_image: dict[str, list[dict]] = {}
    for row in rows:
        by_image.setdefault(row["path"], []).append(row)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td{vertical-align:top;padding:.4em}"
             "img{max-width:12em;max-height:12em}.s{color:#777}.e{color:#b00}</style>",
             f"<h1>{html.escape(title)}</h1><p>Suggestions are the nearest <em>existing</em> captions "
             "(retrieval, not generation), with their cosine scores.</p><table>"]
    for path, items in by_image.items():
        src = html.escape(os.path.relpath(path, out.parent))
        if items[0]["error"]:
            cell = f"<span class='e'>not read: {html.escape(items[0]['error'])}</span>"
        else:
            cell = "<ol>" + "".join(f"<li>{html.escape(r['caption'])} <span class='s'>{r['score']}</span></li>"
                                    for r in items) + "</ol>"
        parts.append(f"<tr><td><img src='{src}' alt=''></td><td><small>{html.escape(Path(path).name)}</small>{cell}</td></tr>")
    parts.append("</table>")
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
