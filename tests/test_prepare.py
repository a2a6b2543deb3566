"""`dpcnn prepare` on a user's COCO-format data with every kind of bad input (DESIGN §3)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpcnn.cli import main
from dpcnn.config import resolve
from dpcnn.data.word_vectors import WordVectorsError
from dpcnn.prepare import prepare, prepared_dir

WORDS = ["a", "red", "blue", "green", "circle", "square", "star", "big", "small", "onlyintest"]


def write_vectors(path: Path, words=WORDS, dim=5, bad_row: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {dim}"]
    for i, w in enumerate(words):
        n = dim - 1 if i == bad_row else dim
        lines.append(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=n)))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_split(folder: Path, name: str, items: list[tuple[str, list[str]]], start_id: int) -> Path:
    images, anns = [], []
    for k, (file_name, captions) in enumerate(items):
        iid = start_id + k
        images.append({"id": iid, "file_name": file_name, "width": 16, "height": 16})
        for c in captions:
            anns.append({"id": len(anns) + 1000 * iid, "image_id": iid, "caption": c})
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


@pytest.fixture()
def user_data(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(imgs / f"{i}.jpg")
    good = (imgs / "0.jpg").read_bytes()
    (imgs / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # a truncated JPEG
    (imgs / "garbage.jpg").write_bytes(b"this is not an image at all")
    caps = ["a red circle", "a big blue square"]
    train = [(f"{i}.jpg", caps) for i in range(6)]
    train += [
        ("corrupt.jpg", caps),
        ("garbage.jpg", caps),
        ("missing.jpg", caps),
        ("6.jpg", ["   ", "a small green star"]),  # one empty caption
        ("7.jpg", ["zzz qqq"]),  # all out of vocabulary → the image has no usable caption
    ]
    val = [("8.jpg", caps), ("9.jpg", ["a red star"])]
    # a test caption with no in-vocabulary word is kept (the official test code keeps every caption)
    test = [("10.jpg", ["onlyintest square"]), ("11.jpg", ["a green circle", "zzz qqq"])]
    files = {s: write_split(tmp_path, s, items, 100 * n) for n, (s, items) in
             enumerate((("train", train), ("val", val), ("test", test)))}
    vectors = write_vectors(tmp_path / "vectors.txt")
    overrides = [f"data.root={tmp_path}", "data.dataset=coco-format", f"data.images={imgs}",
                 f"data.annotations={files['train']}", f"data.val_annotations={files['val']}",
                 f"data.test_annotations={files['test']}", f"data.word_vectors={vectors}", "data.max_len=6"]
    return tmp_path, overrides


def test_bad_images_and_captions_are_excluded_and_reported(user_data):
    root, overrides = user_data
    cfg = resolve("tiny", overrides)
    report = prepare(cfg, progress=False)
    counts = report["excluded_counts"]
    assert counts["missing image file"] == 1
    assert counts["corrupt image"] == 2
    assert counts["empty caption"] == 1
    assert counts["no in-vocabulary word"] == 1
    assert counts["no usable caption"] == 1
    excluded = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in report["excluded_images"]}
    assert set(excluded) == {"corrupt.jpg", "garbage.jpg", "missing.jpg", "7.jpg"}
    assert report["counts"]["train"] == {"images": 7, "captions": 13}
    assert report["counts"]["test"] == {"images": 2, "captions": 3}
    assert report["kept_without_vocabulary_word"] == {"val": 0, "test": 1}
    assert report["num_classes"] == 7
    written = json.loads((prepared_dir(cfg) / "data_report.json").read_text())
    assert written["excluded_counts"] == counts

    from dpcnn.data.prepared import load_prepared

    data = load_prepared(prepared_dir(cfg), cfg.data.max_len)
    assert "onlyintest" not in data.vocab.words  # test captions never shape the vocabulary
    assert not any(p.endswith(("corrupt.jpg", "garbage.jpg", "missing.jpg", "7.jpg")) for p in data.splits["train"].paths)
    assert sorted(data.splits["train"].labels.tolist()) == list(range(7))
    # the test caption keeps its in-vocabulary word; its OOV word is dropped, not the caption
    assert data.vocab.decode([t for t in data.splits["test"].tokens[0] if t]) == "square"
    # the all-OOV test caption is there, encoded as an empty row (its feature is the bias-only one)
    assert data.splits["test"].captions[2] == "zzz qqq" and data.splits["test"].lengths[2] == 0
    assert not data.splits["test"].tokens[2].any()


def test_broken_word_vector_files_stop_with_a_message(user_data, capsys):
    root, overrides = user_data
    truncated = root / "truncated.bin"
    write_vectors(root / "plain.txt")
    header_says_more = "20 5\n" + "\n".join((root / "plain.txt").read_text().splitlines()[1:]) + "\n"
    truncated.write_text(header_says_more)
    with pytest.raises(WordVectorsError, match="truncated|fewer"):
        prepare(resolve("tiny", overrides + [f"data.word_vectors={truncated}"]), progress=False)
    wrong_dim = write_vectors(root / "wrongdim.txt", bad_row=3)
    with pytest.raises(WordVectorsError, match="line"):
        prepare(resolve("tiny", overrides + [f"data.word_vectors={wrong_dim}"]), progress=False)
    code = main(["prepare", "--config", "tiny", "--set", *overrides, f"data.word_vectors={wrong_dim}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "dpcnn prepare: error:" in err and "wrongdim.txt" in err and "line" in err


def test_cli_rejects_unknown_keys_and_missing_data(tmp_path, capsys):
    assert main(["prepare", "--config", "tiny", "--set", "train.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.bogus'" in err and "train.batch_size" in err
    assert main(["prepare", "--config", "coco", "--set", f"data.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "dataset_coco.json" in err and "dpcnn download karpathy-splits" in err
    with pytest.raises(SystemExit):
        main(["train", "--config", "tiny"])  # --run is required: argparse exits with a usage message
