"""Alt-text suggestions: for each image, the nearest existing captions (``dpcnn alt-text``:
:mod:`dpcnn.commands.alt_text`).

This *retrieves* captions from a corpus (default: the model's own training captions; or
``--captions FILE``) by the cosine of the joint embedding; it does not write new sentences. Images
come from a folder (recursive), a CSV file whose ``path`` column (or first column) names them,
relative to the CSV, or the web (:mod:`dpcnn.web_images`: a page's ``<img>`` without alt, a crawl
export of image URLs). The output CSV has one row per suggestion — :data:`COLUMNS` for local
images, :data:`WEB_COLUMNS` (the page and image URL first) for web images — and one row with an
``error`` for each image that could not be read or fetched (never fatal). ``--html`` writes a page
of thumbnails beside their suggestions. Image features are cached beside the images
(``.dpcnn-cache``; web images: in the fetch cache), so a second run only encodes what changed.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dpcnn.data.images import IMAGE_SUFFIXES, find_images
from dpcnn.errors import DataNotFoundError, SearchError
from dpcnn.search import CACHE_DIR
from dpcnn.utils import atomic_write_text, spreadsheet_safe

log = logging.getLogger(__name__)

COLUMNS = ("path", "rank", "caption", "score", "error")
"""The CSV of local images (``--images``)."""
WEB_COLUMNS = ("page_url", "image_url", "path", "rank", "caption", "score", "error")
"""The CSV of web images (``--page``, ``--urls``): ``path`` is the fetched (cached) file."""
PATH_COLUMNS = ("path", "image", "file", "filename", "image_path", "file_path")
"""Header names (any case) of the column that names the images in an ``--images`` CSV."""

URLS_HINT = "for a web page use --page URL; for a CSV of image URLs use --urls FILE.csv --url-column NAME"


@dataclass(frozen=True)
class ImageItem:
    """One image to suggest for: a local file (``path``), where it came from on the web
    (``page_url``, ``image_url``), or why it cannot be read (``error``)."""

    path: str = ""
    page_url: str = ""
    image_url: str = ""
    error: str = ""


def _looks_like_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


def _is_header(first: str, rest: list[str], base: Path) -> bool:
    """Whether a CSV's first cell is a column name: it names no image file (no image suffix, no
    such file) while a later row does."""
    def names_image(cell: str) -> bool:
        return cell.lower().endswith(IMAGE_SUFFIXES) or (base / cell).is_file()

    return bool(first) and not names_image(first) and any(names_image(c) for c in rest if c)


def read_image_list(images: str | os.PathLike) -> tuple[list[ImageItem], Path]:
    """The images of a folder or a CSV file, and the folder their feature cache goes to.

    A CSV's images are in its column named path/image/file/filename/image_path/file_path (any
    case), else its first column; the first row is a header when it has such a name, or when its
    first cell names no image file while later rows do. Paths are relative to the CSV. A row with
    an empty cell is an item with an error; URLs are an error that points to ``--urls``.
    """
    if _looks_like_url(str(images)):
        raise SearchError(f"--images takes a local folder or CSV file, not a URL ({images}): {URLS_HINT}")
    images = Path(images)
    if images.is_dir():
        return [ImageItem(p) for p in find_images(images)], images / CACHE_DIR
    if not images.is_file():
        raise DataNotFoundError(f"--images {images}: no such folder or CSV file")
    with open(images, newline="", encoding="utf-8-sig") as f:
        rows = [(line, r) for line, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
    if not rows:
        raise SearchError(f"{images} lists no images")
    base = images.parent
    header = [c.strip().lower() for c in rows[0][1]]
    named = [i for i, c in enumerate(header) if c in PATH_COLUMNS]
    column = named[0] if named else 0

    def cell(row: list[str]) -> str:
        return row[column].strip() if column < len(row) else ""

    if named or _is_header(cell(rows[0][1]), [cell(r) for _, r in rows[1:]], base):
        name = rows[0][1][column].strip()
        log.log(logging.DEBUG if named else logging.INFO, "%s: the first row is a header; images from its column %r",
                images, name)
        body = rows[1:]
    else:
        name, body = "", rows
    urls = [cell(r) for _, r in body if _looks_like_url(cell(r))]
    if urls:
        column_hint = f"--url-column {name!r}" if name else "--url-column NAME (the CSV needs a header row)"
        raise SearchError(f"{images} lists image URLs (e.g. {urls[0]}), not local files: use --urls {images} "
                          f"{column_hint} to fetch them")
    items = [ImageItem(str((base / cell(r)).resolve())) if cell(r) else
             ImageItem(error=f"empty path cell (line {line} of {images.name})") for line, r in body]
    return items, base / CACHE_DIR


def suggest_items(embedder, items: list[ImageItem], cache_dir: Path, corpus, k: int = 3, progress: bool = True
                  ) -> list[dict]:
    """Rows of :data:`WEB_COLUMNS` (and ``item``: the index of the item): the k nearest corpus
    captions of every readable image, one row with the ``error`` for each other, in input order."""
    from dpcnn.search import encode_image_files

    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")
    readable = list(dict.fromkeys(item.path for item in items if item.path and not item.error))
    gallery = encode_image_files(embedder, readable, cache_dir, progress=progress)
    features = dict(zip(gallery.paths, gallery.features))
    errors = dict(gallery.skipped)
    rows = []
    for index, item in enumerate(items):
        where = {"item": index, "page_url": item.page_url, "image_url": item.image_url, "path": item.path}
        error = item.error or errors.get(item.path, "") or ("" if item.path else "no image file")
        if error:
            rows.append({**where, "rank": "", "caption": "", "score": "", "error": error})
            continue
        for rank, (score, i) in enumerate(embedder.search(features[item.path], corpus.features, k), start=1):
            rows.append({**where, "rank": rank, "caption": corpus.captions[i], "score": f"{score:.4f}", "error": ""})
    return rows


def suggest(embedder, paths: list[str], cache_dir: Path, corpus, k: int = 3, progress: bool = True) -> list[dict]:
    """:func:`suggest_items` for image files."""
    return suggest_items(embedder, [ImageItem(p) for p in paths], cache_dir, corpus, k, progress)


def top_suggestions(rows: list[dict], n_items: int) -> list[str | None]:
    """The rank-1 caption of each item (None where its image could not be read)."""
    top: list[str | None] = [None] * n_items
    for row in rows:
        if row["rank"] == 1:
            top[row["item"]] = row["caption"]
    return top


def write_csv(rows: list[dict], out: Path, columns: tuple[str, ...] = COLUMNS) -> Path:
    """The rows as CSV with ``columns`` (other keys of the rows are left out)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)  # no formulas
    atomic_write_text(out, buf.getvalue())
    return out


