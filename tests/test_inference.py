"""Using a trained model anywhere: exports, ``dpcnn.load``, ``dpcnn search``, ``dpcnn alt-text``.

Expected features come from :mod:`helpers` (raw encoders on Pillow-decoded pixels, summed by
hand). The "fresh process" tests copy an export into an empty folder and run there with no
dataset, no run folder and no word vectors anywhere.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    PNG_SIGNATURE,
    check_search_output,
    decoded,
    reference_run_features,
    search_example,
)
from PIL import Image

from dpcnn.cli import main

QUERY = "a big red square above a small blue circle"


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the tiny run whose dataset, prepared data and word vectors are gone: only the run
    folder is left (its config names captions, images and vectors that no longer exist)."""
    out = tmp_path_factory.mktemp("inference") / "run"
    shutil.copytree(tiny_run, out)
    gone = out.parent / "deleted"
    cfg = json.loads((out / "config.json").read_text())
    cfg["data"].update(dataset="coco-format", root=str(gone), annotations=str(gone / "captions.json"),
                       images=str(gone / "images"), word_vectors=str(gone / "vectors.bin"))
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="module")
def gallery(tiny_data, tmp_path_factory):
    """A user's folder: six test images (one in a sub-folder), a TIFF, a corrupt JPEG and a text file."""
    folder = tmp_path_factory.mktemp("gallery")
    paths = [str(p) for p in tiny_data.splits["test"].paths[:6]]
    for i, p in enumerate(paths):
        target = folder / ("sub" if i == 5 else "") / f"img{i}.jpg"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(p, target)
    Image.fromarray(decoded(paths[0])).save(folder / "scan.tif")
    good = Path(paths[1]).read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 4])
    (folder / "notes.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def export(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    return out


def test_export_folder_holds_the_models_vocabulary_captions_and_a_readme(export, run, tiny_cfg, tiny_data):
    names = {p.name for p in export.iterdir()}
    assert {"image_features.keras", "text_features.keras", "vocab.json", "captions.txt", "export.json",
            "config.json", "README.md"} <= names
    info = json.loads((export / "export.json").read_text())
    assert info["stage"] == max(int(p.parent.name.removeprefix("stage")) for p in run.glob("stage*/done.json"))
    assert info["max_len"] == tiny_cfg.data.max_len and info["embed_dim"] == tiny_cfg.model.embed_dim
    assert info["vocab_size"] == len(tiny_data.vocab)
    # The mean the model subtracts: the mean colour of the training images, recomputed from the files
    # with Pillow (PAPER_SPEC §1: the dataset's RGB mean over its training images).
    by_hand = np.mean([decoded(p).reshape(-1, 3).mean(axis=0) for p in tiny_data.splits["train"].paths], axis=0)
    np.testing.assert_allclose(info["pixel_mean"], by_hand, atol=0.05)
    assert (export / "captions.txt").read_text() == (run / "captions.txt").read_text()


def test_export_matches_the_run_and_a_recomputation_by_hand(export, run, tiny_data):
    import dpcnn

    paths = [str(p) for p in tiny_data.splits["test"].paths[:5]]
    captions = [QUERY, "a small green star"]
    by_hand_images, by_hand_texts = reference_run_features(run, paths, captions)
    for model in (dpcnn.load(export), dpcnn.load(run)):
        np.testing.assert_allclose(model.encode_images(paths), by_hand_images, atol=1e-5)
        np.testing.assert_allclose(model.encode_texts(captions), by_hand_texts, atol=1e-5)
        np.testing.assert_allclose(model.encode_images([decoded(p) for p in paths]), by_hand_images, atol=1e-5)


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import dpcnn
    model = dpcnn.load("model")
    images = model.encode_images(json.loads(sys.argv[1]))
    texts = model.encode_texts(json.loads(sys.argv[2]))
    np.savez("out.npz", images=images, texts=texts)
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("dpcnn."))))
""")


def _fresh(tmp_path, export):
    """An empty folder holding only a copy of the export (as on a colleague's laptop)."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copytree(export, work / "model")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DPCNN_DATA_ROOT": str(work / "none")}
    return work, env


def test_export_loads_in_a_fresh_process_in_an_empty_folder(export, run, tiny_data, tmp_path):
    work, env = _fresh(tmp_path, export)
    paths = [str(p) for p in tiny_data.splits["test"].paths[:4]]
    captions = [QUERY, "a large black cross"]
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths), json.dumps(captions)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not modules & {"dpcnn.training.trainer", "dpcnn.data.prepare", "dpcnn.evaluation"}  # inference only
    got = np.load(work / "out.npz")
    images, texts = reference_run_features(run, paths, captions)
    np.testing.assert_allclose(got["images"], images, atol=1e-5)
    np.testing.assert_allclose(got["texts"], texts, atol=1e-5)


