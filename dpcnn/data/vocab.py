"""Tokenisation, the caption dictionary and caption → word-id encoding (PAPER_SPEC §2.1).

The dictionary is every distinct token of the vocabulary-building captions that exactly matches
an entry of the word-vector file, ordered by the file's index; it is built together with the
embedding matrix by :func:`dpcnn.data.word_vectors.build_vocabulary_and_matrix`.

Ids: word ``words[i]`` has id ``i + 1``; id 0 is the empty slot. There is no UNK: encoding
drops out-of-vocabulary tokens and the remaining words close up, then keeps the first
``max_len`` ids (PAPER_SPEC §2.1, "Encoding").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dpcnn.errors import DataError
from dpcnn.utils import atomic_write_json

DEFAULT_SPLIT_CHARS = " -.,()"
VOCAB_FORMAT = "dpcnn-vocabulary"
VOCAB_FORMAT_VERSION = 1


def _split_table(split_chars: str) -> dict[int, str]:
    """A str.translate table that maps every split character onto the first one.

    When the space is a split character, every other whitespace character (tab, newline, …) is
    one too: COCO captions end in "\n", and "bike\n" must not hide the word "bike".
    """
    if not split_chars:
        raise ValueError("split_chars must contain at least one character")
    first = split_chars[0]
    chars = split_chars[1:] + ("\t\n\r\f\v" if " " in split_chars else "")
    return {ord(c): first for c in chars if c != first}


def _tokenize_with(text: str, table: dict[int, str], sep: str, lowercase: bool) -> list[str]:
    if lowercase:
        text = text.lower()
    if table:
        text = text.translate(table)
    return [t for t in text.split(sep) if t]


def tokenize(
    text: str, split_chars: str = DEFAULT_SPLIT_CHARS, lowercase: bool = False
) -> list[str]:
    """Split ``text`` on every character of ``split_chars`` and drop the empty pieces.

    Matching is case-sensitive unless ``lowercase`` (the paper does not lower-case). Only the
    given characters separate tokens, plus every whitespace character when the space is one of
    them (a caption's trailing newline or a tab never glues two words together).

    >>> tokenize("A man (left) rides a bike-path.")
    ['A', 'man', 'left', 'rides', 'a', 'bike', 'path']
    """
    return _tokenize_with(text, _split_table(split_chars), split_chars[0], lowercase)


class Vocabulary:
    """The caption dictionary and the tokenisation settings it was built with.

    ``words[i]`` has id ``i + 1``; 0 is the empty slot (padding), and there is no UNK id.
    """

    def __init__(
        self,
        words: Sequence[str],
        split_chars: str = DEFAULT_SPLIT_CHARS,
        lowercase: bool = False,
    ) -> None:
        self.words: tuple[str, ...] = tuple(words)
        self.split_chars = str(split_chars)
        self.lowercase = bool(lowercase)
        self._table = _split_table(self.split_chars)
        self._index = {w: i + 1 for i, w in enumerate(self.words)}
        if len(self._index) != len(self.words):
            dupes = [w for w, n in Counter(self.words).items() if n > 1]
            raise ValueError(f"vocabulary words must be distinct; repeated: {dupes[:5]}")
        if "" in self._index:
            raise ValueError("vocabulary words must be non-empty")

    def __len__(self) -> int:
        """Number of words V (ids run 1..V; the embedding table has V + 1 rows)."""
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.words, self.split_chars, self.lowercase) == (
            other.words,
            other.split_chars,
            other.lowercase,
        )

    def __hash__(self) -> int:
        return hash((self.words, self.split_chars, self.lowercase))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, split_chars={self.split_chars!r}, lowercase={self.lowercase})"

    def id_of(self, word: str) -> int:
        """The id (1..V) of ``word``; KeyError if it is not in the vocabulary."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self)} words)") from None

    def tokenize(self, text: str) -> list[str]:
        """Tokenise with this vocabulary's settings."""
        return _tokenize_with(text, self._table, self.split_chars[0], self.lowercase)

    def encode(self, text: str, max_len: int) -> list[int]:
        """Ids of the first ``max_len`` in-vocabulary tokens of ``text``.

        Out-of-vocabulary tokens are dropped and the remaining words close up (PAPER_SPEC §2.1).
        The result may be empty (a caption with no in-vocabulary word).
        """
        if max_len < 1:
            raise ValueError(f"max_len must be ≥ 1, got {max_len}")
        index = self._index
        ids = [index[t] for t in self.tokenize(text) if t in index]
        return ids[:max_len]

    def encode_many(self, texts: Iterable[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode captions into a left-aligned, zero-padded matrix.

        Returns ``(ids, lengths)``: ids int32 [N, max_len] (0 = empty), lengths int32 [N]
        (in-vocabulary words kept, 0..max_len).
        """
        encoded = [self.encode(t, max_len) for t in texts]
        ids = np.zeros((len(encoded), max_len), dtype=np.int32)
        lengths = np.zeros((len(encoded),), dtype=np.int32)
        for row, seq in enumerate(encoded):
            ids[row, : len(seq)] = seq
            lengths[row] = len(seq)
        return ids, lengths

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` joined by spaces; 0 (empty) entries are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            if not 1 <= i <= len(self.words):
                raise ValueError(f"id {i} is outside 0..{len(self.words)}")
            out.append(self.words[i - 1])
        return " ".join(out)

    def to_dict(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_FORMAT_VERSION,
            "split_chars": self.split_chars,
            "lowercase": self.lowercase,
            "words": list(self.words),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "vocabulary") -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise DataError(
                f"{source}: not a dpcnn vocabulary file (expected format {VOCAB_FORMAT!r})"
            )
        if data.get("version") != VOCAB_FORMAT_VERSION:
            raise DataError(
                f"{source}: vocabulary format version {data.get('version')!r} is not supported "
                f"(expected {VOCAB_FORMAT_VERSION}); rebuild it with `dpcnn prepare`"
            )
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(f"{source}: 'words' must be a list of strings; rebuild it with `dpcnn prepare`")
        return cls(words, split_chars=data["split_chars"], lowercase=data["lowercase"])

    def save(self, path: str | Path) -> None:
        """Write the vocabulary and its tokenisation settings as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: vocabulary file is not valid JSON ({e}); rebuild it with `dpcnn prepare`"
            ) from e
        return cls.from_dict(data, source=str(path))
