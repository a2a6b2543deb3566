"""The streaming word2vec loader against gensim, its errors, the vocabulary cache and the demo's
own vectors (PAPER_SPEC §2.1; DESIGN §3 "Embedded default")."""

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

import dpcnn.data.word_vectors as wv
from dpcnn.data.vocab import Vocabulary
from dpcnn.data.word_vectors import (
    WordVectorsError,
    build_vocabulary_and_matrix,
    cached_vocabulary_and_matrix,
    load_vectors_for,
    read_word_vectors,
    train_word_vectors,
)

REPO = Path(__file__).resolve().parents[1]

# Words gensim will write, in this order: ASCII, mixed case, multi-byte UTF-8, phrases.
SPECIAL = ["Dog", "dog", "DOG", "café", "naïve", "Ελλάδα", "New_York", "x", "a-b", "über"]


def make_keyed_vectors(dim: int, n: int = 500, seed: int = 0) -> KeyedVectors:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n)]
    # Interleave the special words so that file order differs from any sorted order.
    for j, w in enumerate(SPECIAL):
        words.insert(37 * j + 5, w)
    kv = KeyedVectors(dim)
    vectors = (rng.standard_normal((len(words), dim)) * 3).astype(np.float32)  # raw, not unit norm
    kv.add_vectors(words, vectors)
    return kv


def write(kv: KeyedVectors, path: Path, binary: bool) -> Path:
    kv.save_word2vec_format(str(path), binary=binary)
    return path


def wanted_words(kv: KeyedVectors) -> set[str]:
    rng = np.random.default_rng(1)
    some = rng.choice(
        [w for w in kv.index_to_key if w.startswith("w")], size=60, replace=False
    ).tolist()
    return set(some) | set(SPECIAL) | {"absent", "Cafe", "DOg", ""}


def assert_same_as_gensim(path: Path, binary: bool, wanted: set[str], words, vectors) -> None:
    ref = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    expected_order = [w for w in ref.index_to_key if w in wanted]  # file order
    assert words == expected_order
    assert vectors.dtype == np.float32 and vectors.shape == (len(words), ref.vector_size)
    for i, w in enumerate(words):
        np.testing.assert_array_equal(vectors[i], ref[w])


@pytest.mark.parametrize("dim", [7, 300])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_matches_gensim_in_file_order(tmp_path, dim, binary):
    kv = make_keyed_vectors(dim)
    path = write(kv, tmp_path / f"v{dim}.{'bin' if binary else 'txt'}", binary)
    wanted = wanted_words(kv)
    words, vectors = load_vectors_for(path, wanted)
    assert len(words) == 60 + len(SPECIAL)
    assert_same_as_gensim(path, binary, wanted, words, vectors)
    scan = read_word_vectors(path, wanted, expected_dim=dim)
    assert scan.format == ("binary" if binary else "text")
    assert scan.file_words == len(kv) and scan.dim == dim
    assert scan.duplicates == 0 and scan.invalid_utf8 == 0
    # Raw vectors: not normalised.
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_gzip_input(tmp_path, binary):
    kv = make_keyed_vectors(11)
    path = write(kv, tmp_path / "v.bin.gz", binary)  # gensim compresses .gz names
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    wanted = wanted_words(kv)
    words, vectors = load_vectors_for(path, wanted)
    assert_same_as_gensim(path, binary, wanted, words, vectors)


@pytest.mark.parametrize("chunk", [5, 64, 1000])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_records_across_chunk_boundaries(tmp_path, monkeypatch, chunk, binary):
    monkeypatch.setattr(wv, "CHUNK_BYTES", chunk)
    kv = make_keyed_vectors(5, n=200)
    path = write(kv, tmp_path / "v.bin", binary)
    wanted = wanted_words(kv)
    words, vectors = load_vectors_for(path, wanted)
    assert_same_as_gensim(path, binary, wanted, words, vectors)


def binary_file(
    path: Path,
    records: list[tuple[bytes, np.ndarray]],
    dim: int,
    sep: bytes = b"",
    header: bytes | None = None,
) -> Path:
    """A hand-written word2vec binary file; ``sep`` is written after each vector (word2vec.c
    writes b'\\n')."""
    with open(path, "wb") as f:
        f.write(header if header is not None else f"{len(records)} {dim}\n".encode())
        for word, vec in records:
            f.write(word + b" " + np.asarray(vec, dtype="<f4").tobytes() + sep)
    return path


def test_word2vec_c_newline_separated_records(tmp_path):
    rng = np.random.default_rng(2)
    records = [(f"w{i}".encode(), rng.standard_normal(4)) for i in range(50)]
    path = binary_file(tmp_path / "c.bin", records, 4, sep=b"\n")
    wanted = {"w0", "w7", "w49", "nope"}
    words, vectors = load_vectors_for(path, wanted)
    assert words == ["w0", "w7", "w49"]
    assert_same_as_gensim(path, True, wanted, words, vectors)


