"""The word2vec reader against gensim's own loader, its errors, the vocabulary and embedding
matrix, and the demo's own vectors (PAPER_SPEC §2.1)."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors
from helpers import ROOT

import dpcnn.data.word_vectors as wv
from dpcnn.data.word_vectors import (
    WordVectorsError,
    build_vocabulary_and_matrix,
    read_word_vectors,
    train_word_vectors,
)

# Mixed case, multi-byte UTF-8, phrases: interleaved so that file order is no sorted order.
SPECIAL = ["Dog", "dog", "DOG", "café", "naïve", "Ελλάδα", "New_York", "x", "a-b", "über"]


def gensim_file(path: Path, dim: int, binary: bool, n: int = 300) -> Path:
    """A word2vec file written by gensim: ``n`` words w<i> and SPECIAL, raw (not unit) vectors."""
    words = [f"w{i}" for i in range(n)]
    for j, w in enumerate(SPECIAL):
        words.insert(23 * j + 5, w)
    kv = KeyedVectors(dim)
    rng = np.random.default_rng(dim)
    kv.add_vectors(words, (rng.standard_normal((len(words), dim)) * 3).astype(np.float32))
    kv.save_word2vec_format(str(path), binary=binary)  # gzip for a .gz name
    return path


WANTED = {f"w{i}" for i in range(0, 300, 7)} | set(SPECIAL) | {"absent", "Cafe", "DOg", ""}


def assert_same_as_gensim(path: Path, binary: bool, found) -> None:
    """Same words in file order and bit-identical vectors as gensim's full load."""
    ref = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert found.words == [w for w in ref.index_to_key if w in WANTED]
    assert found.vectors.dtype == np.float32
    np.testing.assert_array_equal(found.vectors, np.stack([ref[w] for w in found.words]))


def hand_binary(path: Path, records, dim: int, sep: bytes = b"", header: bytes | None = None):
    """A word2vec binary file from (word bytes, vector) pairs; ``sep`` follows each vector
    (word2vec.c writes b'\\n')."""
    body = b"".join(w + b" " + np.asarray(v, "<f4").tobytes() + sep for w, v in records)
    path.write_bytes((header or f"{len(records)} {dim}\n".encode()) + body)
    return path


def fails(path: Path, match: str, wanted=("w1",), **kwargs) -> str:
    """Reading ``path`` raises one WordVectorsError that matches and names the file."""
    with pytest.raises(WordVectorsError, match=match) as info:
        read_word_vectors(path, set(wanted), **kwargs)
    assert str(info.value).startswith(str(path))
    return str(info.value)


# ------------------------------------------------------------------------- formats, gensim


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
@pytest.mark.parametrize("name", ["v.bin", "v.bin.gz"], ids=["plain", "gzip"])
@pytest.mark.parametrize("dim", [1, 7, 300])
def test_agrees_with_gensim(tmp_path, dim, name, binary):
    path = gensim_file(tmp_path / name, dim, binary)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    found = read_word_vectors(path, WANTED, expected_dim=dim)
    assert_same_as_gensim(path, binary, found)
    assert len(found.words) == 43 + len(SPECIAL)
    summary = found.summary()
    assert summary["format"] == ("binary" if binary else "text")
    assert (summary["file_words"], summary["dim"], summary["found_words"]) == (310, dim, 53)
    assert summary["duplicates"] == summary["invalid_utf8"] == 0
    assert not np.allclose(np.linalg.norm(found.vectors, axis=1), 1.0)  # raw, not normalised


@pytest.mark.parametrize("chunk", [5, 64, 1000])
def test_binary_records_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(wv, "CHUNK_BYTES", chunk)
    path = gensim_file(tmp_path / "v.bin", 5, True, n=100)
    assert_same_as_gensim(path, True, read_word_vectors(path, WANTED))


