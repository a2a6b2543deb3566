"""``dpcnn search``: text → image over a gallery, image → text over the test captions.

The gallery is the run's test split (default) or a folder of the user's own ``.jpg``/``.jpeg``/
``.png`` images (searched recursively; images that fail to decode are reported and skipped, with
a count). Gallery features are the test-time features of :mod:`dpcnn.encoders` (flip / shifts per
the run's config), computed once and cached in the run folder::

    DIR/gallery/<hash>.npz            image features of a gallery: hash of the file list, each
                                      file's mtime and size, the stage and its weights file
    DIR/gallery/captions-<hash>.npz   features of the test captions (for image → text)

Cache files are written atomically and read with ``allow_pickle=False``. A query caption is
tokenised with the run's vocabulary; out-of-vocabulary words are dropped (PAPER_SPEC §2.1) and a
query with none left is an error that lists its tokens.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpcnn import run_dir as rd
from dpcnn.config import Config
from dpcnn.report import check_run, resolve_stage
from dpcnn.utils import atomic_write_bytes

log = logging.getLogger(__name__)

GALLERY_DIR = "gallery"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


from dpcnn.errors import SearchError  # noqa: E402


@dataclass(frozen=True)
class Gallery:
    """Encoded gallery images: paths str [N], features float32 [N, D] (L2-normalised),
    skipped = ((path, reason), …) for images that could not be decoded."""

    paths: tuple[str, ...]
    features: np.ndarray
    skipped: tuple[tuple[str, str], ...]
    source: str
    cache: Path
    from_cache: bool


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def _stat(path: str, what: str) -> list:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} is missing: it was there when the data was prepared") from None
    return [path, st.st_mtime_ns, st.st_size]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def find_images(folder: Path) -> list[str]:
    """Every .jpg/.jpeg/.png file under ``folder`` (recursively, any case), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"gallery folder {folder} does not exist (or is not a folder)")
    found = sorted(str(p.resolve()) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise SearchError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return found


class Searcher:
    """A trained run loaded once for several queries (the model is built on first use)."""

    def __init__(self, run: str | Path, stage: int | None = None, progress: bool = False):
        from dpcnn.prepare import ensure_prepared

        self.run = Path(run)
        check_run(self.run)
        self.stage = resolve_stage(self.run, stage)
        self.cfg = Config.load(self.run / "config.json")
        self.data = ensure_prepared(self.cfg, progress=progress)
        self.progress = progress
        self._encoders = None

    @property
    def encoders(self):
        """The run's :class:`dpcnn.encoders.Encoders` (test-time features)."""
        if self._encoders is None:
            from dpcnn.encoders import Encoders
            from dpcnn.training import load_trained

            cfg, model, _ = load_trained(self.run, self.stage, data=self.data)
            self._encoders = Encoders(model.image_encoder, model.text_encoder, cfg)
        return self._encoders

    def _key_base(self) -> dict:
        weights = rd.stage_dir(self.run, self.stage) / rd.WEIGHTS
        st = weights.stat()
        e, d = self.cfg.eval, self.cfg.data
        return {"stage": self.stage, "weights": [st.st_mtime_ns, st.st_size],
                "eval": [e.image_mode, e.flip, e.all_shifts, d.resize_shorter, d.resize_square, d.image_size,
                         d.max_len]}

    # -- galleries -----------------------------------------------------------------------------
    def gallery(self, folder: str | Path | None = None) -> Gallery:
        """The encoded test split (``folder=None``) or user folder, from the cache when it is current."""
        if folder is None:
            test = self.data.splits["test"]
            if test.num_images == 0:
                raise SearchError(f"the prepared data of {self.run} has no test images: pass --gallery DIR")
            paths = [str(p) for p in test.paths]
            source = f"test split ({len(paths)} images)"
            files = [_stat(p, "test image") for p in paths]
        else:
            paths = find_images(Path(folder))
            source = f"{folder} ({len(paths)} image files)"
            files = [_stat(p, "gallery image") for p in paths]
        cache = self.run / GALLERY_DIR / f"{_digest({**self._key_base(), 'files': files})}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                skipped = tuple((str(p), str(r)) for p, r in zip(z["skipped_paths"], z["skipped_reasons"]))
                gallery = Gallery(tuple(str(p) for p in z["paths"]), z["features"].astype(np.float32),
                                  skipped, source, cache, True)
            log.info("gallery features from the cache %s", cache)
        else:
            gallery = self._encode_gallery(paths, folder is None, source, cache)
        for path, reason in gallery.skipped:
            log.warning("skipped %s: %s", path, reason)
        return gallery

    def _encode_gallery(self, paths: list[str], is_test: bool, source: str, cache: Path) -> Gallery:
        skipped: list[tuple[str, str]] = []
        if is_test:
            test = self.data.splits["test"]
            keep, sizes = list(paths), test.sizes
        else:
            from dpcnn.data.image_check import check_images

            good, failures = check_images(paths, progress=self.progress)
            skipped = [(paths[i], _short_reason(failures[i])) for i in sorted(failures)]
            keep = [paths[i] for i in sorted(good)]
            sizes = np.asarray([[good[i].height, good[i].width] for i in sorted(good)], np.int32).reshape(-1, 2)
            if not keep:
                raise SearchError(f"none of the {len(paths)} images in {source} could be decoded "
                                  f"(e.g. {skipped[0][0]}: {skipped[0][1]})")
        features = self.encoders.images(np.asarray(keep, dtype=object), sizes, progress=self.progress, desc="gallery")
        _save_npz(cache, features=features.astype(np.float32), paths=np.asarray(keep, dtype=str),
                  skipped_paths=np.asarray([p for p, _ in skipped], dtype=str),
                  skipped_reasons=np.asarray([r for _, r in skipped], dtype=str))
        log.info("gallery features cached in %s", cache)
        return Gallery(tuple(keep), features, tuple(skipped), source, cache, False)

    def caption_features(self) -> np.ndarray:
        """Test-time features of the test captions, float32 [M, D] (cached)."""
        test = self.data.splits["test"]
        if test.num_captions == 0:
            raise SearchError(f"the prepared data of {self.run} has no test captions to search")
        key = {**self._key_base(), "prepared": str(self.data.directory),
               "captions": hashlib.sha256("\n".join(test.captions).encode()).hexdigest()}
        cache = self.run / GALLERY_DIR / f"captions-{_digest(key)}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                return z["features"].astype(np.float32)
        features = self.encoders.texts(test.tokens, test.lengths, progress=self.progress, desc="test captions")
        _save_npz(cache, features=features.astype(np.float32))
        return features

    # -- queries -------------------------------------------------------------------------------
    def encode_query_text(self, text: str) -> np.ndarray:
        """A caption → float32 [D] (test-time feature); SearchError if no word is in the vocabulary."""
        vocab = self.data.vocab
        tokens = vocab.tokenize(text)
        ids, lengths = vocab.encode_many([text], self.cfg.data.max_len)
        if lengths[0] == 0:
            sample = ", ".join(vocab.words[:15])
            raise SearchError(
                f"none of the query's tokens {tokens} is in the vocabulary of {self.run} "
                f"({len(vocab)} words from the training captions, e.g. {sample}): use words of that kind"
            )
        dropped = [t for t in tokens if t not in vocab]
        if dropped:
            log.info("query words not in the vocabulary (ignored): %s", dropped)
        return self.encoders.texts(ids, lengths, progress=False, desc="query")[0]

    def encode_query_image(self, path: str | Path) -> np.ndarray:
        """An image file → float32 [D] (test-time feature); SearchError if it cannot be decoded."""
        from dpcnn.data.image_check import check_images

        path = str(Path(path).resolve())
        if not os.path.isfile(path):
            raise FileNotFoundError(f"query image {path} does not exist")
        good, failures = check_images([path], progress=False)
        if 0 in failures:
            raise SearchError(f"cannot use the query image {path}: {_short_reason(failures[0])}")
        sizes = np.asarray([[good[0].height, good[0].width]], np.int32)
        return self.encoders.images(np.asarray([path], dtype=object), sizes, progress=False, desc="query")[0]

    def text_to_image(self, text: str, k: int = 5,
                      gallery: str | Path | None = None) -> tuple[list[tuple[float, str]], Gallery]:
        """Top-k gallery images for a caption: ([(score, path)] by decreasing score, the gallery)."""
        _check_k(k)
        query = self.encode_query_text(text)
        g = self.gallery(gallery)
        return _top(g.features @ query, list(g.paths), k), g

    def image_to_text(self, image: str | Path, k: int = 5) -> list[tuple[float, str]]:
        """Top-k test captions for an image: [(score, caption)] by decreasing score."""
        _check_k(k)
        query = self.encode_query_image(image)
        feats = self.caption_features()
        return _top(feats @ query, list(self.data.splits["test"].captions), k)


def _short_reason(reason: str) -> str:
    """A TensorFlow decoder message without its op-wrapper noise."""
    reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", reason)
    return re.sub(r"\s*\[Op:\w+\].*$", "", reason).strip()


def _check_k(k: int) -> None:
    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")


def _top(scores: np.ndarray, items: list[str], k: int) -> list[tuple[float, str]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [(float(scores[i]), items[i]) for i in order]


# --------------------------------------------------------------------------------------------
# Programmatic API
# --------------------------------------------------------------------------------------------


def search_text(run: str | Path, text: str, k: int = 5, gallery: str | Path | None = None,
                stage: int | None = None) -> list[tuple[float, str]]:
    """Text → image: the top-k (cosine score, image path) of the test split or ``gallery`` folder."""
    results, _ = Searcher(run, stage).text_to_image(text, k, gallery)
    return results


def search_image(run: str | Path, image_path: str | Path, k: int = 5,
                 stage: int | None = None) -> list[tuple[float, str]]:
    """Image → text: the top-k (cosine score, caption) of the run's test captions."""
    return Searcher(run, stage).image_to_text(image_path, k)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def format_table(results: list[tuple[float, str]], what: str) -> str:
    """rank / score / item as aligned text."""
    lines = [f"{'rank':>4}  {'score':>7}  {what}"]
    lines += [f"{r:>4}  {s:>7.4f}  {item}" for r, (s, item) in enumerate(results, start=1)]
    return "\n".join(lines)


def search_command(args) -> str:
    """``dpcnn search`` (args: run, text, image, k, gallery, out, stage) → the text to print."""
    searcher = Searcher(args.run, args.stage, progress=True)
    lines = []
    if args.text is not None:
        results, g = searcher.text_to_image(args.text, args.k, args.gallery)
        lines.append(f'text → image: "{args.text}" — gallery: {g.source}, stage {searcher.stage}'
                     f"{' (cached features)' if g.from_cache else ''}")
        if g.skipped:
            lines.append(f"skipped {len(g.skipped)} image file(s) that could not be decoded:")
            lines += [f"  {p}: {r}" for p, r in g.skipped]
        lines.append(format_table(results, "image"))
        if args.out:
            lines.append(f"wrote {draw_text_results(args.text, results, Path(args.out))}")
    else:
        if args.gallery:
            raise SearchError("--gallery is for --text searches; --image searches the run's test captions")
        results = searcher.image_to_text(args.image, args.k)
        lines.append(f"image → text: {args.image} — the {searcher.data.splits['test'].num_captions} test captions, "
                     f"stage {searcher.stage}")
        lines.append(format_table(results, "caption"))
        if args.out:
            lines.append(f"wrote {draw_image_results(args.image, results, Path(args.out))}")
    return "\n".join(lines)


def draw_text_results(text: str, results: list[tuple[float, str]], out: Path) -> Path:
    """A PNG of the query caption over its top-k images, scores as titles."""
    from dpcnn.report import load_thumbnail, new_figure, save_png

    fig = new_figure(2.2 * len(results) + 0.5, 3.0)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for rank, (ax, (score, path)) in enumerate(zip(axes, results), start=1):
        ax.imshow(load_thumbnail(path))
        ax.set_title(f"#{rank}  {score:.3f}", fontsize=9)
        ax.set_xlabel(textwrap.shorten(Path(path).name, 28), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"“{textwrap.shorten(text, 120)}”", fontsize=11)
    return save_png(fig, out)


def draw_image_results(image: str | Path, results: list[tuple[float, str]], out: Path) -> Path:
    """A PNG of the query image beside its top-k captions with scores."""
    from dpcnn.report import load_thumbnail, new_figure, save_png

    fig = new_figure(11, max(3.0, 0.5 * len(results) + 1))
    left, right = fig.subplots(1, 2, width_ratios=[1, 3])
    left.imshow(load_thumbnail(str(image)))
    left.set_title(textwrap.shorten(Path(image).name, 30), fontsize=9)
    left.set_xticks([])
    left.set_yticks([])
    right.axis("off")
    text = "\n".join(f"#{r}  {s:.3f}  {textwrap.shorten(c, 90)}" for r, (s, c) in enumerate(results, start=1))
    right.text(0.0, 1.0, text, va="top", ha="left", fontsize=9, family="monospace", transform=right.transAxes)
    fig.suptitle("image → text", fontsize=11)
    return save_png(fig, out)
