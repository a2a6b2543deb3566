"""Tests for dpcnn.search (``dpcnn search``): text → image and image → text on the tiny run,
the gallery cache, a user gallery with a corrupt image, vocabulary errors, the CLI."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from dpcnn.cli import main
from dpcnn.search import Searcher, SearchError, find_images, search_image, search_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_ROW = re.compile(r"^\s*\d+\s+-?\d+\.\d{4}\s")  # "   1  -0.1234  item"
QUERY = "a big red square above a small blue circle"


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the tiny run that these tests may write caches into."""
    out = tmp_path_factory.mktemp("search") / "run"
    shutil.copytree(tiny_run, out)
    return out


@pytest.fixture(scope="module")
def reference(run):
    """Independent features: Encoders on the test split and on QUERY (stage 2)."""
    from dpcnn.encoders import Encoders
    from dpcnn.training import load_trained

    cfg, model, data = load_trained(run, 2)
    enc = Encoders(model.image_encoder, model.text_encoder, cfg)
    test = data.splits["test"]
    tokens, lengths = data.vocab.encode_many([QUERY], cfg.data.max_len)
    return {
        "test": test,
        "images": enc.images(test.paths, test.sizes, progress=False),
        "texts": enc.texts(test.tokens, test.lengths, progress=False),
        "query": enc.texts(tokens, lengths, progress=False)[0],
    }


def _gallery_files(run):
    return sorted(p for p in (run / "gallery").glob("*.npz") if not p.name.startswith("captions-"))


def _spy_images(monkeypatch):
    from dpcnn.encoders import Encoders

    calls = []
    original = Encoders.images

    def images(self, paths, *args, **kwargs):
        calls.append(list(paths))
        return original(self, paths, *args, **kwargs)

    monkeypatch.setattr(Encoders, "images", images)
    return calls


def test_text_search_ranks_the_test_gallery_by_cosine(run, reference):
    results = search_text(run, QUERY, k=5)
    scores = reference["images"] @ reference["query"]
    order = np.argsort(-scores, kind="stable")[:5]
    assert [p for _, p in results] == [str(reference["test"].paths[i]) for i in order]
    np.testing.assert_allclose([s for s, _ in results], scores[order], atol=1e-5)
    assert all(a[0] >= b[0] for a, b in zip(results, results[1:]))


def test_gallery_cache_is_written_once_and_reused(tiny_run, tmp_path, monkeypatch):
    fresh = tmp_path / "run"
    shutil.copytree(tiny_run, fresh)
    calls = _spy_images(monkeypatch)
    first = search_text(fresh, QUERY, k=3)
    assert len(calls) == 1 and len(calls[0]) == 16  # the 16 test images, encoded once
    files = _gallery_files(fresh)
    assert len(files) == 1
    written = files[0].stat().st_mtime_ns
    with np.load(files[0], allow_pickle=False) as z:
        assert z["features"].shape == (16, 32) and z["features"].dtype == np.float32

    second = search_text(fresh, "a green triangle", k=3)
    third = search_text(fresh, QUERY, k=3)
    assert len(calls) == 1  # no image was encoded again
    assert _gallery_files(fresh) == files and files[0].stat().st_mtime_ns == written
    assert [p for _, p in third] == [p for _, p in first]
    np.testing.assert_allclose([s for s, _ in third], [s for s, _ in first], atol=1e-6)
    assert len(second) == 3

    # Another stage is another gallery (a second cache file).
    search_text(fresh, QUERY, k=3, stage=1)
    assert len(calls) == 2 and len(_gallery_files(fresh)) == 2


def test_image_search_ranks_the_test_captions(run, reference):
    test = reference["test"]
    results = search_image(run, test.paths[3], k=5)
    scores = reference["texts"] @ reference["images"][3]
    order = np.argsort(-scores, kind="stable")[:5]
    assert [c for _, c in results] == [test.captions[i] for i in order]
    np.testing.assert_allclose([s for s, _ in results], scores[order], atol=1e-5)
    assert all(a[0] >= b[0] for a, b in zip(results, results[1:]))


