"""`dpcnn prepare` on a user's COCO-format data with every kind of bad input (DESIGN §3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpcnn.cli import main
from dpcnn.data.prepare import ensure_prepared, load_prepared, prepare, prepared_dir, summarize
from dpcnn.errors import DataError, DataNotFoundError, WordVectorsError
from dpcnn.presets import resolve

WORDS = ["a", "red", "blue", "green", "circle", "square", "star", "big", "small", "onlyintest", "man", "woman"]
CAPS = ["a red circle", "a big blue square"]


def write_vectors(path: Path, words=WORDS, dim=5, bad_row: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {dim}"]
    for i, w in enumerate(words):
        n = dim - 1 if i == bad_row else dim
        lines.append(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=n)))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_split(folder: Path, name: str, items: list[tuple[str, list]], start_id: int,
                extra_annotations: tuple[dict, ...] = ()) -> Path:
    images, anns = [], []
    for k, (file_name, captions) in enumerate(items):
        iid = start_id + k
        images.append({"id": iid, "file_name": file_name, "width": 16, "height": 16})
        for c in captions:
            anns.append({"id": len(anns) + 1000 * iid, "image_id": iid, "caption": c})
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns + list(extra_annotations)}))
    return path


def write_images(folder: Path) -> dict[str, str]:
    """Good images 0-11.jpg, one file of each format Pillow reads but TF does not decode as such, and
    broken ones; returns {file name: how it was made} for the formats."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    rgb = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    rgb.save(folder / "photo.tif")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (12, 10), dtype=np.uint16)).save(folder / "deep.png")
    rgb.convert("P").save(folder / "palette.gif")
    rgb.convert("RGBA").save(folder / "alpha.png")
    rgb.save(folder / "photo.webp")
    good = (folder / "0.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # a truncated JPEG
    (folder / "garbage.jpg").write_bytes(b"this is not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    return {"photo.tif": "TIFF", "cmyk.jpg": "CMYK JPEG", "deep.png": "16-bit PNG", "palette.gif": "palette GIF",
            "alpha.png": "RGBA PNG", "photo.webp": "WebP"}


@pytest.fixture()
def user_data(tmp_path):
    imgs = tmp_path / "images"
    formats = write_images(imgs)
    train = [(f"{i}.jpg", [CAPS[0], 42] if i == 0 else CAPS) for i in range(6)]  # 42: not a string
    train += [(name, CAPS) for name in formats]
    train += [
        ("corrupt.jpg", CAPS), ("garbage.jpg", CAPS), ("empty.jpg", CAPS), ("missing.jpg", CAPS),
        ("6.jpg", ["   ", "a small green star"]),  # one empty caption
        ("7.jpg", ["zzz qqq"]),  # all out of vocabulary → the image has no usable caption
    ]
    orphan = {"id": 1, "image_id": 999, "caption": "a caption of an image that is not in 'images'"}
    val = [("8.jpg", CAPS), ("9.jpg", ["a red star"])]
    # a test caption with no in-vocabulary word is kept (the official test code keeps every caption)
    test = [("10.jpg", ["onlyintest square"]), ("11.jpg", ["a green circle", "zzz qqq"])]
    files = {"train": write_split(tmp_path, "train", train, 0, (orphan,)),
             "val": write_split(tmp_path, "val", val, 100), "test": write_split(tmp_path, "test", test, 200)}
    vectors = write_vectors(tmp_path / "vectors.txt")
    overrides = [f"data.root={tmp_path}", "data.dataset=coco-format", f"data.images={imgs}",
                 f"data.annotations={files['train']}", f"data.val_annotations={files['val']}",
                 f"data.test_annotations={files['test']}", f"data.word_vectors={vectors}", "data.max_len=6"]
    return tmp_path, overrides, files, formats


def test_bad_images_and_captions_are_excluded_and_reported(user_data):
    root, overrides, _, formats = user_data
    cfg = resolve("tiny", overrides)
    report = prepare(cfg, progress=False)
    assert report["excluded_counts"] == {
        "missing image file": 1, "corrupt image": 1, "not an image": 1, "empty image file": 1,
        "empty caption": 1, "no in-vocabulary word": 1, "no usable caption": 1,
        "caption of an unknown image id": 1, "caption is not a string": 1}
    excluded = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in report["excluded_images"]}
    assert set(excluded) == {"corrupt.jpg", "garbage.jpg", "empty.jpg", "missing.jpg", "7.jpg"}
    assert excluded["corrupt.jpg"].startswith("corrupt image: ")
    assert not any(noise in excluded["corrupt.jpg"] for noise in ("{{function_node", "[Op:", "Traceback"))
    assert excluded["garbage.jpg"] == "not an image (text starting 'this is not an image at ')"
    assert excluded["missing.jpg"] == "missing image file" and excluded["empty.jpg"] == "empty image file"
    assert excluded["7.jpg"] == "no usable caption"
    captions = {e["reason"]: e for e in report["excluded_captions"]}
    assert captions["caption of an unknown image id"]["image_id"] == 999
    assert captions["caption is not a string (int)"]["entry"] == "annotations[1]"
    assert report["counts"]["train"] == {"images": 13, "captions": 24}  # 6 + 6 formats + 6.jpg
    assert report["counts"]["test"] == {"images": 2, "captions": 3}
    assert report["kept_without_vocabulary_word"] == {"val": 0, "test": 1}
    assert report["num_classes"] == 13
    assert json.loads((prepared_dir(cfg) / "data_report.json").read_text()) == json.loads(json.dumps(report))
    text = summarize(report)
    assert "1 × not an image" in text and "data_report.json" in text

    data = load_prepared(prepared_dir(cfg), cfg.data.max_len)
    train_files = {p.rsplit("/", 1)[-1] for p in data.splits["train"].paths}
    assert set(formats) <= train_files  # TIFF, CMYK, 16-bit, palette, alpha and WebP images are used
    assert not train_files & {"corrupt.jpg", "garbage.jpg", "empty.jpg", "missing.jpg", "7.jpg"}
    assert sorted(data.splits["train"].labels.tolist()) == list(range(13))
    assert not data.by_identity
    assert "onlyintest" not in data.vocab.words  # test captions never shape the vocabulary
    # the test caption keeps its in-vocabulary word; its OOV word is dropped, not the caption
    assert data.vocab.decode([t for t in data.splits["test"].tokens[0] if t]) == "square"
    # the all-OOV test caption is there, encoded as an empty row (its feature is the bias-only one)
    assert data.splits["test"].captions[2] == "zzz qqq" and data.splits["test"].lengths[2] == 0


