"""Retrieval: text → image over a gallery, image → text over a caption corpus (``dpcnn search``:
:mod:`dpcnn.commands.search`).

The model is a run folder (``--run DIR``) or an export (``--model EXPORT``); either becomes an
:class:`dpcnn.embedder.Embedder`. Galleries: a folder of your images (searched recursively; files
that cannot be read are reported and skipped) or, for a run, its test split. Corpora: a captions
file (one caption a line, or a COCO-format JSON file) or, by default, the model's own training
captions. A query caption is tokenised with the model's vocabulary; out-of-vocabulary words are
dropped (PAPER_SPEC §2.1) and a caption with none left is an error that lists its tokens.

Features of gallery images are cached beside the gallery in ``.dpcnn-cache/<model>.npz``, keyed on
each file's content (sha256) and on the model, so a second search encodes only new or changed
files; caption corpora are cached the same way beside the captions file (or in the run/export).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpcnn.data.images import check_images, find_images
from dpcnn.errors import SearchError
from dpcnn.utils import atomic_write_bytes, sha256_files

log = logging.getLogger(__name__)

CACHE_DIR = ".dpcnn-cache"


@dataclass
class Gallery:
    """Encoded images: paths [N], features float32 [N, D]; skipped [(path, reason)] could not be read."""

    paths: list[str]
    features: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    encoded: int = 0
    """How many images were encoded now (the others came from the cache)."""


@dataclass
class Corpus:
    """Encoded captions: captions [M], features float32 [M, D]; dropped: captions with no known word."""

    captions: list[str]
    features: np.ndarray
    dropped: int = 0
    source: str = ""


# --------------------------------------------------------------------------------------------
# Content-keyed feature caches
# --------------------------------------------------------------------------------------------


def content_hash(path: str) -> str:
    return sha256_files(path)


def _load_cache(path: Path) -> dict[str, np.ndarray | str]:
    """{content hash: feature [D] or failure reason str} from a cache file (empty if absent/unreadable)."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict = dict(zip(z["keys"].tolist(), z["features"]))
            out.update(zip(z["bad_keys"].tolist(), z["bad_reasons"].tolist()))
            return out
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring the unreadable feature cache %s (%s)", path, e)
        return {}


def _save_cache(path: Path, entries: dict, dim: int) -> None:
    good = {k: v for k, v in entries.items() if not isinstance(v, str)}
    bad = {k: v for k, v in entries.items() if isinstance(v, str)}
    buf = io.BytesIO()
    np.savez(buf, keys=np.asarray(list(good), dtype=str),
             features=np.asarray(list(good.values()), np.float32).reshape(-1, dim),
             bad_keys=np.asarray(list(bad), dtype=str), bad_reasons=np.asarray(list(bad.values()), dtype=str))
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:  # a read-only gallery: search still works, only slower next time
        log.warning("cannot write the feature cache %s (%s): features are not kept", path, e)


def encode_image_files(embedder, paths: list[str], cache_dir: Path, progress: bool = False) -> Gallery:
    """Features of image files, reusing the cache in ``cache_dir`` (keyed on content and model);
    unreadable files are reported in ``skipped`` with a readable reason, never fatal."""
    cache_path = Path(cache_dir) / f"{embedder.identity or 'model'}.npz"
    cached = _load_cache(cache_path)
    keys = [content_hash(p) if os.path.isfile(p) else f"missing:{p}" for p in paths]
    todo = [i for i, k in enumerate(keys) if k not in cached]
    if todo:
        good, bad = check_images([paths[i] for i in todo], progress=progress)
        small = [j for j, info in good.items() if min(info.height, info.width) < 64]
        least = embedder.smallest_side() if small and hasattr(embedder, "smallest_side") else 1
        for j in small:
            if min(good[j].height, good[j].width) < least:
                info = good.pop(j)
                bad[j] = f"too small ({info.width}x{info.height} px; this model needs at least {least} px a side)"
        for j, reason in bad.items():
            cached[keys[todo[j]]] = reason
        order = sorted(good)
        if order:
            sizes = np.asarray([[good[j].height, good[j].width] for j in order])
            feats = embedder.encode_image_files([paths[todo[j]] for j in order], sizes, progress=progress)
            for j, f in zip(order, feats):
                cached[keys[todo[j]]] = f
        _save_cache(cache_path, {k: cached[k] for k in set(keys) if not k.startswith("missing:")}, embedder.dim)
    kept = [i for i, k in enumerate(keys) if not isinstance(cached[k], str)]
    features = np.asarray([cached[keys[i]] for i in kept], np.float32).reshape(-1, embedder.dim)
    skipped = [(paths[i], str(cached[k])) for i, k in enumerate(keys) if isinstance(cached[k], str)]
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    return Gallery([paths[i] for i in kept], features, skipped, encoded=len(todo))


# --------------------------------------------------------------------------------------------
# Galleries and corpora
# --------------------------------------------------------------------------------------------