def test_word2vec_c_newline_separated_records(tmp_path):
    rng = np.random.default_rng(2)
    path = hand_binary(
        tmp_path / "c.bin", [(b"w%d" % i, rng.random(4)) for i in range(50)], 4, b"\n"
    )
    found = read_word_vectors(path, {"w0", "w7", "w49", "nope"})
    assert found.words == ["w0", "w7", "w49"]
    ref = KeyedVectors.load_word2vec_format(str(path), binary=True)
    np.testing.assert_array_equal(found.vectors, np.stack([ref[w] for w in found.words]))


def test_gzip_text_with_crlf_and_trailing_spaces(tmp_path):
    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"2 2\r\nalpha 1 2 \r\nbeta 3.5  -4e-1\r\n")
    found = read_word_vectors(path, {"beta", "alpha"})
    assert found.words == ["alpha", "beta"] and found.format == "text"
    np.testing.assert_array_equal(found.vectors, np.float32([[1, 2], [3.5, -0.4]]))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_duplicates_keep_the_first_and_are_counted(tmp_path, caplog, binary):
    records = [(b"a", [1, 1]), (b"b", [2, 2]), (b"a", [3, 3]), (b"c", [4, 4]), (b"c", [5, 5])]
    records += [(b"c", [6, 6])]
    path = tmp_path / "d"
    if binary:
        hand_binary(path, records, 2)
    else:
        path.write_bytes(b"6 2\n" + b"".join(w + b" %d %d\n" % tuple(v) for w, v in records))
    with caplog.at_level(logging.WARNING, logger="dpcnn"):
        found = read_word_vectors(path, {"a", "b"})
    assert found.words == ["a", "b"]
    np.testing.assert_array_equal(found.vectors, [[1, 1], [2, 2]])
    assert found.duplicates == found.summary()["duplicates"] == 3  # a once, c twice
    assert "3 duplicate words" in caplog.text


def test_invalid_utf8_words_are_replaced_and_counted(tmp_path, caplog):
    records = [(b"ok", [1.0]), (b"bad\xff", [2.0]), (b"caf\xc3\xa9", [3.0])]
    path = hand_binary(tmp_path / "u.bin", records, 1)
    with caplog.at_level(logging.WARNING, logger="dpcnn"):
        found = read_word_vectors(path, {"ok", "café", "bad\ufffd"})
    assert found.words == ["ok", "bad\ufffd", "café"]
    np.testing.assert_array_equal(found.vectors[:, 0], [1.0, 2.0, 3.0])
    assert found.invalid_utf8 == 1
    assert "byte offset 11" in found.invalid_utf8_examples[0]  # "3 1\n" + "ok " + 4 bytes
    assert "not valid UTF-8" in caplog.text


def test_records_past_the_header_count_are_ignored_with_a_warning(tmp_path, caplog):
    path = hand_binary(tmp_path / "v.bin", [(b"a", [1]), (b"b", [2])], 1, header=b"1 1\n")
    with caplog.at_level(logging.WARNING, logger="dpcnn"):
        assert read_word_vectors(path, {"a", "b"}).words == ["a"]
    assert "is ignored" in caplog.text


# ---------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    fails(tmp_path / "nope.bin", "word-vector file not found; set data.word_vectors")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"the 0.1 0.2\nof 0.3 0.4\n", r"invalid header 'the 0\.1 0\.2' on line 1"),  # GloVe
        (b"3\nw0 0.1\n", "invalid header '3'"),
        (b"x" * 5000, "no header line"),
        (b"0 5\n", "header says 0 words of dimension 5; both must be positive"),
    ],
)
def test_empty_missing_or_invalid_header(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    text = fails(path, message)
    assert "'<number of words> <dimension>'" in text or b"0 5" in content


def test_truncated_binary(tmp_path):
    path = gensim_file(tmp_path / "v.bin", 8, True, n=30)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # mid-record
    fails(path, r"truncated: the header announces 40 words but the file ends after 39 complete")
    rng = np.random.default_rng(3)
    hand_binary(path, [(b"w%d" % i, rng.random(3)) for i in range(5)], 3, header=b"9 3\n")
    fails(path, "announces 9 words but the file ends after 5 complete records")


def test_truncated_text(tmp_path):
    path = gensim_file(tmp_path / "v.txt", 4, False, n=20)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-3]))
    fails(path, r"announces 30 words but the file ends after 27 complete records \(at line 29\)")


