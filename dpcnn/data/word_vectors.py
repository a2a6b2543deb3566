"""word2vec files → the caption vocabulary and its embedding matrix (PAPER_SPEC §2.1): every
distinct caption token that exactly matches a file entry, in file order, with its raw vectors.

:func:`read_word_vectors` streams a binary or text file (plain or gzip, any dimension) and
converts only the wanted vectors, so GoogleNews (3,000,000 × 300) is never held whole; it beats
gensim's loaders, its intersection included, in time and memory (benchmarks/RESULTS.md §3).
"""

from __future__ import annotations

import gzip
import itertools
import logging
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dpcnn.data.vocab import DEFAULT_SPLIT_CHARS, Vocabulary, _split_table, _tokenize_with
from dpcnn.errors import DataError, WordVectorsError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024  # read from a binary stream at a time (4 MiB: the fastest)
MAX_WORD_BYTES = 1024 * 1024  # a binary word longer than this means a corrupt file
MAX_HEADER_BYTES = 1024
MAX_EXAMPLES = 10
HEADER_HINT = (
    "a word2vec file starts with the line '<number of words> <dimension>'; for a GloVe-style "
    "text file without it, add that line at the top"
)


class WordVectors:
    """What one pass over a word-vector file found: ``words``, the wanted words present (file
    order, first occurrence), and ``vectors``, their raw float32 [len(words), dim] vectors."""

    def __init__(
        self, path: Path, fmt: str, n_words: int, dim: int, wanted: Collection[str]
    ) -> None:
        self.path, self.format, self.file_words, self.dim = str(path), fmt, n_words, dim
        self.wanted = {w.encode("utf-8", "surrogatepass"): w for w in wanted if w}
        self.vectors = np.empty((min(n_words, len(self.wanted)), dim), dtype=np.float32)
        self.words: list[str] = []
        self.found: set[bytes] = set()
        self.hashes = array("q")  # of every file word, to count duplicates
        self.duplicates = self.invalid_utf8 = 0
        self.invalid_utf8_examples: list[str] = []
        self.seconds = 0.0

    def fix_utf8(self, word: bytes, where: str) -> bytes:
        """``word`` if it is valid UTF-8, else its decoding with U+FFFD (counted)."""
        try:
            word.decode("utf-8")
            return word
        except UnicodeDecodeError:
            self.invalid_utf8 += 1
            if len(self.invalid_utf8_examples) < MAX_EXAMPLES:
                self.invalid_utf8_examples.append(f"{word[:60]!r} at {where}")
            return word.decode("utf-8", "replace").encode("utf-8")

    def keep(self, word: bytes, values: np.ndarray) -> None:
        """Store a wanted word's vector unless the word was already found."""
        if word not in self.found:
            self.found.add(word)
            self.vectors[len(self.words)] = values
            self.words.append(self.wanted[word])

    def finish(self, seconds: float) -> WordVectors:
        """Count duplicates, trim the matrix, check that some words were found, all finite."""
        h = np.sort(np.frombuffer(self.hashes, dtype=np.int64))
        self.duplicates, self.hashes = int(np.count_nonzero(h[1:] == h[:-1])), array("q")
        self.vectors, self.seconds = self.vectors[: len(self.words)].copy(), round(seconds, 3)
        if self.duplicates or self.invalid_utf8:
            logger.warning(
                "%s: %d duplicate words (the first of each is kept); %d words not valid UTF-8 "
                "(decoded with U+FFFD), e.g. %s",
                *(self.path, self.duplicates, self.invalid_utf8, self.invalid_utf8_examples[:3]),
            )
        if not self.words:
            raise WordVectorsError(
                f"{self.path}: none of the {len(self.wanted)} wanted words (e.g. "
                f"{sorted(self.wanted.values())[:8]}) is in this file of {self.file_words} words; "
                "check that it is the right file and data.lowercase, data.split_chars"
            )
        bad = np.flatnonzero(~np.isfinite(self.vectors).all(axis=1))
        if len(bad):
            raise WordVectorsError(
                f"{self.path}: {len(bad)} wanted vectors contain NaN or infinite values (e.g. "
                f"{[self.words[i] for i in bad[:5]]}); the file is corrupt: download it again"
            )
        logger.info(
            "found %d of %d wanted words in %s", len(self.words), len(self.wanted), self.path
        )
        return self

    def summary(self) -> dict:
        """JSON-ready figures for reports."""
        keys = "path format file_words dim duplicates invalid_utf8 invalid_utf8_examples seconds"
        return {**{k: getattr(self, k) for k in keys.split()}, "found_words": len(self.words)}


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading, through gzip when it starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except FileNotFoundError:
        raise WordVectorsError(
            f"{path}: word-vector file not found; set data.word_vectors to a word2vec-format file "
            "(or run `dpcnn download word2vec` for GoogleNews)"
        ) from None
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115