@pytest.mark.parametrize("content, message", [
    ('{"images": [{"id": 1, "file_name": "8.jpg"}], "annotations": [', "not a valid JSON COCO-format captions file"),
    ("[]", "got a JSON list"),
    ('{"images": [{"id": 1, "file_name": "8.jpg"}, {"id": 1, "file_name": "9.jpg"}], "annotations": []}',
     "image id 1 appears twice in 'images' (images[0] and images[1])"),
    ('{"images": [{"id": 1, "file_name": "8.jpg"}], "annotations": [{"image_id": 1, "caption": null}]}',
     "no usable caption in its 1 annotations; the first problem: annotations[0]: caption is not a string (NoneType)"),
])
def test_a_malformed_file_stops_prepare_with_one_line_naming_it(user_data, capsys, content, message):
    root, overrides, files, _ = user_data
    files["val"].write_text(content)
    with pytest.raises(DataError, match="val.json"):
        prepare(resolve("tiny", overrides), progress=False)
    assert main(["prepare", "--config", "tiny", "--set", *overrides]) == 2
    err = capsys.readouterr().err  # the log lines, then the error as one line (no traceback)
    [line] = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith(f"dpcnn prepare: error: {files['val']}: ") and message in line


def test_missing_files_name_the_path_and_what_needs_them(user_data):
    root, overrides, files, _ = user_data
    test_file = files["test"].read_text()
    files["test"].unlink()
    cfg = resolve("tiny", overrides)
    with pytest.raises(DataNotFoundError) as err:
        ensure_prepared(cfg, progress=False, need=("test",))
    msg = str(err.value)
    assert msg.startswith("evaluating needs the test split's images and captions")
    assert str(files["test"]) in msg and "data.test_annotations" in msg
    files["test"].write_text(test_file)
    no_vectors = [o for o in overrides if not o.startswith("data.word_vectors")]
    with pytest.raises(DataNotFoundError, match=r"GoogleNews-vectors-negative300\.bin\.gz.*dpcnn download word2vec"):
        prepare(resolve("tiny", no_vectors), progress=False)


def test_no_usable_image_stops_with_what_was_excluded(user_data):
    root, overrides, _, _ = user_data
    (root / "elsewhere").mkdir()
    cfg = resolve("tiny", [*overrides, f"data.images={root / 'elsewhere'}"])  # the wrong image folder
    with pytest.raises(DataError, match=r"the train and test splits have no usable image .*22 × missing image file"
                                        r".*; e\.g\. .*elsewhere/0\.jpg\); .*data_report\.json"):
        prepare(cfg, progress=False)
    written = json.loads((prepared_dir(cfg) / "data_report.json").read_text())
    assert written["excluded_counts"]["missing image file"] == 22


def test_person_ids_are_the_classes_of_cuhk_pedes(tmp_path):
    imgs = tmp_path / "cuhk-pedes" / "imgs"
    entries = []
    people = [("train", 5), ("train", 9), ("train", 5), ("val", 11), ("test", 12), ("test", 12)]
    for k, (split, pid) in enumerate(people):
        (imgs / f"cam{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 24), (40 * k, 80, 120)).save(imgs / f"cam{k % 2}" / f"{k}.png")
        entries.append({"split": split, "file_path": f"cam{k % 2}/{k}.png", "id": pid,
                        "captions": ["a man in red", "a woman with a bag"], "processed_tokens": []})
    (tmp_path / "cuhk-pedes" / "reid_raw.json").write_text(json.dumps(entries))
    cfg = resolve("cuhk-pedes", [f"data.root={tmp_path}", f"data.word_vectors={write_vectors(tmp_path / 'v.txt')}"])
    data = ensure_prepared(cfg, progress=False)
    assert data.by_identity and data.num_classes == 2
    assert data.splits["train"].labels.tolist() == [0, 1, 0]  # two images of person 5 share a label
    assert data.splits["test"].identities[0] == data.splits["test"].identities[1]


def test_broken_word_vector_files_stop_with_a_message(user_data, capsys):
    root, overrides, _, _ = user_data
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
    assert "unknown config key 'train.bogus'" in err
    assert main(["prepare", "--config", "coco", "--set", f"data.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "dataset_coco.json" in err and "dpcnn download karpathy-splits" in err