def test_truncated_gzip(tmp_path):
    path = gensim_file(tmp_path / "v.bin.gz", 8, True)
    path.write_bytes(path.read_bytes()[:-200])
    fails(path, "(cut short|truncated)")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_wrong_dimension(tmp_path, binary):
    path = gensim_file(tmp_path / "v", 7, binary, n=10)
    fails(path, "the header says dimension 7 but 300 is expected; use a file", expected_dim=300)
    assert read_word_vectors(path, {"w1"}, expected_dim=7).words == ["w1"]


@pytest.mark.parametrize(
    "body, match",
    [
        (b"w0 0.1 0.2 0.3\nw1 0.1 0.2\nw2 0.1 0.2 0.3\n", r"line 3 \(word 'w1'\) has 2 values"),
        (b"w0 0.1 0.2 0.3 0.4\nw1 0.1 0.2 0.3\nw2 1 2 3\n", r"line 2 \(word 'w0'\) has 4 values"),
        (b"w0 0.1 0.2 0.3\n\nw2 1 2 3\n", r"line 3 \(word ''\) has 0 values"),
    ],
)
def test_text_line_with_the_wrong_number_of_values(tmp_path, body, match):
    path = tmp_path / "v.txt"
    path.write_bytes(b"3 3\n" + body)
    fails(path, match + " but the header says dimension 3", wanted={"w0"})


def test_text_value_that_is_not_a_number(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"2 2\nw0 0.1 0.2\nw1 0.1 oops\n")
    fails(path, r"line 3 has a value that is not a number")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_non_finite_wanted_vector(tmp_path, binary):
    path = tmp_path / "n"
    if binary:
        hand_binary(path, [(b"a", [1.0, np.nan]), (b"b", [1.0, 2.0])], 2)
    else:
        path.write_bytes(b"2 2\na 1 inf\nb 1 2\n")
    fails(path, r"1 wanted vectors contain NaN or infinite values \(e\.g\. \['a'\]\)", {"a", "b"})
    assert read_word_vectors(path, {"b"}).words == ["b"]  # unwanted vectors are not checked


def test_none_of_the_wanted_words(tmp_path):
    path = gensim_file(tmp_path / "v.bin", 3, True, n=10)
    fails(
        path,
        r"none of the 2 wanted words \(e\.g\. \['W1', 'cat'\]\) is in this file",
        {"W1", "cat"},
    )


def test_binary_without_word_separator(tmp_path, monkeypatch):
    monkeypatch.setattr(wv, "MAX_WORD_BYTES", 64)
    path = tmp_path / "junk.bin"
    path.write_bytes(b"2 3\n" + b"x" * 500)
    fails(path, "record 1 at byte offset 4 has no space after its word", {"x"})


def test_no_wanted_words_and_error_type(tmp_path):
    with pytest.raises(ValueError, match="no words wanted"):
        read_word_vectors(tmp_path / "v.bin", {""})
    assert issubclass(WordVectorsError, ValueError)


# ------------------------------------------------------------------- vocabulary + matrix

CAPTIONS = ["A dog runs on the grass.", "the dog (brown) jumps", "a cat-dog sleeps", ""]


def small_vectors(tmp_path: Path) -> Path:
    words = ["grass", "dog", "the", "cat", "runs", "Dog", "jumps", "zebra"]
    kv = KeyedVectors(4)
    kv.add_vectors(words, np.arange(len(words) * 4, dtype=np.float32).reshape(-1, 4))
    kv.save_word2vec_format(str(tmp_path / "small.bin"), binary=True)
    return tmp_path / "small.bin"