def _user_gallery(folder, test_paths):
    (folder / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(test_paths[0], folder / "a.jpg")
    shutil.copy(test_paths[1], folder / "sub" / "b.JPG")
    Image.new("RGB", (40, 30), (220, 30, 30)).save(folder / "sub" / "deeper" / "c.png")
    (folder / "bad.jpg").write_bytes(b"this is not an image")
    (folder / "notes.txt").write_text("not an image either, and not a gallery file")
    return {str((folder / n).resolve()) for n in ("a.jpg", "sub/b.JPG", "sub/deeper/c.png")}


def test_find_images_is_recursive_sorted_and_filters_suffixes(tmp_path, tiny_data):
    good = _user_gallery(tmp_path, tiny_data.splits["test"].paths)
    found = find_images(tmp_path)
    assert found == sorted(good | {str((tmp_path / "bad.jpg").resolve())})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SearchError, match="no .jpg/.jpeg/.png images under"):
        find_images(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "missing")


def test_user_gallery_reports_and_skips_a_corrupt_image(run, tiny_data, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    good = _user_gallery(folder, tiny_data.splits["test"].paths)
    grid = tmp_path / "grid.png"
    assert main(["search", "--run", str(run), "--text", QUERY, "--k", "5", "--gallery", str(folder),
                 "--out", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 image file(s) that could not be decoded:" in out
    assert f"{(folder / 'bad.jpg').resolve()}: corrupt image: Unknown image file format" in out
    rows = [line.split() for line in out.splitlines() if RESULT_ROW.match(line)]
    assert len(rows) == 3  # k=5 but only three usable images
    assert {r[2] for r in rows} == good
    assert grid.read_bytes()[:8] == PNG_SIGNATURE

    # The API gives the same three, from the cache, with the skipped image still reported.
    searcher = Searcher(run)
    results, gallery = searcher.text_to_image(QUERY, 5, folder)
    assert gallery.from_cache and {p for _, p in results} == good
    assert [p for p, _ in gallery.skipped] == [str((folder / "bad.jpg").resolve())]


def test_gallery_without_a_decodable_image_is_an_error(run, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SearchError, match="none of the 1 images"):
        search_text(run, QUERY, 5, gallery=tmp_path)


def test_query_without_a_vocabulary_word_is_a_clear_error(run, monkeypatch):
    from dpcnn.encoders import Encoders

    monkeypatch.setattr(Encoders, "__init__", lambda *a, **k: pytest.fail("no model is needed for this error"))
    with pytest.raises(SearchError) as err:
        search_text(run, "zebra Quux!", 5)
    message = str(err.value)
    assert "['zebra', 'Quux!']" in message and "none of the query's tokens" in message
    assert "is in the vocabulary" in message
    with pytest.raises(SearchError, match="--k must be at least 1"):
        search_text(run, QUERY, 0)


def test_cli_prints_a_search_error_and_exits_2(run, capsys):
    assert main(["search", "--run", str(run), "--text", "zebra"]) == 2
    err = capsys.readouterr().err
    assert "dpcnn search: error: none of the query's tokens ['zebra'] is in the vocabulary" in err
    assert "Traceback" not in err


def test_cli_image_search_prints_k_sorted_rows_and_draws(run, tiny_data, tmp_path, capsys):
    grid = tmp_path / "captions.png"
    image = tiny_data.splits["test"].paths[0]
    assert main(["search", "--run", str(run), "--image", str(image), "--k", "4", "--out", str(grid)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if RESULT_ROW.match(line)]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3, 4]
    scores = [float(r.split()[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(" ".join(r.split()[2:]) in tiny_data.splits["test"].captions for r in rows)
    assert grid.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_search_and_export_of_a_missing_run_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["search", "--run", str(missing), "--text", "a red square"]) == 2
    err = capsys.readouterr().err
    assert "dpcnn search: error:" in err and str(missing) in err and "does not exist" in err
    assert main(["export", "--run", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "dpcnn export: error:" in err and str(missing) in err
    assert not (tmp_path / "out").exists()
