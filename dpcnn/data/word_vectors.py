"""word2vec-format files → the caption vocabulary and its embedding matrix (PAPER_SPEC §2.1).

The paper's dictionary is every distinct token of the vocabulary-building captions that
exactly matches an entry of the word-vector file (case-sensitive unless configured), ordered
by the file's index; its rows are the file's **raw** vectors (no normalisation).

:func:`load_vectors_for` reads word2vec binary or text files (plain or gzip, any dimension)
as a stream: the 3,000,000 × 300 GoogleNews file (3.6 GB) is never held whole. Records are
parsed out of large chunks with ``bytes.find``; only wanted vectors are converted. Memory
stays near the output matrix plus one chunk (and 8 bytes per file word, to count duplicates).

:func:`train_word_vectors` trains the demo's own vectors with gensim and writes them in the
same binary format, so they go through exactly the same loader as GoogleNews.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dpcnn.data.vocab import DEFAULT_SPLIT_CHARS, Vocabulary, _split_table, _tokenize_with
from dpcnn.utils import atomic_write_bytes, atomic_write_json, read_json

logger = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024 * 1024
"""Bytes read from the (decompressed) stream at a time."""
MAX_WORD_BYTES = 1024 * 1024
"""A binary record whose word has no space within this many bytes is treated as corrupt."""
MAX_HEADER_BYTES = 1024
MAX_EXAMPLES = 10
CACHE_FORMAT_VERSION = 1

VOCAB_FILE = "vocab.json"
EMBEDDINGS_FILE = "embeddings.npy"
META_FILE = "embeddings_meta.json"


from dpcnn.errors import WordVectorsError  # noqa: E402


@dataclass
class WordVectorsScan:
    """What one pass over a word-vector file found.

    words: the wanted words present in the file, in file order (first occurrence).
    vectors: float32 [len(words), dim], raw (not normalised), row i ↔ words[i].
    """

    path: str
    format: str
    file_words: int
    dim: int
    words: list[str]
    vectors: np.ndarray
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    invalid_utf8: int = 0
    invalid_utf8_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-ready figures for reports."""
        return {
            "path": self.path,
            "format": self.format,
            "file_words": self.file_words,
            "dim": self.dim,
            "found_words": len(self.words),
            "duplicates": self.duplicates,
            "duplicate_examples": list(self.duplicate_examples),
            "invalid_utf8_words": self.invalid_utf8,
            "invalid_utf8_examples": list(self.invalid_utf8_examples),
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------
# Reading


def _open_stream(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing gzip (detected by its magic bytes)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise WordVectorsError(
            f"{path}: word-vector file not found; set data.word_vectors to a word2vec-format file "
            "(or run `dpcnn download word2vec` for GoogleNews)"
        ) from None
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _read(f: BinaryIO, path: Path, n: int, where: str) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise WordVectorsError(
            f"{path}: cannot read past {where} ({type(e).__name__}: {e}); the file is corrupt or "
            "was cut short: download or write it again"
        ) from e


def _parse_header(path: Path, buf: bytes) -> tuple[int, int, int]:
    """Return (number of words, dimension, offset of the first record)."""
    nl = buf.find(b"\n", 0, MAX_HEADER_BYTES)
    line = buf[:nl] if nl >= 0 else buf[:MAX_HEADER_BYTES]
    hint = (
        "a word2vec file starts with the line '<number of words> <dimension>'; for a GloVe-style "
        "text file without it, add that line at the top (gensim.scripts.glove2word2vec does this)"
    )
    if not buf:
        raise WordVectorsError(f"{path}: the file is empty; {hint}")
    if nl < 0:
        raise WordVectorsError(
            f"{path}: no header line found in the first {MAX_HEADER_BYTES} bytes; {hint}"
        )
    parts = line.split()
    try:
        n_words, dim = (int(p) for p in parts)
    except ValueError:
        shown = line[:80].decode("utf-8", "replace")
        raise WordVectorsError(
            f"{path}: invalid header {shown!r} at byte offset 0 (line 1); {hint}"
        ) from None
    if n_words <= 0 or dim <= 0:
        raise WordVectorsError(
            f"{path}: header says {n_words} words of dimension {dim}; both must be positive"
        )
    return n_words, dim, nl + 1


def _text_values(line: bytes) -> int | None:
    """Number of values if ``line`` reads as ``word v1 … vk`` (k ≥ 1, all numbers), else None."""
    parts = line.decode("utf-8", "replace").split()
    if len(parts) < 2:
        return None
    try:
        for p in parts[1:]:
            float(p)
    except ValueError:
        return None
    return len(parts) - 1


def _detect_format(buf: bytes, start: int, dim: int, at_eof: bool) -> str:
    """Return "text" if the first record reads as a text line of numbers, else "binary".

    A text file whose first line has the wrong number of values is still detected as text when
    its second line also reads as numbers, or when it is the only line (so the count error is
    reported rather than a binary-format one).
    """
    nl = buf.find(b"\n", start)
    if nl < 0 and not at_eof:
        return "binary"  # no line end in a whole chunk: not a text file
    line1 = buf[start:nl] if nl >= 0 else buf[start:]
    k1 = _text_values(line1)
    if k1 is None:
        return "binary"
    if k1 == dim:
        return "text"
    nl2 = buf.find(b"\n", nl + 1) if nl >= 0 else -1
    line2 = buf[nl + 1 : nl2] if nl2 >= 0 else (buf[nl + 1 :] if nl >= 0 else b"")
    if not line2.strip():
        return "text" if at_eof else "binary"
    return "text" if _text_values(line2) is not None else "binary"


class _Collector:
    """Keeps the first occurrence of each wanted word, in file order; counts duplicates and
    undecodable words."""

    def __init__(self, path: Path, wanted: Collection[str], capacity: int, dim: int) -> None:
        self.path = path
        self.wanted = {w.encode("utf-8", "surrogatepass"): w for w in wanted if w}
        self.vectors = np.empty((min(capacity, len(self.wanted)), dim), dtype=np.float32)
        self.words: list[str] = []
        self.found: set[bytes] = set()
        self.hashes = array("q")
        self.duplicate_examples: list[str] = []
        self.invalid_utf8 = 0
        self.invalid_utf8_examples: list[str] = []

    def fix_non_ascii(self, word: bytes, where: str) -> bytes:
        """The UTF-8 key of a non-ASCII word: itself if valid, else its 'replace' decoding."""
        try:
            word.decode("utf-8")
            return word
        except UnicodeDecodeError:
            self.invalid_utf8 += 1
            if len(self.invalid_utf8_examples) < MAX_EXAMPLES:
                self.invalid_utf8_examples.append(f"{word[:60]!r} at {where}")
            return word.decode("utf-8", "replace").encode("utf-8")

    def duplicate(self, key: bytes) -> None:
        if len(self.duplicate_examples) < MAX_EXAMPLES:
            self.duplicate_examples.append(self.wanted[key])

    def count_duplicates(self) -> int:
        """Words that repeat an earlier word of the file (by 64-bit hash of their UTF-8 bytes)."""
        if len(self.hashes) < 2:
            return 0
        h = np.frombuffer(self.hashes, dtype=np.int64).copy()
        h.sort()
        return int(np.count_nonzero(h[1:] == h[:-1]))


def _scan_binary(
    f: BinaryIO, path: Path, buf: bytes, pos: int, n_words: int, dim: int, col: _Collector
) -> tuple[bytes, int]:
    """Parse ``n_words`` binary records ``word<space><dim float32 LE>`` (each optionally preceded
    by newlines) from ``buf[pos:]`` and the rest of the stream. Returns the leftover (buf, pos)."""
    rec = 4 * dim
    base = 0  # stream offset of buf[0]
    count = 0
    eof = False
    wanted_get = col.wanted.get
    found = col.found
    hash_append = col.hashes.append
    vectors = col.vectors
    words = col.words
    nl = b"\n"
    f4 = np.dtype("<f4")
    while True:
        blen = len(buf)
        while count < n_words:
            sp = buf.find(b" ", pos, pos + MAX_WORD_BYTES)
            if sp < 0:
                break
            end = sp + 1 + rec
            if end > blen:
                break
            word = buf[pos:sp]
            if word[:1] == nl:
                word = word.lstrip(nl)
            if not word.isascii():
                word = col.fix_non_ascii(word, f"byte offset {base + pos}")
            hash_append(hash(word))
            name = wanted_get(word)
            if name is not None:
                if word in found:
                    col.duplicate(word)
                else:
                    found.add(word)
                    vectors[len(words)] = np.frombuffer(buf, dtype=f4, count=dim, offset=sp + 1)
                    words.append(name)
            pos = end
            count += 1
        if count == n_words:
            return buf, pos
        if blen - pos >= MAX_WORD_BYTES and buf.find(b" ", pos, pos + MAX_WORD_BYTES) < 0:
            raise WordVectorsError(
                f"{path}: record {count + 1} at byte offset {base + pos} has no space after its word "
                f"within {MAX_WORD_BYTES} bytes; this is not a word2vec binary file of dimension {dim} "
                "(or it is corrupt)"
            )
        if eof:
            left = blen - pos
            if buf[pos:].strip() == b"":
                raise WordVectorsError(
                    f"{path}: truncated: the header announces {n_words} words but the file ends after "
                    f"{count} (byte offset {base + blen}); download or write the file again"
                )
            raise WordVectorsError(
                f"{path}: truncated: record {count + 1} of {n_words} at byte offset {base + pos} is cut "
                f"short ({left} bytes left, a {dim}-d record needs its word, a space and {rec} bytes); "
                "download or write the file again"
            )
        new = _read(f, path, CHUNK_BYTES, f"byte offset {base + blen}")
        eof = not new
        base += pos
        buf = buf[pos:] + new
        pos = 0


def _scan_text(f: BinaryIO, path: Path, n_words: int, dim: int, col: _Collector) -> None:
    """Parse ``n_words`` lines ``word v1 … vdim`` (line 1, the header, already consumed)."""
    count = 0
    wanted = col.wanted
    found = col.found
    hash_append = col.hashes.append
    lineno = 1
    for lineno, raw in enumerate(f, start=2):  # noqa: B007 - used after the loop
        line = raw.rstrip()
        word, _, rest = line.partition(b" ")
        if not word:
            raise WordVectorsError(
                f"{path}: line {lineno} is {'empty' if not line else 'missing its word'}; "
                f"expected 'word' followed by {dim} numbers"
            )
        n_values = rest.count(b" ") + 1 if rest else 0
        if n_values != dim:
            n_values = len(rest.split())
            if n_values != dim:
                raise WordVectorsError(
                    f"{path}: line {lineno} (word {word[:60].decode('utf-8', 'replace')!r}) has {n_values} "
                    f"values but the header says dimension {dim}; the file is corrupt or its header is wrong"
                )
        if not word.isascii():
            word = col.fix_non_ascii(word, f"line {lineno}")
        hash_append(hash(word))
        if word in wanted:
            if word in found:
                col.duplicate(word)
            else:
                try:
                    values = np.array(rest.split(), dtype=np.float64)
                except ValueError:
                    raise WordVectorsError(
                        f"{path}: line {lineno} (word {wanted[word]!r}) has a value that is not a number"
                    ) from None
                found.add(word)
                col.vectors[len(col.words)] = values
                col.words.append(wanted[word])
        count += 1
        if count == n_words:
            return
    raise WordVectorsError(
        f"{path}: truncated: the header announces {n_words} words but the file ends at line {lineno} "
        f"after {count}; download or write the file again"
    )


def read_word_vectors(
    path: str | Path, wanted: Collection[str], expected_dim: int | None = None
) -> WordVectorsScan:
    """Stream a word2vec-format file and keep the vectors of ``wanted`` words.

    Accepts the binary and the text format (detected from the first record), plain or gzip, of
    any dimension. Duplicate words keep their first occurrence (as gensim does) and are counted;
    words that are not valid UTF-8 are decoded with replacement characters and counted.

    Raises WordVectorsError for a missing or invalid header, a truncated file, a text line with
    the wrong number of values, a dimension other than ``expected_dim``, non-finite values in a
    wanted vector, or a file with none of the wanted words.
    """
    path = Path(path)
    wanted = wanted if isinstance(wanted, (set, frozenset, dict)) else set(wanted)
    if not any(wanted):
        raise ValueError("no words wanted: the vocabulary captions produced no tokens")
    t0 = time.perf_counter()
    f = _open_stream(path)
    try:
        buf = _read(f, path, CHUNK_BYTES, "byte offset 0")
        while len(buf) < MAX_HEADER_BYTES and b"\n" not in buf:
            more = _read(f, path, CHUNK_BYTES, f"byte offset {len(buf)}")
            if not more:
                break
            buf += more
        n_words, dim, start = _parse_header(path, buf)
        if expected_dim is not None and dim != expected_dim:
            raise WordVectorsError(
                f"{path}: the header says dimension {dim} but {expected_dim} is expected; use a file of "
                f"dimension {expected_dim} or change the configured dimension to {dim}"
            )
        # Enough bytes to see the first two records' lines (or to see that there are none).
        at_eof = False
        detect_bytes = start + max(1024 * 1024, 64 * dim)
        while not at_eof and len(buf) < detect_bytes and buf.count(b"\n", start) < 2:
            more = _read(f, path, CHUNK_BYTES, f"byte offset {len(buf)}")
            at_eof = not more
            buf += more
        fmt = _detect_format(buf, start, dim, at_eof=at_eof or len(buf) < CHUNK_BYTES)
        logger.info("reading %s word2vec file %s: %d words × %d", fmt, path, n_words, dim)
        col = _Collector(path, wanted, n_words, dim)
        if fmt == "binary":
            buf, pos = _scan_binary(f, path, buf, start, n_words, dim, col)
            trailing = buf[pos:] + _read(f, path, 4096, "the last record")
        else:
            f.close()
            f = _open_stream(path)
            f.readline()
            _scan_text(f, path, n_words, dim, col)
            trailing = _read(f, path, 4096, "the last record")
    finally:
        f.close()
    if trailing.strip():
        logger.warning(
            "%s: data after the %d words the header announces was ignored (is the header count wrong?)",
            path,
            n_words,
        )
    duplicates = col.count_duplicates()
    if duplicates:
        logger.warning(
            "%s: %d duplicate words; kept the first occurrence of each (wanted ones among them: %s)",
            path,
            duplicates,
            col.duplicate_examples or "none",
        )
    if col.invalid_utf8:
        logger.warning(
            "%s: %d words are not valid UTF-8 and were decoded with U+FFFD replacement characters, e.g. %s",
            path,
            col.invalid_utf8,
            col.invalid_utf8_examples[:3],
        )
    if not col.words:
        examples = sorted(col.wanted.values())[:8]
        raise WordVectorsError(
            f"{path}: none of the {len(col.wanted)} wanted words (e.g. {examples}) is in this file of "
            f"{n_words} words; check that it is the right file and the tokenisation settings "
            "(data.lowercase, data.split_chars)"
        )
    vectors = col.vectors
    if len(col.words) < vectors.shape[0]:
        vectors = vectors[: len(col.words)].copy()  # release the unused rows
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        names = [col.words[i] for i in np.flatnonzero(bad)[:5]]
        raise WordVectorsError(
            f"{path}: {int(bad.sum())} wanted vectors contain NaN or infinite values (e.g. {names}); "
            "the file is corrupt"
        )
    seconds = time.perf_counter() - t0
    logger.info(
        "found %d of %d wanted words in %s (%.1f s)", len(col.words), len(col.wanted), path, seconds
    )
    return WordVectorsScan(
        path=str(path),
        format=fmt,
        file_words=n_words,
        dim=dim,
        words=col.words,
        vectors=vectors,
        duplicates=duplicates,
        duplicate_examples=col.duplicate_examples,
        invalid_utf8=col.invalid_utf8,
        invalid_utf8_examples=col.invalid_utf8_examples,
        seconds=seconds,
    )


def load_vectors_for(
    path: Path, wanted: Collection[str], expected_dim: int | None = None
) -> tuple[list[str], np.ndarray]:
    """The ``wanted`` words present in ``path``, in file order, and their raw vectors
    float32 [V, D]. See :func:`read_word_vectors` for formats and errors."""
    scan = read_word_vectors(path, wanted, expected_dim)
    return scan.words, scan.vectors


# --------------------------------------------------------------------------------------------
# Vocabulary + embedding matrix


def _count_captions(
    captions: Iterable[str], split_chars: str, lowercase: bool
) -> tuple[Counter[str], int, int]:
    """Token counts, number of captions, number of captions with no token at all."""
    table = _split_table(split_chars)
    sep = split_chars[0]
    counts: Counter[str] = Counter()
    n_captions = n_empty = 0
    for caption in captions:
        tokens = _tokenize_with(caption, table, sep, lowercase)
        n_captions += 1
        if not tokens:
            n_empty += 1
        counts.update(tokens)
    return counts, n_captions, n_empty


def _build_from_counts(
    counts: Counter[str],
    n_captions: int,
    n_empty: int,
    vectors_path: str | Path,
    split_chars: str,
    lowercase: bool,
    expected_dim: int | None,
) -> tuple[Vocabulary, np.ndarray, dict]:
    if not counts:
        raise ValueError(
            f"the {n_captions} vocabulary captions contain no tokens; the dictionary would be empty"
        )
    scan = read_word_vectors(vectors_path, counts.keys(), expected_dim)
    vocab = Vocabulary(scan.words, split_chars=split_chars, lowercase=lowercase)
    in_vocab = set(scan.words)
    oov = Counter({t: c for t, c in counts.items() if t not in in_vocab})
    tokens_seen = sum(counts.values())
    in_vocab_tokens = tokens_seen - sum(oov.values())
    report = {
        "captions": n_captions,
        "captions_without_tokens": n_empty,
        "tokens_seen": tokens_seen,
        "distinct_tokens": len(counts),
        "in_vocabulary_words": len(vocab),
        "in_vocabulary_tokens": in_vocab_tokens,
        "oov_tokens": tokens_seen - in_vocab_tokens,
        "oov_distinct": len(oov),
        "oov_token_share": round((tokens_seen - in_vocab_tokens) / tokens_seen, 6),
        "oov_examples": [[t, c] for t, c in oov.most_common(MAX_EXAMPLES)],
        "split_chars": split_chars,
        "lowercase": lowercase,
        "word_vectors": scan.summary(),
    }
    logger.info(
        "vocabulary: %d words (of %d distinct tokens); %d of %d tokens (%.1f%%) are out of vocabulary "
        "and dropped, most often %s",
        len(vocab),
        len(counts),
        report["oov_tokens"],
        tokens_seen,
        100 * report["oov_token_share"],
        [t for t, _ in oov.most_common(5)],
    )
    return vocab, scan.vectors, report


def build_vocabulary_and_matrix(
    vocab_captions: Iterable[str],
    vectors_path: str | Path,
    split_chars: str = DEFAULT_SPLIT_CHARS,
    lowercase: bool = False,
    expected_dim: int | None = None,
) -> tuple[Vocabulary, np.ndarray, dict]:
    """The dictionary and its embedding matrix (PAPER_SPEC §2.1).

    vocab_captions: the vocabulary-building captions only (training split, never test).
    Returns (vocabulary, float32 [V, D] raw vectors with row i ↔ id i + 1, report).
    The report counts tokens seen, distinct tokens, in-vocabulary words and tokens, and the
    out-of-vocabulary tokens (dropped at encoding) with the most frequent examples.
    """
    counts, n_captions, n_empty = _count_captions(vocab_captions, split_chars, lowercase)
    return _build_from_counts(
        counts, n_captions, n_empty, vectors_path, split_chars, lowercase, expected_dim
    )


def _tokens_digest(counts: Counter[str], n_captions: int, n_empty: int) -> str:
    payload = json.dumps(
        [sorted(counts.items()), n_captions, n_empty], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(matrix: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, matrix, allow_pickle=False)
    return out.getvalue()


def _load_cache(cache_dir: Path, meta: dict) -> tuple[Vocabulary, np.ndarray] | None:
    """The cached pair if its files are intact and match the meta, else None."""
    try:
        vocab_bytes = (cache_dir / VOCAB_FILE).read_bytes()
        emb_bytes = (cache_dir / EMBEDDINGS_FILE).read_bytes()
        if (
            _sha256(vocab_bytes) != meta["files"][VOCAB_FILE]
            or _sha256(emb_bytes) != meta["files"][EMBEDDINGS_FILE]
        ):
            logger.warning(
                "embedding cache in %s does not match its meta file; rebuilding", cache_dir
            )
            return None
        vocab = Vocabulary.from_dict(
            json.loads(vocab_bytes.decode("utf-8")), str(cache_dir / VOCAB_FILE)
        )
        matrix = np.load(io.BytesIO(emb_bytes), allow_pickle=False)
    except (OSError, KeyError, TypeError, ValueError) as e:
        logger.warning("embedding cache in %s is unreadable (%s); rebuilding", cache_dir, e)
        return None
    if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[0] != len(vocab):
        logger.warning("embedding cache in %s has an inconsistent shape; rebuilding", cache_dir)
        return None
    return vocab, matrix


def cached_vocabulary_and_matrix(
    cache_dir: str | Path,
    vocab_captions: Iterable[str],
    vectors_path: str | Path,
    split_chars: str = DEFAULT_SPLIT_CHARS,
    lowercase: bool = False,
    expected_dim: int | None = None,
) -> tuple[Vocabulary, np.ndarray, dict]:
    """:func:`build_vocabulary_and_matrix`, cached in ``cache_dir``.

    Writes ``vocab.json``, ``embeddings.npy`` and ``embeddings_meta.json`` (the word-vector
    file's path, size and mtime, a hash of the caption tokens and the settings, and hashes of
    the two data files). A later call with the same inputs reuses them without reading the
    word-vector file; any change rebuilds. The report gains ``"cache": "reused" | "built"``.
    """
    cache_dir = Path(cache_dir)
    vectors_path = Path(vectors_path)
    counts, n_captions, n_empty = _count_captions(vocab_captions, split_chars, lowercase)
    try:
        st = vectors_path.stat()
    except FileNotFoundError:
        raise WordVectorsError(
            f"{vectors_path}: word-vector file not found; set data.word_vectors to a word2vec-format file "
            "(or run `dpcnn download word2vec` for GoogleNews)"
        ) from None
    key = {
        "version": CACHE_FORMAT_VERSION,
        "vectors": {
            "path": str(vectors_path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        },
        "tokens_sha256": _tokens_digest(counts, n_captions, n_empty),
        "split_chars": split_chars,
        "lowercase": bool(lowercase),
        "expected_dim": expected_dim,
    }
    meta_path = cache_dir / META_FILE
    if meta_path.exists():
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError) as e:
            logger.warning("cannot read %s (%s); rebuilding the embedding cache", meta_path, e)
            meta = None
        if isinstance(meta, dict) and meta.get("key") == key:
            cached = _load_cache(cache_dir, meta)
            if cached is not None:
                logger.info("reusing the vocabulary and embedding matrix cached in %s", cache_dir)
                return cached[0], cached[1], {**meta["report"], "cache": "reused"}
        else:
            logger.info("embedding cache in %s is stale; rebuilding", cache_dir)
    vocab, matrix, report = _build_from_counts(
        counts, n_captions, n_empty, vectors_path, split_chars, lowercase, expected_dim
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # the data files below must never pair with an old meta
    vocab_bytes = (json.dumps(vocab.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    emb_bytes = _npy_bytes(matrix)
    atomic_write_bytes(cache_dir / VOCAB_FILE, vocab_bytes)
    atomic_write_bytes(cache_dir / EMBEDDINGS_FILE, emb_bytes)
    meta = {
        "key": key,
        "files": {VOCAB_FILE: _sha256(vocab_bytes), EMBEDDINGS_FILE: _sha256(emb_bytes)},
        "shape": list(matrix.shape),
        "report": report,
    }
    atomic_write_json(meta_path, meta)
    return vocab, matrix, {**report, "cache": "built"}


# --------------------------------------------------------------------------------------------
# The demo's own vectors


def stable_hash(text: str) -> int:
    """A process-independent string hash for gensim's ``hashfxn`` (Python's ``hash`` of str is
    salted per process unless PYTHONHASHSEED is fixed)."""
    return zlib.crc32(text.encode("utf-8"))


def train_word_vectors(
    sentences: list[list[str]], dim: int, seed: int, path: str | Path, epochs: int = 20
) -> Path:
    """Train word2vec on tokenised ``sentences`` with gensim and write a word2vec binary file.

    Deterministic: one worker, a fixed seed and a stable hash give identical bytes in every
    process. An existing identical file is left untouched, so its mtime (part of the embedding
    cache key) does not change. The file then loads through :func:`load_vectors_for` exactly
    like GoogleNews.
    """
    from gensim.models import Word2Vec  # heavy import, only needed here

    path = Path(path)
    sentences = [list(s) for s in sentences if len(s)]
    if not sentences:
        raise ValueError("train_word_vectors: no non-empty sentences to train on")
    if dim < 1 or epochs < 1:
        raise ValueError(f"train_word_vectors: dim and epochs must be ≥ 1, got {dim}, {epochs}")
    model = Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=5,
        min_count=1,
        workers=1,
        seed=seed,
        hashfxn=stable_hash,
        epochs=epochs,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix="".join(path.suffixes) or ".bin"
    )
    os.close(fd)
    try:
        model.wv.save_word2vec_format(tmp, binary=True)
        if path.exists() and path.read_bytes() == Path(tmp).read_bytes():
            Path(tmp).unlink()  # identical: keep the old file and its mtime (the cache key)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("trained %d word vectors of dimension %d → %s", len(model.wv), dim, path)
    return path