def test_vocabulary_in_file_order_with_report(tmp_path):
    path = small_vectors(tmp_path)
    vocab, matrix, report = build_vocabulary_and_matrix(CAPTIONS, path, " -.,()", False)
    assert vocab.words == ("grass", "dog", "the", "cat", "runs", "jumps")  # no Dog, no zebra
    assert vocab.split_chars == " -.,()" and vocab.lowercase is False
    np.testing.assert_array_equal(matrix, np.float32([0, 1, 2, 3, 4, 6])[:, None] * 4 + range(4))
    assert vocab.encode("A dog runs on the grass.", 32) == [2, 5, 3, 1]
    # Tokens: A dog runs on the grass | the dog brown jumps | a cat dog sleeps
    assert report["captions"] == 4 and report["captions_without_tokens"] == 1
    assert (report["tokens_seen"], report["distinct_tokens"]) == (14, 11)
    assert (report["in_vocabulary_words"], report["in_vocabulary_tokens"]) == (6, 9)
    assert (report["oov_tokens"], report["oov_distinct"]) == (5, 5)
    assert report["oov_token_share"] == round(5 / 14, 6)
    assert sorted(t for t, _ in report["oov_examples"]) == ["A", "a", "brown", "on", "sleeps"]
    assert report["word_vectors"]["file_words"] == 8 and report["word_vectors"]["dim"] == 4
    assert report["word_vectors"]["duplicates"] == report["word_vectors"]["invalid_utf8"] == 0


def test_vocabulary_lowercase_and_errors(tmp_path):
    path = small_vectors(tmp_path)
    vocab, _, _ = build_vocabulary_and_matrix(["The DOG"], path, " ", lowercase=True)
    assert vocab.words == ("dog", "the") and vocab.encode("THE Dog", 4) == [2, 1]
    with pytest.raises(WordVectorsError, match="header says dimension 4 but 300 is expected"):
        build_vocabulary_and_matrix(CAPTIONS, path, expected_dim=300)
    with pytest.raises(ValueError, match="contain no tokens"):
        build_vocabulary_and_matrix(["", "..."], path)


# ------------------------------------------------------------------ the demo's own vectors

SENTENCES = [
    s.split()
    for s in [
        "a red circle left of a blue square",
        "a green triangle above a red circle",
        "the blue square right of the green triangle",
        "two red circles and a blue square",
    ]
    * 5
]

TRAIN_SNIPPET = """
import sys
from dpcnn.data.word_vectors import train_word_vectors
sentences = [s.split() for s in {sentences!r}]
train_word_vectors(sentences, dim=16, seed=3, path=sys.argv[1], epochs=3)
"""


def test_train_word_vectors_is_deterministic_across_processes(tmp_path):
    a = train_word_vectors(SENTENCES, dim=16, seed=3, path=tmp_path / "a.bin", epochs=3)
    code = TRAIN_SNIPPET.format(sentences=[" ".join(s) for s in SENTENCES])
    for hash_seed in ("1", "2"):
        out = tmp_path / f"sub{hash_seed}.bin"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=300)
        assert out.read_bytes() == a.read_bytes()
    other = train_word_vectors(SENTENCES, dim=16, seed=4, path=tmp_path / "c.bin", epochs=3)
    assert other.read_bytes() != a.read_bytes()


def test_trained_vectors_load_like_googlenews(tmp_path):
    path = train_word_vectors(SENTENCES, dim=8, seed=0, path=tmp_path / "demo" / "w.bin", epochs=2)
    assert path.read_bytes().split(b"\n", 1)[0] == b"15 8"  # 15 distinct words
    found = read_word_vectors(path, {"red", "circle", "purple"}, expected_dim=8)
    assert found.format == "binary" and sorted(found.words) == ["circle", "red"]
    ref = KeyedVectors.load_word2vec_format(str(path), binary=True)
    np.testing.assert_array_equal(found.vectors, np.stack([ref[w] for w in found.words]))
    with pytest.raises(ValueError, match="no non-empty sentences"):
        train_word_vectors([[], []], dim=8, seed=0, path=tmp_path / "x.bin")