def test_duplicates_keep_the_first_and_are_counted(tmp_path, caplog):
    records = [
        (b"a", [1, 1]),
        (b"b", [2, 2]),
        (b"a", [3, 3]),
        (b"c", [4, 4]),
        (b"c", [5, 5]),
        (b"c", [6, 6]),
    ]
    path = binary_file(tmp_path / "d.bin", records, 2)
    with caplog.at_level(logging.WARNING, logger="dpcnn"):
        scan = read_word_vectors(path, {"a", "b"})
    assert scan.words == ["a", "b"]
    np.testing.assert_array_equal(scan.vectors, [[1, 1], [2, 2]])
    assert scan.duplicates == 3  # a once, c twice
    assert scan.duplicate_examples == ["a"]
    assert "3 duplicate words" in caplog.text


def test_invalid_utf8_words_are_replaced_and_counted(tmp_path, caplog):
    records = [(b"ok", [1.0]), (b"bad\xff", [2.0]), (b"caf\xc3\xa9", [3.0])]
    path = binary_file(tmp_path / "u.bin", records, 1)
    with caplog.at_level(logging.WARNING, logger="dpcnn"):
        scan = read_word_vectors(path, {"ok", "café", "bad\ufffd"})
    assert scan.words == ["ok", "bad\ufffd", "café"]
    np.testing.assert_array_equal(scan.vectors[:, 0], [1.0, 2.0, 3.0])
    assert scan.invalid_utf8 == 1
    # header "3 1\n" (4 bytes) + "ok " (3) + one float (4) = byte offset 11
    assert "byte offset 11" in scan.invalid_utf8_examples[0]
    assert "not valid UTF-8" in caplog.text


# ---------------------------------------------------------------------------------- bad input


def test_truncated_binary_mid_record(tmp_path):
    kv = make_keyed_vectors(8, n=30)
    path = write(kv, tmp_path / "v.bin", True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(
        WordVectorsError,
        match=r"v\.bin: truncated: record 40 of 40 at byte offset \d+ is cut short",
    ):
        load_vectors_for(path, {"w1"})


def test_truncated_binary_at_record_boundary(tmp_path):
    rng = np.random.default_rng(3)
    records = [(f"w{i}".encode(), rng.standard_normal(3)) for i in range(5)]
    path = binary_file(tmp_path / "v.bin", records, 3, header=b"9 3\n")
    with pytest.raises(WordVectorsError, match="announces 9 words but the file ends after 5"):
        load_vectors_for(path, {"w1"})


def test_truncated_gzip_stream(tmp_path):
    kv = make_keyed_vectors(8, n=300)
    path = write(kv, tmp_path / "v.bin.gz", True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WordVectorsError, match=r"v\.bin\.gz: .*(cut short|corrupt)"):
        load_vectors_for(path, {"w1"})


def test_truncated_text(tmp_path):
    kv = make_keyed_vectors(4, n=20)
    path = write(kv, tmp_path / "v.txt", False)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-3]))
    with pytest.raises(
        WordVectorsError, match=r"announces 30 words but the file ends at line 28 after 27"
    ):
        load_vectors_for(path, {"w1"})


