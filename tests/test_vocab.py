"""Tokenisation, dictionary ids and caption encoding (PAPER_SPEC §2.1) on hand-made examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpcnn.data.vocab import Vocabulary, tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a man", ["a", "man"]),
        ("bike-path", ["bike", "path"]),
        ("Dr.Who", ["Dr", "Who"]),
        ("red,blue", ["red", "blue"]),
        ("a (small) dog", ["a", "small", "dog"]),
        ("x(y)z", ["x", "y", "z"]),
    ],
)
def test_tokenize_splits_on_each_default_character(text, expected):
    assert tokenize(text) == expected


def test_tokenize_drops_empty_pieces_between_adjacent_separators():
    assert tokenize("  A  man -- rides,, a (bike).  ") == ["A", "man", "rides", "a", "bike"]


def test_tokenize_is_case_sensitive_unless_lowercase():
    assert tokenize("Dog dog DOG") == ["Dog", "dog", "DOG"]
    assert tokenize("Dog dog DOG", lowercase=True) == ["dog", "dog", "dog"]


@pytest.mark.parametrize("text", ["", " ", "     ", " - . , ( ) "])
def test_tokenize_empty_and_separator_only_captions(text):
    assert tokenize(text) == []
    assert tokenize(text, lowercase=True) == []


def test_tokenize_only_the_given_characters_separate():
    # Whitespace-only tokenisation (Flickr30k dictionary): '-' and '.' stay inside tokens.
    assert tokenize("a bike-path. ok", split_chars=" ") == ["a", "bike-path.", "ok"]
    # With the space as a separator every whitespace separates (COCO captions end in "\n").
    assert tokenize("a\tb c\n") == ["a", "b", "c"]
    assert tokenize("a\tb-c", split_chars="-") == ["a\tb", "c"]
    # COCO adds '?'.
    assert tokenize("is it red?yes", split_chars=" -.,()?") == ["is", "it", "red", "yes"]
    assert tokenize("is it red?yes") == ["is", "it", "red?yes"]


def test_tokenize_rejects_empty_split_chars():
    with pytest.raises(ValueError, match="split_chars"):
        tokenize("a b", split_chars="")


@pytest.fixture
def vocab() -> Vocabulary:
    # ids: man=1 dog=2 riding=3 bike=4 Red=5
    return Vocabulary(["man", "dog", "riding", "bike", "Red"])


def test_ids_start_at_one(vocab):
    assert len(vocab) == 5
    assert [vocab.id_of(w) for w in vocab.words] == [1, 2, 3, 4, 5]
    assert "dog" in vocab and "a" not in vocab
    with pytest.raises(KeyError, match="'cat'"):
        vocab.id_of("cat")


def test_encode_drops_oov_tokens_and_closes_up(vocab):
    # "A", "a", "on" are out of vocabulary: no UNK, the remaining words close up.
    assert vocab.encode("A man riding a bike", 32) == [1, 3, 4]
    assert vocab.encode("a dog on a bike", 32) == [2, 4]
    assert vocab.encode("a cat", 32) == []
    assert vocab.encode("", 32) == []


def test_encode_is_case_sensitive_by_default(vocab):
    assert vocab.encode("Man red Red", 32) == [5]


def test_encode_keeps_the_first_max_len_in_vocabulary_words(vocab):
    # OOV words do not use up the budget: the first 2 in-vocabulary words are kept.
    assert vocab.encode("a a a man a a dog riding bike", 2) == [1, 2]
    assert vocab.encode("man dog riding bike man", 4) == [1, 2, 3, 4]
    assert vocab.encode("man", 1) == [1]
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode("man", 0)


def test_encode_uses_the_stored_tokenisation_settings():
    lower = Vocabulary(["dog", "bike"], split_chars=" ", lowercase=True)
    assert lower.encode("DOG Bike", 8) == [1, 2]
    assert lower.encode("dog-bike", 8) == []  # '-' does not split with split_chars=" "
    default = Vocabulary(["dog", "bike"])
    assert default.encode("DOG Bike", 8) == []
    assert default.encode("dog-bike", 8) == [1, 2]


def test_encode_many_left_aligned_zero_padded(vocab):
    ids, lengths = vocab.encode_many(
        ["a man riding a bike", "", "dog dog dog dog dog", "cat"], max_len=4
    )
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert ids.shape == (4, 4) and lengths.shape == (4,)
    np.testing.assert_array_equal(ids, [[1, 3, 4, 0], [0, 0, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 0, 4, 0])


def test_encode_many_of_nothing(vocab):
    ids, lengths = vocab.encode_many([], max_len=3)
    assert ids.shape == (0, 3) and lengths.shape == (0,)


def test_decode_skips_empty_slots(vocab):
    assert vocab.decode([1, 3, 4, 0, 0]) == "man riding bike"
    assert vocab.decode(np.array([0, 5], dtype=np.int32)) == "Red"
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([6])


def test_vocabulary_rejects_duplicates_and_empty_words():
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        Vocabulary(["a", ""])


def test_save_load_round_trip_keeps_settings(tmp_path):
    v = Vocabulary(["Zebra", "café", "dog"], split_chars=" ?", lowercase=True)
    path = tmp_path / "sub" / "vocab.json"
    v.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left
    loaded = Vocabulary.load(path)
    assert loaded == v
    assert loaded.words == ("Zebra", "café", "dog")
    assert loaded.split_chars == " ?" and loaded.lowercase is True
    assert loaded.encode("CAFÉ?dog", 4) == [2, 3]


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Vocabulary.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"words": ["a"]}))
    with pytest.raises(ValueError, match="not a dpcnn vocabulary"):
        Vocabulary.load(other)
