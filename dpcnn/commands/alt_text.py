"""``dpcnn alt-text``: suggestions for a folder or CSV of images, written as CSV (and HTML).
The suggestions themselves are :mod:`dpcnn.alt_text`.
"""

from __future__ import annotations

from pathlib import Path

from dpcnn.alt_text import read_image_list, suggest, write_csv, write_html
from dpcnn.errors import SearchError
from dpcnn.search import caption_corpus


def alt_text_command(model: str, images: str, out: str, captions: str | None = None, k: int = 3,
                     write_page: bool = False, stage: int | None = None) -> str:
    """``dpcnn alt-text`` → a summary to print."""
    from dpcnn.export import load

    embedder = load(model, stage)
    paths, cache_dir = read_image_list(images)
    if not paths:
        raise SearchError(f"no image files in {images}")
    corpus = caption_corpus(embedder, captions, progress=True)
    rows = suggest(embedder, paths, cache_dir, corpus, k)
    out = Path(out)
    written = [write_csv(rows, out)]
    if write_page:
        written.append(write_html(rows, out.with_suffix(".html"), f"Alt-text suggestions for {images}"))
    failed = sum(1 for r in rows if r["error"])
    return "\n".join([
        f"{len(paths) - failed} images with {k} suggestion(s) each from {corpus.source}"
        + (f"; {failed} could not be read (listed with the reason)" if failed else ""),
        *[f"wrote {p}" for p in written],
        "These are existing captions retrieved by similarity, not generated descriptions: review them before use.",
    ])