def _header(path: Path, line: bytes, expected_dim: int | None) -> tuple[int, int]:
    """(number of words, dimension) from the first line."""
    if not line:
        raise WordVectorsError(f"{path}: the file is empty; {HEADER_HINT}")
    if not line.endswith(b"\n"):
        raise WordVectorsError(f"{path}: no header line in its first bytes; {HEADER_HINT}")
    try:
        n_words, dim = (int(p) for p in line.split())
    except ValueError:
        shown = line.strip()[:80].decode("utf-8", "replace")
        raise WordVectorsError(
            f"{path}: invalid header {shown!r} on line 1; {HEADER_HINT}"
        ) from None
    if n_words <= 0 or dim <= 0:
        raise WordVectorsError(
            f"{path}: header says {n_words} words of dimension {dim}; both must be positive"
        )
    if expected_dim is not None and dim != expected_dim:
        raise WordVectorsError(
            f"{path}: the header says dimension {dim} but {expected_dim} is expected; use a file "
            f"of dimension {expected_dim} or set the configured dimension to {dim}"
        )
    return n_words, dim


def _is_text(first: bytes) -> bool:
    """True if the first record reads as a line ``word number …`` (else it is binary)."""
    parts = first.split()
    try:
        for p in parts[1:]:
            float(p)
    except ValueError:
        return False
    return len(parts) >= 2


def _truncated(path: str | Path, n_words: int, count: int, where: str) -> WordVectorsError:
    """The error for a file that ends before the header's number of words."""
    return WordVectorsError(
        f"{path}: truncated: the header announces {n_words} words but the file ends after {count} "
        f"complete records (at {where}); download or write the file again"
    )


def _scan_binary(f: BinaryIO, buf: bytes, start: int, out: WordVectors) -> bool:
    """Parse the records ``word<space><dim float32 LE>`` (each optionally preceded by b'\\n', as
    word2vec.c writes) from ``buf`` (at file offset ``start``), then ``f``. True if data follows."""
    path, n_words, dim = out.path, out.file_words, out.dim
    rec, f4, wanted, add_hash = 4 * dim, np.dtype("<f4"), out.wanted, out.hashes.append
    chunks = iter(lambda: f.read(CHUNK_BYTES), b"")
    pos, base, count = 0, start, 0  # base: file offset of buf[0]
    for chunk in itertools.chain([b""], chunks):
        base, buf, pos = base + pos, buf[pos:] + chunk, 0
        while count < n_words:
            sp = buf.find(b" ", pos)
            if sp < 0 or sp + 1 + rec > len(buf):
                break
            word = buf[pos:sp].lstrip(b"\n")
            if not word.isascii():
                word = out.fix_utf8(word, f"byte offset {base + pos}")
            add_hash(hash(word))
            if word in wanted:
                out.keep(word, np.frombuffer(buf, f4, dim, sp + 1))
            pos, count = sp + 1 + rec, count + 1
        if count == n_words:
            return bool(buf[pos:].strip()) or any(c.strip() for c in chunks)
        if len(buf) - pos > MAX_WORD_BYTES and buf.find(b" ", pos, pos + MAX_WORD_BYTES) < 0:
            raise WordVectorsError(
                f"{path}: record {count + 1} at byte offset {base + pos} has no space after its "
                f"word in {MAX_WORD_BYTES} bytes: not a word2vec binary file, or a corrupt one"
            )
    raise _truncated(path, n_words, count, f"byte offset {base + len(buf)}")


def _scan_text(lines: Iterator[bytes], out: WordVectors) -> bool:
    """Parse the lines ``word v1 … v<dim>`` that follow the header. True if more follow."""
    path, n_words, dim, count = out.path, out.file_words, out.dim, 0
    for lineno, raw in enumerate(lines, start=2):
        word, _, rest = raw.rstrip().partition(b" ")
        n = rest.count(b" ") + 1 if rest else 0
        if n != dim:
            n = len(rest.split())  # runs of spaces
        if n != dim or not word:
            raise WordVectorsError(
                f"{path}: line {lineno} (word {word[:60].decode('utf-8', 'replace')!r}) has {n} "
                f"values but the header says dimension {dim}: a corrupt file or a wrong header"
            )
        if not word.isascii():
            word = out.fix_utf8(word, f"line {lineno}")
        out.hashes.append(hash(word))
        if word in out.wanted:
            try:
                out.keep(word, np.array(rest.split(), dtype=np.float64))
            except ValueError:
                raise WordVectorsError(
                    f"{path}: line {lineno} has a value that is not a number"
                ) from None
        count += 1
        if count == n_words:
            return any(line.strip() for line in lines)
    raise _truncated(path, n_words, count, f"line {count + 2}")