def test_readme_example_runs_in_the_export_folder(export, run, tiny_data, tmp_path):
    work, env = _fresh(tmp_path, export)
    code = (export / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    for i, p in enumerate(tiny_data.splits["test"].paths[:2]):
        shutil.copy(p, work / f"photo{i + 1}.{'jpg' if i == 0 else 'png'}")
    code = code.replace("path/to/this/folder", "model")
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    files, caption, k = search_example(code)  # the ranking it prints, recomputed from the run by hand
    assert files == ["photo1.jpg", "photo2.png"]
    images, texts = reference_run_features(run, [str(p) for p in tiny_data.splits["test"].paths[:2]], [caption])
    check_search_output(done.stdout, images, texts[0], k)


def _search(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "dpcnn", "search", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_search_with_an_export_over_a_gallery_reports_skips_and_caches(export, run, gallery, tmp_path):
    work, env = _fresh(tmp_path, export)
    args = ["--model", "model", "--text", QUERY, "--gallery", str(gallery), "--k", "3", "--json"]
    first = _search(args, work, env)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)
    skipped = {Path(s["image"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"broken.jpg", "notes.png"}
    assert skipped["broken.jpg"].startswith("corrupt image") and "function_node" not in skipped["broken.jpg"]
    assert skipped["notes.png"].startswith("not an image")
    # the ranking equals cosine scores of features computed by hand (the TIFF is searched too)
    files = sorted(str(p) for p in gallery.rglob("*") if p.suffix in (".jpg", ".tif") and p.name != "broken.jpg")
    images, texts = reference_run_features(run, files, [QUERY])
    scores = images @ texts[0]
    order = np.argsort(-scores)[:3]
    by_name = {Path(f).name: score for f, score in zip(files, scores)}
    # each result's score is its file's score by hand, and they are the three best (scan.tif is a copy
    # of img0.jpg, so the two tie and either order is right)
    np.testing.assert_allclose([by_name[Path(r["image"]).name] for r in result["results"]],
                               [r["score"] for r in result["results"]], atol=1e-5)
    np.testing.assert_allclose([r["score"] for r in result["results"]], scores[order], atol=1e-5)
    assert any(p.suffix == ".npz" for p in (gallery / ".dpcnn-cache").iterdir())
    again = _search(args[:-1], work, env)  # the table this time: every image from the cache
    assert again.returncode == 0 and "7 from the cache" in again.stdout.splitlines()[0]


def test_image_search_over_a_captions_file_and_the_model_s_own_captions(export, run, tiny_data, tmp_path):
    work, env = _fresh(tmp_path, export)
    image = str(tiny_data.splits["test"].paths[0])
    (work / "captions.txt").write_text("a small green star\n\na big red square above a small blue circle\nzzz qqq\n")
    done = _search(["--model", "model", "--image", image, "--captions", "captions.txt", "--k", "2", "--json",
                    ], work, env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    images, texts = reference_run_features(run, [image], ["a small green star", QUERY])
    scores = texts @ images[0]
    assert [r["caption"] for r in result["results"]] == [["a small green star", QUERY][i] for i in np.argsort(-scores)]
    own = _search(["--model", "model", "--image", image, "--k", "3", "--out", "hits.png"], work, env)
    assert own.returncode == 0, own.stderr[-3000:]
    assert "captions:" in own.stdout and (work / "hits.png").read_bytes().startswith(PNG_SIGNATURE)


def test_alt_text_for_a_folder_lists_suggestions_and_unreadable_images(export, run, gallery, tmp_path):
    work, env = _fresh(tmp_path, export)
    done = subprocess.run([sys.executable, "-m", "dpcnn", "alt-text", "--model", "model", "--images", str(gallery),
                           "--out", "alt.csv", "--k", "2", "--html"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not generated" in done.stdout
    rows = list(csv.DictReader(open(work / "alt.csv", newline="")))
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.jpg", "notes.png"}
    good = [r for r in rows if not r["error"]]
    assert len(good) == 2 * 7 and {r["rank"] for r in good} == {"1", "2"}
    # the top suggestion of an image is the training caption nearest to it, by features computed by hand
    corpus = (run / "captions.txt").read_text().splitlines()
    first = next(r for r in good if r["rank"] == "1" and r["path"].endswith("img0.jpg"))
    images, texts = reference_run_features(run, [first["path"]], corpus)
    scores = texts @ images[0]
    assert corpus[int(np.argmax(scores))] == first["caption"]
    assert float(first["score"]) == pytest.approx(float(scores.max()), abs=1e-4)
    page = (work / "alt.html").read_text()
    assert "img0.jpg" in page and "not read:" in page and "retrieval, not generation" in page


def test_alt_text_from_a_csv_with_a_run_folder(run, gallery, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("path,title\n" + "\n".join(f"{p},x" for p in (gallery / "img1.jpg", gallery / "missing.jpg")))
    assert main(["alt-text", "--run", str(run), "--images", str(listing), "--out", str(tmp_path / "a.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "a.csv", newline="")))
    assert [r["error"] for r in rows if r["path"].endswith("missing.jpg")] == ["missing image file"]
    assert sum(1 for r in rows if r["path"].endswith("img1.jpg")) == 3


def test_search_of_a_run_without_its_data_needs_a_gallery_and_says_so(run, gallery, capsys):
    assert main(["search", "--run", str(run), "--text", QUERY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpcnn search: error:") and "test" in err and len(err.strip().splitlines()) == 1
    assert main(["search", "--run", str(run), "--text", QUERY, "--gallery", str(gallery), "--k", "2"]) == 0
    assert "img" in capsys.readouterr().out


def test_bad_queries_are_one_line_errors(export, gallery, tmp_path, capsys):
    assert main(["search", "--model", str(export), "--text", "zzz qqq", "--gallery", str(gallery)]) == 2
    assert "no word in the model's vocabulary" in capsys.readouterr().err
    assert main(["search", "--model", str(export), "--text", QUERY]) == 2
    assert "--gallery DIR is needed" in capsys.readouterr().err
    assert main(["search", "--model", str(export), "--image", "nope.jpg"]) == 2
    assert "missing image file" in capsys.readouterr().err
    assert main(["search", "--model", str(tmp_path / "no-such-model"), "--text", QUERY]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_images_too_small_for_the_model_are_counted_rows_not_crashes(export, run, tiny_data, tmp_path, capsys):
    """The tiny model keeps each image's own size: a 4 x 4 icon is below its total stride."""
    from dpcnn.cli import main

    folder = tmp_path / "icons"
    folder.mkdir()
    Image.fromarray(decoded(tiny_data.splits["test"].paths[0])).save(folder / "photo.png")
    Image.new("RGB", (4, 4), (200, 30, 30)).save(folder / "icon.png")
    assert main(["search", "--model", str(export), "--text", QUERY, "--gallery", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [Path(r["image"]).name for r in result["results"]] == ["photo.png"]
    (reason,) = [s["reason"] for s in result["skipped"]]
    assert reason.startswith("too small (4x4 px; this model needs at least ") and " 4 px" not in reason
    assert main(["search", "--model", str(export), "--image", str(folder / "icon.png")]) == 2
    assert "too small (4x4 px" in capsys.readouterr().err
