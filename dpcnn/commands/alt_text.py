"""``dpcnn alt-text``: suggestions for a folder or CSV of images (``--images``), the ``<img>`` of a
web page that lack alt text (``--page``), or a crawl export of image URLs (``--urls``), written as
CSV (and HTML reports, and with ``--write-html`` a copy of the page with its empty alt filled).
The suggestions are :mod:`dpcnn.alt_text`; finding and fetching web images :mod:`dpcnn.web_images`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from dpcnn.alt_text import (
    COLUMNS,
    WEB_COLUMNS,
    ImageItem,
    read_image_list,
    suggest_items,
    top_suggestions,
    write_csv,
    write_html,
)
from dpcnn.errors import SearchError
from dpcnn.search import caption_corpus
from dpcnn.web_images import (
    WEB_CACHE_DIR,
    FetchLimits,
    fetch_images,
    fill_alt,
    images_without_alt,
    read_page,
    read_url_csv,
    write_page,
)


def _category(reason: str) -> str:
    """A reason without its details: "HTTP 404 (Not Found)" → "HTTP 404", "corrupt image: …" → "corrupt image"."""
    return reason.split(" (")[0].split(": ")[0]


def _counts(rows: list[dict]) -> str:
    counts = Counter(_category(r["error"]) for r in rows if r["error"])
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common())


def _check_options(images, page, urls, url_column, page_column, write_html_out, out, timeout, max_bytes,
                   write_page_report) -> None:
    if sum(x is not None for x in (images, page, urls)) != 1:
        raise SearchError("give exactly one of --images DIR|FILE.csv, --page FILE|URL, --urls FILE.csv")
    if (url_column or page_column) and urls is None:
        raise SearchError("--url-column and --page-column go with --urls FILE.csv")
    if images is not None and (timeout is not None or max_bytes is not None):
        raise SearchError("--timeout and --max-bytes limit fetches from the web: they go with --page or --urls")
    if write_html_out and page is None:
        raise SearchError("--write-html OUT writes a copy of the page of --page: give --page FILE|URL")
    if write_html_out and page is not None and os.path.exists(write_html_out) and os.path.exists(page) \
            and os.path.samefile(write_html_out, page):
        raise SearchError(f"--write-html {write_html_out} would overwrite the page itself: write the copy elsewhere")
    taken = [Path(out).resolve()] + ([Path(out).with_suffix(".html").resolve()] if write_page_report else [])
    if write_html_out and Path(write_html_out).resolve() in taken:
        raise SearchError(f"--write-html {write_html_out} is also the file of --out"
                          + (" or --html" if write_page_report else "") + ": write the copy of the page elsewhere")


def alt_text_command(model: str, images: str | None = None, out: str = "alt.csv", captions: str | None = None, k: int = 3,
                     write_page_report: bool = False, stage: int | None = None, page: str | None = None,
                     urls: str | None = None, url_column: str | None = None, page_column: str | None = None,
                     write_html_out: str | None = None, timeout: float | None = None, max_bytes: int | None = None
                     ) -> str:
    """``dpcnn alt-text`` → a summary to print. The inputs are read (and web images fetched) before
    the model loads, so a bad page or CSV is reported at once. ``timeout``/``max_bytes``: None for
    :class:`FetchLimits`' defaults (10 s, 20 MB)."""
    from dpcnn.export import load

    _check_options(images, page, urls, url_column, page_column, write_html_out, out, timeout, max_bytes,
                   write_page_report)
    out = Path(out)
    notes: list[str] = []
    web_page = None
    refs = []
    if images is not None:
        items, cache_dir = read_image_list(images)
        if not items:
            raise SearchError(f"no image files in {images}")
        source, columns = str(images), COLUMNS
    else:
        given = {"timeout": timeout, "max_bytes": max_bytes}
        limits = FetchLimits(**{name: value for name, value in given.items() if value is not None})
        cache_dir = out.parent / WEB_CACHE_DIR
        if page is not None:
            web_page = read_page(page, limits)
            refs, with_alt = images_without_alt(web_page)
            source = web_page.url
            notes.append(f"{len(refs) + with_alt} <img> on {source}: {with_alt} already have alt text (left alone), "
                         f"{len(refs)} have none or an empty one")
            if not refs:
                raise SearchError(f"every <img> on {source} already has alt text ({with_alt}): nothing to suggest"
                                  if with_alt else f"{source} has no <img> element")
        else:
            refs, used_page_column = read_url_csv(urls, url_column, page_column)
            source = str(urls)
            if not refs:
                raise SearchError(f"{urls} lists no image URLs")
            notes.append(f"{len(refs)} rows of {urls}" + (f" (pages from the column {used_page_column!r})"
                                                          if used_page_column else " (no page URL column)"))
        fetched, fetched_now = fetch_images([r.image_url for r in refs if not r.reason], cache_dir, limits,
                                            allow_files=web_page is not None and web_page.local, progress=True)
        items = []
        for r in refs:
            path, error = ("", r.reason) if r.reason else fetched[r.image_url]
            items.append(ImageItem(path, r.page_url, r.image_url, error))
        local = web_page is not None and web_page.local
        notes.append(f"{len(fetched)} distinct image URLs: {fetched_now} fetched now, {len(fetched) - fetched_now} "
                     f"from the cache {cache_dir}" + (" or local files" if local else ""))
        columns = WEB_COLUMNS
    embedder = load(model, stage)
    corpus = caption_corpus(embedder, captions, progress=True)
    rows = suggest_items(embedder, items, cache_dir, corpus, k)
    written = [write_csv(rows, out, columns)]
    if write_page_report:
        written.append(write_html(rows, out.with_suffix(".html"), f"Alt-text suggestions for {source}"))
    if write_html_out:
        filled = fill_alt(refs, top_suggestions(rows, len(items)))
        written.append(write_page(web_page, write_html_out))
        notes.append(f"{filled} empty alt filled with the top suggestion in {write_html_out} "
                     f"({len(refs) - filled} left empty: their image could not be read)")
    failed_items = len({r["item"] for r in rows if r["error"]})
    return "\n".join([
        *notes,
        f"{len(items) - failed_items} images with {k} suggestion(s) each from {corpus.source}"
        + (f"; {failed_items} could not be read (listed with the reason): {_counts(rows)}" if failed_items else ""),
        *[f"wrote {p}" for p in written],
        "These are existing captions retrieved by similarity, not generated descriptions: review them before use.",
    ])