def test_text_line_with_wrong_number_of_values(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 3\nw0 0.1 0.2 0.3\nw1 0.1 0.2\nw2 0.1 0.2 0.3\n")
    with pytest.raises(
        WordVectorsError, match=r"line 3 \(word 'w1'\) has 2 values but the header says dimension 3"
    ):
        load_vectors_for(path, {"w0"})


def test_text_first_line_with_wrong_number_of_values(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\nw0 0.1 0.2 0.3 0.4\nw1 0.1 0.2 0.3\n")
    with pytest.raises(WordVectorsError, match=r"line 2 \(word 'w0'\) has 4 values"):
        load_vectors_for(path, {"w1"})


def test_text_value_that_is_not_a_number(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 2\nw0 0.1 0.2\nw1 0.1 oops\n")
    with pytest.raises(
        WordVectorsError, match=r"line 3 \(word 'w1'\) has a value that is not a number"
    ):
        load_vectors_for(path, {"w1"})


def test_non_finite_wanted_vector(tmp_path):
    path = binary_file(tmp_path / "n.bin", [(b"a", [1.0, np.nan]), (b"b", [1.0, 2.0])], 2)
    with pytest.raises(WordVectorsError, match=r"NaN or infinite values \(e\.g\. \['a'\]\)"):
        load_vectors_for(path, {"a", "b"})
    assert load_vectors_for(path, {"b"})[0] == ["b"]  # unwanted vectors are not converted


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        # GloVe-style text without a header line:
        (b"the 0.1 0.2\nof 0.3 0.4\n", r"invalid header 'the 0\.1 0\.2' at byte offset 0"),
        (b"3\nw0 0.1\n", "invalid header '3'"),
        (b"abc def\n", "invalid header 'abc def'"),
        (b"0 5\n", "header says 0 words of dimension 5; both must be positive"),
        (b"x" * 5000, "no header line"),
    ],
)
def test_bad_header(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(WordVectorsError, match=message) as info:
        load_vectors_for(path, {"the"})
    assert str(path) in str(info.value)
    if b"0 5" not in content:
        assert "<number of words> <dimension>" in str(info.value)


def test_binary_without_word_separator(tmp_path, monkeypatch):
    monkeypatch.setattr(wv, "MAX_WORD_BYTES", 64)
    path = tmp_path / "junk.bin"
    path.write_bytes(b"2 3\n" + b"x" * 500)
    with pytest.raises(
        WordVectorsError, match="record 1 at byte offset 4 has no space after its word"
    ):
        load_vectors_for(path, {"x"})


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_expected_dim_mismatch(tmp_path, binary):
    path = write(make_keyed_vectors(7, n=10), tmp_path / "v.bin", binary)
    with pytest.raises(WordVectorsError, match="header says dimension 7 but 300 is expected"):
        load_vectors_for(path, {"w1"}, expected_dim=300)
    assert load_vectors_for(path, {"w1"}, expected_dim=7)[0] == ["w1"]


def test_no_matching_words(tmp_path):
    path = write(make_keyed_vectors(3, n=10), tmp_path / "v.bin", True)
    with pytest.raises(
        WordVectorsError, match=r"none of the 2 wanted words \(e\.g\. \['W1', 'cat'\]\)"
    ):
        load_vectors_for(path, {"W1", "cat"})


def test_missing_file_and_empty_wanted(tmp_path):
    with pytest.raises(WordVectorsError, match="not found"):
        load_vectors_for(tmp_path / "nope.bin", {"a"})
    path = write(make_keyed_vectors(3, n=10), tmp_path / "v.bin", True)
    with pytest.raises(ValueError, match="no words wanted"):
        load_vectors_for(path, set())
    assert issubclass(WordVectorsError, ValueError)


# ------------------------------------------------------------------------ vocabulary + matrix

CAPTIONS = [
    "A dog runs on the grass.",
    "the dog (brown) jumps",
    "a cat-dog sleeps",
    "",
]


@pytest.fixture
def small_vectors(tmp_path) -> Path:
    """File order: grass, dog, the, cat, runs, Dog, jumps (a, A, on, brown, sleeps absent)."""
    words = ["grass", "dog", "the", "cat", "runs", "Dog", "jumps", "zebra"]
    kv = KeyedVectors(4)
    kv.add_vectors(words, np.arange(len(words) * 4, dtype=np.float32).reshape(-1, 4))
    return write(kv, tmp_path / "small.bin", True)


def test_build_vocabulary_in_file_order(small_vectors):
    vocab, matrix, report = build_vocabulary_and_matrix(CAPTIONS, small_vectors, " -.,()", False)
    # File order, not caption order; no "Dog" (not in the captions), no "zebra".
    assert vocab.words == ("grass", "dog", "the", "cat", "runs", "jumps")
    assert vocab.split_chars == " -.,()" and vocab.lowercase is False
    ref = KeyedVectors.load_word2vec_format(str(small_vectors), binary=True)
    np.testing.assert_array_equal(matrix, np.stack([ref[w] for w in vocab.words]))
    # Tokens: A dog runs on the grass | the dog brown jumps | a cat dog sleeps
    assert report["captions"] == 4 and report["captions_without_tokens"] == 1
    assert report["tokens_seen"] == 14
    assert report["distinct_tokens"] == 11
    assert report["in_vocabulary_words"] == 6
    assert report["in_vocabulary_tokens"] == 9  # dog×3 runs the×2 grass jumps cat
    assert report["oov_tokens"] == 5 and report["oov_distinct"] == 5
    assert sorted(t for t, _ in report["oov_examples"]) == ["A", "a", "brown", "on", "sleeps"]
    assert report["word_vectors"]["file_words"] == 8
    assert vocab.encode("A dog runs on the grass.", 32) == [2, 5, 3, 1]


def test_build_vocabulary_lowercase(small_vectors):
    vocab, _, _ = build_vocabulary_and_matrix(["The DOG"], small_vectors, " ", lowercase=True)
    assert vocab.words == ("dog", "the")
    assert vocab.encode("THE Dog", 4) == [2, 1]


def test_cache_reuse_and_invalidation(tmp_path, small_vectors, monkeypatch):
    cache = tmp_path / "cache"
    v1, m1, r1 = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " -.,()", False)
    assert r1["cache"] == "built"
    assert sorted(p.name for p in cache.iterdir()) == [
        "embeddings.npy",
        "embeddings_meta.json",
        "vocab.json",
    ]
    assert np.load(cache / "embeddings.npy", allow_pickle=False).shape == (6, 4)
    assert Vocabulary.load(cache / "vocab.json") == v1

    calls = []
    real = wv.read_word_vectors

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(wv, "read_word_vectors", counting)

    v2, m2, r2 = cached_vocabulary_and_matrix(cache, iter(CAPTIONS), small_vectors, " -.,()", False)
    assert r2["cache"] == "reused" and not calls
    assert v2 == v1 and np.array_equal(m2, m1)
    assert {k: v for k, v in r2.items() if k != "cache"} == {
        k: v for k, v in r1.items() if k != "cache"
    }

    # Other captions, other settings, a changed vectors file: rebuilt.
    _, _, r = cached_vocabulary_and_matrix(
        cache, CAPTIONS + ["zebra"], small_vectors, " -.,()", False
    )
    assert r["cache"] == "built" and len(calls) == 1
    _, _, r = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " ", False)
    assert r["cache"] == "built" and len(calls) == 2
    v, _, r = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " -.,()", True)
    assert r["cache"] == "built" and len(calls) == 3 and "Dog" not in v
    _, _, r = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " -.,()", True)
    assert r["cache"] == "reused" and len(calls) == 3
    st = small_vectors.stat()
    os.utime(small_vectors, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _, _, r = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " -.,()", True)
    assert r["cache"] == "built" and len(calls) == 4

    # A damaged data file is detected (hash in the meta) and rebuilt, not silently used.
    (cache / "embeddings.npy").write_bytes(b"garbage")
    v, m, r = cached_vocabulary_and_matrix(cache, CAPTIONS, small_vectors, " -.,()", True)
    assert r["cache"] == "built" and len(calls) == 5 and m.shape == (len(v), 4)


