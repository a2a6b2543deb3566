"""``dpcnn search``: one query against a gallery (text → image) or a caption corpus (image → text),
printed as a table or JSON, optionally drawn. The galleries, corpora and their caches are
:mod:`dpcnn.search`.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpcnn.errors import SearchError
from dpcnn.search import (
    caption_corpus,
    folder_gallery,
    format_table,
    query_image,
    query_text,
    test_gallery,
    top,
)


def search_command(model: str, text: str | None = None, image: str | None = None, gallery: str | None = None,
                   captions: str | None = None, k: int = 5, out: str | None = None, as_json: bool = False,
                   stage: int | None = None, is_run: bool = False) -> str:
    """``dpcnn search`` → the text to print (a table, or JSON with ``as_json``)."""
    from dpcnn.export import load
    from dpcnn.report.figures import draw_image_results, draw_text_results

    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")
    embedder = load(model, stage)
    lines: list[str] = []
    if text is not None:
        if captions:
            raise SearchError("--captions is the corpus of --image searches; --text searches a --gallery of images")
        if not gallery and not is_run:
            raise SearchError("--gallery DIR is needed: an export has no images of its own to search")
        query = query_text(embedder, text)  # a query without a known word fails before any image is read
        if gallery:
            g = folder_gallery(embedder, gallery, progress=not as_json)
        else:
            from dpcnn.run import Run

            run = Run.open(model)
            g = test_gallery(run, run.resolve_stage(stage), embedder=embedder)
        results = top(query, g.features, g.paths, k)
        if as_json:
            return json.dumps({"query": text, "gallery": g.source, "results": [{"score": s, "image": p} for s, p in results],
                               "skipped": [{"image": p, "reason": r} for p, r in g.skipped]}, indent=2)
        lines.append(f'text → image: "{text}" — gallery: {g.source}'
                     f"{f', {len(g.paths) - g.encoded} from the cache' if g.encoded < len(g.paths) else ''}")
        if g.skipped:
            lines.append(f"skipped {len(g.skipped)} file(s) that could not be read:")
            lines += [f"  {p}: {r}" for p, r in g.skipped]
        lines.append(format_table(results, "image"))
        if out:
            lines.append(f"wrote {draw_text_results(text, results, Path(out))}")
        return "\n".join(lines)
    if gallery:
        raise SearchError("--gallery is for --text searches; --image searches captions (--captions FILE)")
    corpus = caption_corpus(embedder, captions)
    results = top(query_image(embedder, image), corpus.features, corpus.captions, k)
    if as_json:
        return json.dumps({"query": str(image), "captions": corpus.source,
                           "results": [{"score": s, "caption": c} for s, c in results]}, indent=2)
    lines.append(f"image → text: {image} — captions: {corpus.source}")
    lines.append(format_table(results, "caption"))
    if out:
        lines.append(f"wrote {draw_image_results(image, results, Path(out))}")
    return "\n".join(lines)