def write_html(rows: list[dict], out: Path, title: str) -> Path:
    """A page with each image's thumbnail beside its suggestions (local and cached images linked
    relative to the page; a web image that was not fetched by its URL)."""
    by_image: dict[object, list[dict]] = {}
    for row in rows:
        by_image.setdefault(row.get("item", row["path"]), []).append(row)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td{vertical-align:top;padding:.4em}"
             "img{max-width:12em;max-height:12em}.s{color:#777}.e{color:#b00}</style>",
             f"<h1>{html.escape(title)}</h1><p>Suggestions are the nearest <em>existing</em> captions "
             "(retrieval, not generation), with their cosine scores.</p><table>"]
    for items in by_image.values():
        first = items[0]
        path, url = first["path"], first.get("image_url", "")
        src = os.path.relpath(path, out.parent) if path else url if _looks_like_url(url) else ""
        label = html.escape(url or Path(path).name)
        if first.get("page_url"):
            label += f"<br>on {html.escape(first['page_url'])}"
        if first["error"]:
            cell = f"<span class='e'>not read: {html.escape(first['error'])}</span>"
        else:
            cell = "<ol>" + "".join(f"<li>{html.escape(r['caption'])} <span class='s'>{r['score']}</span></li>"
                                    for r in items) + "</ol>"
        thumb = f"<img src='{html.escape(src)}' alt=''>" if src else ""
        parts.append(f"<tr><td>{thumb}</td><td><small>{label}</small>{cell}</td></tr>")
    parts.append("</table>")
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