def test_cache_expected_dim_is_checked(tmp_path, small_vectors):
    with pytest.raises(WordVectorsError, match="header says dimension 4 but 300 is expected"):
        cached_vocabulary_and_matrix(
            tmp_path / "c", CAPTIONS, small_vectors, " ", False, expected_dim=300
        )


# ---------------------------------------------------------------------- the demo's own vectors

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
    b = train_word_vectors(SENTENCES, dim=16, seed=3, path=tmp_path / "b.bin", epochs=3)
    assert a.read_bytes() == b.read_bytes()
    # Retraining onto an identical file leaves it untouched (its mtime keys the embedding cache).
    before = a.stat().st_mtime_ns
    os.utime(a, ns=(before - 10**9, before - 10**9))
    train_word_vectors(SENTENCES, dim=16, seed=3, path=a, epochs=3)
    assert a.stat().st_mtime_ns == before - 10**9

    code = TRAIN_SNIPPET.format(sentences=[" ".join(s) for s in SENTENCES])
    for hash_seed in ("1", "2"):
        out = tmp_path / f"sub{hash_seed}.bin"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=300)
        assert out.read_bytes() == a.read_bytes()

    other = train_word_vectors(SENTENCES, dim=16, seed=4, path=tmp_path / "c.bin", epochs=3)
    assert other.read_bytes() != a.read_bytes()


def test_trained_vectors_load_like_googlenews(tmp_path):
    path = train_word_vectors(
        SENTENCES, dim=8, seed=0, path=tmp_path / "demo" / "w2v.bin", epochs=2
    )
    header = path.read_bytes().split(b"\n", 1)[0]
    assert header == b"15 8"  # the 15 distinct words, binary word2vec header
    scan = read_word_vectors(path, {"red", "circle", "purple"}, expected_dim=8)
    assert scan.format == "binary"
    assert sorted(scan.words) == ["circle", "red"]
    ref = KeyedVectors.load_word2vec_format(str(path), binary=True)
    for i, w in enumerate(scan.words):
        np.testing.assert_array_equal(scan.vectors[i], ref[w])
    assert [p.name for p in path.parent.iterdir()] == ["w2v.bin"]  # no temp file left
    with pytest.raises(ValueError, match="no non-empty sentences"):
        train_word_vectors([[], []], dim=8, seed=0, path=tmp_path / "x.bin")


def test_gzip_text_written_by_hand(tmp_path):
    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wb") as f:  # CRLF, and a trailing space as word2vec.c writes
        f.write(b"2 2\r\nalpha 1 2 \r\nbeta 3.5 -4e-1\r\n")
    words, vectors = load_vectors_for(path, {"beta", "alpha"})
    assert words == ["alpha", "beta"]
    np.testing.assert_array_equal(vectors, np.array([[1, 2], [3.5, -0.4]], dtype=np.float32))