def folder_gallery(embedder, folder: str | os.PathLike, progress: bool = False) -> Gallery:
    """Every image under ``folder`` (recursive), cached in ``folder/.dpcnn-cache``."""
    paths = find_images(folder)
    if not paths:
        raise SearchError(f"no image files under {folder}")
    gallery = encode_image_files(embedder, paths, Path(folder) / CACHE_DIR, progress)
    if not gallery.paths:
        path, reason = gallery.skipped[0]
        raise SearchError(f"none of the {len(paths)} image files under {folder} could be read (e.g. {path}: {reason})")
    gallery.source = f"{folder} ({len(paths)} image files)"
    return gallery


def test_gallery(run, stage: int, progress: bool = False, embedder=None) -> Gallery:
    """A run's test split (needs its prepared data: ``dpcnn prepare`` re-creates it from the dataset);
    ``embedder``: the run's embedder of ``stage`` if the caller has it (else it is built on a cache miss)."""
    from dpcnn.data.prepare import ensure_prepared

    test = ensure_prepared(run.config, progress=progress, need=("test",)).splits["test"]
    if test.num_images == 0:
        raise SearchError(f"the prepared data of {run.path} has no test images: pass --gallery DIR")
    images, _ = run.split_features(stage, test, "test", embedder=embedder, progress=progress)
    return Gallery([str(p) for p in test.paths], images, source=f"test split ({test.num_images} images)")


def read_captions(path: str | os.PathLike) -> list[str]:
    """Captions from a file: one a line (blank lines skipped), or every caption of a COCO-format JSON file."""
    from dpcnn.errors import DataNotFoundError

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"captions file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
            return [str(a["caption"]) for a in obj["annotations"] if isinstance(a, dict) and isinstance(a.get("caption"), str)]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SearchError(f"{path} is not a COCO-format captions file ({e}); give one caption a line instead") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def caption_corpus(embedder, captions_file: str | os.PathLike | None = None, progress: bool = False) -> Corpus:
    """The captions of ``captions_file`` (default: the model's training captions), encoded and cached."""
    path = Path(captions_file) if captions_file else embedder.captions_file
    if path is None:
        raise SearchError("this model has no caption corpus of its own: pass --captions FILE")
    captions = read_captions(path)
    tokens, lengths = embedder.tokenize(captions)
    keep = np.flatnonzero(lengths > 0)
    if keep.size == 0:
        raise SearchError(f"none of the {len(captions)} captions in {path} has a word of the model's vocabulary")
    key = hashlib.sha256(tokens[keep].tobytes()).hexdigest()[:16]
    cache = path.parent / CACHE_DIR / f"{path.name}-{embedder.identity or 'model'}-{key}.npy"
    if cache.is_file():
        features = np.load(cache, allow_pickle=False)
    else:
        features = embedder.encode_tokens(tokens[keep], progress=progress, desc="captions")
        buf = io.BytesIO()
        np.save(buf, features, allow_pickle=False)
        try:
            atomic_write_bytes(cache, buf.getvalue())
        except OSError as e:
            log.warning("cannot write the feature cache %s (%s)", cache, e)
    if len(keep) < len(captions):
        log.info("%d of the %d captions of %s have no word in the vocabulary: left out", len(captions) - len(keep),
                 len(captions), path)
    return Corpus([captions[i] for i in keep], features, len(captions) - len(keep), f"{path} ({len(keep)} captions)")


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


def query_text(embedder, text: str) -> np.ndarray:
    """A caption → its feature [D]; the tokens left out of the vocabulary are logged."""
    dropped = [t for t in embedder.vocab.tokenize(text) if t not in embedder.vocab]
    if dropped:
        log.info("query words not in the vocabulary (ignored): %s", dropped)
    return embedder.encode_texts([text])[0]


def query_image(embedder, path: str | os.PathLike) -> np.ndarray:
    """An image file → its feature [D]; SearchError if it cannot be read."""
    path = str(Path(path).resolve())
    good, bad = check_images([path], progress=False)
    if 0 in bad:
        raise SearchError(f"cannot use the query image {path}: {bad[0]}")
    h, w = good[0].height, good[0].width
    least = embedder.smallest_side() if min(h, w) < 64 and hasattr(embedder, "smallest_side") else 1
    if min(h, w) < least:
        raise SearchError(f"cannot use the query image {path}: too small ({w}x{h} px; this model needs at least "
                          f"{least} px a side)")
    return embedder.encode_image_files([path], np.asarray([[h, w]]))[0]


def top(query: np.ndarray, features: np.ndarray, items: list[str], k: int) -> list[tuple[float, str]]:
    """The k items most similar to ``query``: [(cosine, item)], best first."""
    from dpcnn.embedder import Embedder

    return [(score, items[i]) for score, i in Embedder.search(query, features, k)]


def format_table(results: list[tuple[float, str]], what: str) -> str:
    """rank / score / item as aligned text."""
    lines = [f"{'rank':>4}  {'score':>7}  {what}"]
    lines += [f"{r:>4}  {s:>7.4f}  {item}" for r, (s, item) in enumerate(results, start=1)]
    return "\n".join(lines)