def read_word_vectors(
    path: str | Path, wanted: Collection[str], expected_dim: int | None = None
) -> WordVectors:
    """The ``wanted`` words of a word2vec file (binary or text, plain or gzip), in file order.

    Duplicate words keep their first occurrence (as gensim) and are counted; words that are not
    valid UTF-8 are decoded with U+FFFD and counted. Raises WordVectorsError for a missing,
    empty or truncated file, a missing or invalid header, a dimension other than
    ``expected_dim``, a text line with the wrong number of values, non-finite values in a wanted
    vector, or a file with none of the wanted words.
    """
    path, t0 = Path(path), time.perf_counter()
    if not any(wanted):
        raise DataError("no words wanted: the vocabulary captions produced no tokens (check data.split_chars and the captions)")
    with _open(path) as f:
        try:
            header = f.readline(MAX_HEADER_BYTES)
            n_words, dim = _header(path, header, expected_dim)
            first = f.readline(64 * dim + 1024)  # the first record's line, if it is text
            out = WordVectors(path, "text" if _is_text(first) else "binary", n_words, dim, wanted)
            logger.info(
                "reading %s word2vec file %s: %d words × %d", out.format, path, n_words, dim
            )
            if out.format == "binary":
                more = _scan_binary(f, first, len(header), out)
            else:
                more = _scan_text(itertools.chain([first], f), out)
        except (OSError, EOFError, zlib.error) as e:
            raise WordVectorsError(
                f"{path}: cannot read it to the end ({type(e).__name__}: {e}); the file is corrupt "
                "or was cut short: download or write it again"
            ) from e
    if more:
        logger.warning("%s: data after the %d words of its header is ignored", path, n_words)
    return out.finish(time.perf_counter() - t0)


def build_vocabulary_and_matrix(
    vocab_captions: Iterable[str],
    vectors_path: str | Path,
    split_chars: str = DEFAULT_SPLIT_CHARS,
    lowercase: bool = False,
    expected_dim: int | None = None,
) -> tuple[Vocabulary, np.ndarray, dict]:
    """(vocabulary, float32 [V, D] raw vectors with row i ↔ id i + 1, report) from the
    vocabulary-building captions only (never test); the report counts tokens, in-vocabulary
    words and tokens, and the out-of-vocabulary tokens (dropped at encoding)."""
    table, sep = _split_table(split_chars), split_chars[:1]
    counts: Counter[str] = Counter()
    n_captions = n_empty = 0
    for caption in vocab_captions:
        tokens = _tokenize_with(caption, table, sep, lowercase)
        n_captions, n_empty = n_captions + 1, n_empty + (not tokens)
        counts.update(tokens)
    if not counts:
        raise DataError(f"the {n_captions} vocabulary captions contain no tokens (check data.split_chars and the captions)")
    found = read_word_vectors(vectors_path, counts.keys(), expected_dim)
    vocab = Vocabulary(found.words, split_chars=split_chars, lowercase=lowercase)
    in_vocab = set(found.words)
    oov = Counter({t: c for t, c in counts.items() if t not in in_vocab})
    seen, n_oov = sum(counts.values()), sum(oov.values())
    report = {
        "captions": n_captions,
        "captions_without_tokens": n_empty,
        "tokens_seen": seen,
        "distinct_tokens": len(counts),
        "in_vocabulary_words": len(vocab),
        "in_vocabulary_tokens": seen - n_oov,
        "oov_tokens": n_oov,
        "oov_distinct": len(oov),
        "oov_token_share": round(n_oov / seen, 6),
        "oov_examples": [[t, c] for t, c in oov.most_common(MAX_EXAMPLES)],
        "split_chars": split_chars,
        "lowercase": lowercase,
        "word_vectors": found.summary(),
    }
    top = [t for t, _ in oov.most_common(5)]
    msg = "vocabulary: %d words of %d distinct tokens; %d of %d tokens (%.1f%%) are OOV, e.g. %s"
    logger.info(msg, len(vocab), len(counts), n_oov, seen, 100 * n_oov / seen, top)
    return vocab, found.vectors, report


def stable_hash(text: str) -> int:
    """A process-independent string hash for gensim's ``hashfxn`` (``hash`` of a str is salted
    per process)."""
    return zlib.crc32(text.encode("utf-8"))


def train_word_vectors(
    sentences: list[list[str]], dim: int, seed: int, path: str | Path, epochs: int = 20
) -> Path:
    """Train word2vec on tokenised ``sentences`` with gensim and write it as a word2vec binary
    file. Deterministic: one worker, a fixed seed and a stable hash give identical bytes in
    every process."""
    from gensim.models import Word2Vec  # heavy import, only needed here

    path = Path(path)
    sentences = [list(s) for s in sentences if len(s)]
    if not sentences:
        raise ValueError("train_word_vectors: no non-empty sentences to train on")
    if dim < 1 or epochs < 1:
        raise ValueError(f"train_word_vectors: dim and epochs must be ≥ 1, got {dim}, {epochs}")
    model = Word2Vec(
        sentences, vector_size=dim, window=5, min_count=1, workers=1, seed=seed,
        hashfxn=stable_hash, epochs=epochs,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    model.wv.save_word2vec_format(str(path), binary=True)
    logger.info("trained %d word vectors of dimension %d → %s", len(model.wv), dim, path)
    return path
