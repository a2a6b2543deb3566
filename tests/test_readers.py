"""Dataset readers on tiny files written here in each source's real format (offline, no images decoded)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from PIL import Image

from dpcnn.config import ConfigError, DataConfig
from dpcnn.data.coco import read_coco_format, read_mscoco_karpathy
from dpcnn.data.cuhk_pedes import read_cuhk_pedes
from dpcnn.data.flickr30k import read_flickr30k_karpathy, read_flickr30k_paper
from dpcnn.data.manifest import ImageRecord, by_split
from dpcnn.data.sources import DataNotFoundError, describe_sources, load_records
from dpcnn.data.splits import check_disjoint, split_by_image

# --------------------------------------------------------------------------------------------
# Fixture writers (the real formats)
# --------------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (200, 30, 30)).save(path, format="JPEG")


def coco_captions(images: dict[int, str], captions: list[tuple[int, str]]) -> dict:
    """A COCO captions file: images {id: file_name}, annotations [(image_id, caption)] in file order."""
    return {
        "info": {"description": "test"}, "licenses": [],
        "images": [{"id": i, "file_name": f, "width": 8, "height": 6} for i, f in images.items()],
        "annotations": [{"id": 100 + k, "image_id": i, "caption": c} for k, (i, c) in enumerate(captions)],
    }


def coco_numbered(n: int, start: int = 1, prefix: str = "img") -> dict:
    """n images, image k has captions 'caption k a' and 'caption k b'."""
    images = {k: f"{prefix}{k}.jpg" for k in range(start, start + n)}
    caps = [(k, f"caption {k} {s}") for k in images for s in "ab"]
    return coco_captions(images, caps)


# --------------------------------------------------------------------------------------------
# read_coco_format
# --------------------------------------------------------------------------------------------


def test_coco_format_records_caption_order_and_no_stdout(tmp_path, capsys, caplog):
    ann = write_json(tmp_path / "caps.json", coco_captions(
        {7: "a.jpg", 3: "sub/b.jpg", 9: "c.jpg"},
        [(3, "b first"), (7, "a first"), (3, "b second"), (7, "a second"), (3, "b third")]))
    for name in ("a.jpg", "sub/b.jpg", "c.jpg"):
        write_jpeg(tmp_path / "imgs" / name)
    with caplog.at_level(logging.DEBUG, logger="dpcnn"):
        recs = read_coco_format(ann, tmp_path / "imgs", "val")
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured...
    assert any("creating index" in r.getMessage() for r in caplog.records)  # ...and logged
    assert [r.image_id for r in recs] == ["7", "3", "9"]  # images[] order, str ids
    assert recs[0].captions == ("a first", "a second")
    assert recs[1].captions == ("b first", "b second", "b third")
    assert recs[1].path == str((tmp_path / "imgs" / "sub" / "b.jpg").absolute())
    assert recs[2].captions == ()  # zero-caption image kept, not dropped
    assert {r.split for r in recs} == {"val"} and all(r.identity == r.image_id for r in recs)


def test_coco_format_does_not_open_images(tmp_path):
    ann = write_json(tmp_path / "caps.json", coco_numbered(2))
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "img1.jpg").write_bytes(b"not a jpeg")  # corrupt; img2 missing
    recs = read_coco_format(ann, tmp_path / "imgs", "train")
    assert len(recs) == 2


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"annotations": []}), "missing top-level 'images'"),
    (json.dumps({"images": []}), "missing top-level 'annotations'"),
    (json.dumps({"images": [], "annotations": []}), None),  # valid, empty
    (json.dumps(coco_captions({1: "a.jpg"}, [(1, "ok"), (2, "orphan"), (5, "orphan")])),
     "not in 'images': 2, 5"),
    (json.dumps({"images": [{"id": 1}], "annotations": []}), "images[0] needs 'id' and 'file_name'"),
    (json.dumps({"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], "annotations": []}),
     "appears twice"),
    (json.dumps({"images": [{"id": 1, "file_name": "a"}], "annotations": [{"id": 1, "image_id": 1}]}),
     "annotations[0] needs"),
    (json.dumps({"images": [{"id": 1, "file_name": "a"}],
                 "annotations": [{"id": 1, "image_id": 1, "caption": None}]}), "must be a string"),
])
def test_coco_format_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    if message is None:
        assert read_coco_format(path, tmp_path, "train") == []
        return
    with pytest.raises(ValueError, match="bad.json") as err:
        read_coco_format(path, tmp_path, "train")
    assert message in str(err.value)


# --------------------------------------------------------------------------------------------
# read_mscoco_karpathy
# --------------------------------------------------------------------------------------------


def write_mscoco(root: Path, karpathy_splits: dict[int, str] | None = None,
                 karpathy_path: Path | None = None) -> tuple[list[Path], Path]:
    """root/annotations/captions_train2014.json (ids 1-3) and captions_val2014.json (ids 4-7), and a
    Karpathy dataset_coco.json (default root/karpathy/) whose entries are in another order."""
    train = {i: f"COCO_train2014_{i:012d}.jpg" for i in (1, 2, 3)}
    val = {i: f"COCO_val2014_{i:012d}.jpg" for i in (4, 5, 6, 7)}
    files = [
        write_json(root / "annotations" / "captions_train2014.json",
                   coco_captions(train, [(i, f"train {i} {s}") for s in "ab" for i in train])),
        write_json(root / "annotations" / "captions_val2014.json",
                   coco_captions(val, [(i, f"val {i} {s}") for i in val for s in "abc"])),
    ]
    splits = karpathy_splits or {1: "train", 2: "restval", 3: "train", 4: "val", 5: "test", 6: "restval", 7: "test"}
    names = {**{i: ("train2014", f) for i, f in train.items()}, **{i: ("val2014", f) for i, f in val.items()}}
    karpathy = {"dataset": "coco", "images": [
        {"cocoid": i, "filepath": names[i][0], "filename": names[i][1], "split": s, "imgid": k,
         "sentids": [], "sentences": [{"raw": "ignored", "tokens": ["ignored"]}]}
        for k, (i, s) in enumerate(sorted(splits.items(), key=lambda kv: -kv[0]))]}
    return files, write_json(karpathy_path or root / "karpathy" / "dataset_coco.json", karpathy)


def test_mscoco_karpathy_splits_restval_and_paths(tmp_path, capsys):
    files, karpathy = write_mscoco(tmp_path)
    recs = read_mscoco_karpathy(files, tmp_path, karpathy)
    assert capsys.readouterr().out == ""
    split = {r.image_id: r.split for r in recs}
    assert split == {"1": "train", "2": "train", "3": "train", "4": "val", "5": "test", "6": "train", "7": "test"}
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [4, 1, 2]
    r2, r5 = (next(r for r in recs if r.image_id == i) for i in ("2", "5"))
    assert r2.path == str((tmp_path / "train2014" / "COCO_train2014_000000000002.jpg").absolute())
    assert r5.path == str((tmp_path / "val2014" / "COCO_val2014_000000000005.jpg").absolute())
    assert r2.captions == ("train 2 a", "train 2 b")  # from the COCO annotations, in their order
    assert r5.captions == ("val 5 a", "val 5 b", "val 5 c")


def test_mscoco_karpathy_disagreements(tmp_path):
    files, karpathy = write_mscoco(tmp_path, {1: "train", 2: "train", 4: "val", 5: "test", 6: "test", 7: "val"})
    with pytest.raises(ValueError, match=r"not in the Karpathy split file, e\.g\. ids 3"):
        read_mscoco_karpathy(files, tmp_path, karpathy)
    files, karpathy = write_mscoco(tmp_path)
    with pytest.raises(ValueError, match="in none of"):  # only one of the two annotation files
        read_mscoco_karpathy(files[:1], tmp_path, karpathy)
    obj = json.loads(karpathy.read_text())
    obj["images"][0]["split"] = "holdout"
    write_json(karpathy, obj)
    with pytest.raises(ValueError, match="'holdout'"):
        read_mscoco_karpathy(files, tmp_path, karpathy)


# --------------------------------------------------------------------------------------------
# Flickr30k
# --------------------------------------------------------------------------------------------

FLICKR_IDS = ["1000092795", "10002456", "1001465944", "2513260012", "3385593926", "667626"]


def write_flickr(root: Path, seed: int = 0) -> dict[str, Path]:
    """Token file (3 captions per image, lines shuffled) and Flickr8k lists (with _secret names)."""
    lines = [f"{fid}.jpg#{k}\tcaption {k} of {fid}" for fid in FLICKR_IDS for k in range(3)]
    random.Random(seed).shuffle(lines)
    token = root / "flickr30k" / "results_20130124.token"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lists = root / "flickr8k"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "Flickr_8k.testImages.txt").write_text("2513260012_03d33305cf.jpg\n3385593926_d3e9c21170.jpg\n")
    (lists / "Flickr_8k.devImages.txt").write_text("667626_18933d713e.jpg\n99999999_0123456789.jpg\n")
    (root / "flickr30k" / "flickr30k-images").mkdir(exist_ok=True)
    return {"token": token, "test": lists / "Flickr_8k.testImages.txt", "dev": lists / "Flickr_8k.devImages.txt",
            "images": root / "flickr30k" / "flickr30k-images"}


def test_flickr30k_paper_split_and_captions_by_filename(tmp_path):
    p = write_flickr(tmp_path, seed=0)
    recs = read_flickr30k_paper(p["token"], p["images"], p["test"], p["dev"])
    split = {r.image_id: r.split for r in recs}
    assert split == {"1000092795.jpg": "train", "10002456.jpg": "train", "1001465944.jpg": "train",
                     "2513260012.jpg": "test", "3385593926.jpg": "test", "667626.jpg": "val"}
    for r in recs:  # each caption belongs to its own file, ordered by #k
        fid = r.image_id[:-4]
        assert r.captions == tuple(f"caption {k} of {fid}" for k in range(3))
        assert r.path == str((p["images"] / r.image_id).absolute())
    assert [r.image_id for r in recs] == sorted(split)
    # another line order of the token file gives the same records (no dependence on listing order)
    p2 = write_flickr(tmp_path / "other", seed=1)
    recs2 = read_flickr30k_paper(p2["token"], p["images"], p2["test"], p2["dev"])
    assert p["token"].read_text() != p2["token"].read_text() and recs2 == recs


def test_flickr30k_image_in_both_lists_is_test(tmp_path):
    p = write_flickr(tmp_path)
    p["dev"].write_text("2513260012_03d33305cf.jpg\n10002456_0000000000.jpg\n")  # also in the test list
    recs = read_flickr30k_paper(p["token"], p["images"], p["test"], p["dev"])
    split = {r.image_id: r.split for r in recs}
    assert split["2513260012.jpg"] == "test" and split["10002456.jpg"] == "val"  # as split_Flickr30k.m


@pytest.mark.parametrize("bad_line, lineno", [
    ("1000092795.jpg\tno index", 2), ("1000092795.jpg#x\tbad index", 2),
    ("1000092795.jpg#0 no tab", 2), ("1000092795.jpg#0\tduplicate", 2),
])
def test_flickr30k_token_malformed_line(tmp_path, bad_line, lineno):
    p = write_flickr(tmp_path)
    p["token"].write_text(f"1000092795.jpg#0\tfirst\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"line {lineno}"):
        read_flickr30k_paper(p["token"], p["images"], p["test"], p["dev"])


def test_flickr30k_karpathy(tmp_path):
    obj = {"dataset": "flickr30k", "images": [
        {"filename": "1.jpg", "split": "train", "imgid": 0, "sentences": [{"raw": "one a"}, {"raw": "one b"}]},
        {"filename": "2.jpg", "split": "val", "imgid": 1, "sentences": [{"raw": "two"}]},
        {"filename": "3.jpg", "split": "test", "imgid": 2, "sentences": [{"raw": "three"}]},
        {"filename": "4.jpg", "split": "restval", "imgid": 3, "sentences": [{"raw": "four"}]},
    ]}
    path = write_json(tmp_path / "dataset_flickr30k.json", obj)
    recs = read_flickr30k_karpathy(path, tmp_path / "imgs")
    assert [(r.image_id, r.split, r.captions) for r in recs] == [
        ("1.jpg", "train", ("one a", "one b")), ("2.jpg", "val", ("two",)),
        ("3.jpg", "test", ("three",)), ("4.jpg", "train", ("four",))]
    obj["images"][1]["sentences"] = [{"tokens": ["no", "raw"]}]
    write_json(path, obj)
    with pytest.raises(ValueError, match=r"images\[1\].*'raw'"):
        read_flickr30k_karpathy(path, tmp_path / "imgs")


# --------------------------------------------------------------------------------------------
# CUHK-PEDES
# --------------------------------------------------------------------------------------------


def cuhk_entries() -> list[dict]:
    def e(split, fp, pid, caps):
        return {"split": split, "captions": caps, "file_path": fp, "id": pid,
                "processed_tokens": [c.split() for c in caps]}
    return [
        e("train", "CUHK01/0363004.png", 5, ["a man in red", "red shirt man"]),
        e("train", "CUHK03/12_1.jpg", 9, ["woman with bag"]),
        e("train", "CUHK01/0363002.png", 5, ["the same man again"]),
        e("val", "test_query/p1_s1.jpg", 11, ["val person", "second"]),
        e("test", "test_query/p2_s2.jpg", 12, ["test person"]),
        e("test", "test_query/p2_s3.jpg", 12, ["test person again"]),
    ]


def test_cuhk_pedes_identity_labels_and_order(tmp_path):
    path = write_json(tmp_path / "reid_raw.json", cuhk_entries())
    recs = read_cuhk_pedes(path, tmp_path / "imgs")
    assert [r.image_id for r in recs] == [e["file_path"] for e in cuhk_entries()]  # json order
    assert [r.identity for r in recs] == ["5", "9", "5", "11", "12", "12"]
    assert recs[0].captions == ("a man in red", "red shirt man")
    assert recs[1].path == str((tmp_path / "imgs" / "CUHK03" / "12_1.jpg").absolute())
    labelled = load_records(DataConfig(dataset="cuhk-pedes", root=str(tmp_path),
                                       annotations=str(path), images=str(tmp_path)))
    assert [r.label for r in labelled] == [0, 1, 0, -1, -1, -1]  # two images of person 5 share a label


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[0].update(split="gallery"), "'gallery'"),
    (lambda d: d[1].pop("file_path"), "entry 1 needs"),
    (lambda d: d[2].update(captions="not a list"), "entry 2"),
])
def test_cuhk_pedes_malformed(tmp_path, mutate, message):
    entries = cuhk_entries()
    mutate(entries)
    path = write_json(tmp_path / "reid_raw.json", entries)
    with pytest.raises(ValueError, match=message):
        read_cuhk_pedes(path, tmp_path)
    write_json(path, {"not": "a list"})
    with pytest.raises(ValueError, match="JSON list"):
        read_cuhk_pedes(path, tmp_path)


# --------------------------------------------------------------------------------------------
# split_by_image, check_disjoint
# --------------------------------------------------------------------------------------------


def plain_records(n: int, split: str = "train") -> list[ImageRecord]:
    return [ImageRecord(f"id{k:02d}", f"/imgs/{k}.jpg", split, (f"cap {k}",)) for k in range(n)]


def test_split_by_image_deterministic_disjoint_order_free():
    recs = plain_records(12)
    out = split_by_image(recs, holdout=3, seed=7)
    assert [len(by_split(out, s)) for s in ("train", "val", "test")] == [6, 3, 3]
    assert [r.image_id for r in out] == [r.image_id for r in recs]  # input order kept
    check_disjoint(out)
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    again = {r.image_id: r.split for r in split_by_image(shuffled, holdout=3, seed=7)}
    assert again == {r.image_id: r.split for r in out}
    other_seeds = [{r.image_id: r.split for r in split_by_image(recs, 3, seed)} for seed in range(8)]
    assert len({tuple(sorted(d.items())) for d in other_seeds}) > 1


def test_split_by_image_keeps_captionless_in_train_and_checks_size():
    recs = plain_records(6) + [ImageRecord("zz", "/imgs/zz.jpg", "train", ())]
    for seed in range(10):
        out = split_by_image(recs, holdout=2, seed=seed)
        assert next(r for r in out if r.image_id == "zz").split == "train"
        assert [len(by_split(out, s)) for s in ("val", "test")] == [2, 2]
    with pytest.raises(ValueError, match="data.holdout_images"):
        split_by_image(plain_records(7), holdout=3, seed=0)  # needs 2*3+2 = 8
    with pytest.raises(ValueError, match="more than once"):
        split_by_image(plain_records(5) + plain_records(5), holdout=1, seed=0)


def test_check_disjoint_errors():
    a = ImageRecord("x", "/i/x.jpg", "train", ("c",))
    with pytest.raises(ValueError, match="more than one split"):
        check_disjoint([a, ImageRecord("x", "/i/x.jpg", "test", ("c",))])
    with pytest.raises(ValueError, match="more than once in one split"):
        check_disjoint([a, a])
    with pytest.raises(ValueError, match="more than one split"):  # one file under two ids
        check_disjoint([a, ImageRecord("y", "/i/x.jpg", "val", ("c",))])
    with pytest.raises(ValueError, match="one file under two ids"):
        check_disjoint([a, ImageRecord("y", "/i/x.jpg", "train", ("c",))])
    check_disjoint(plain_records(3))


# --------------------------------------------------------------------------------------------
# load_records / describe_sources
# --------------------------------------------------------------------------------------------


def test_load_coco_format_single_file_is_split_and_labelled(tmp_path):
    ann = write_json(tmp_path / "mine.json", coco_numbered(10))
    (tmp_path / "imgs").mkdir()
    data = DataConfig(dataset="coco-format", annotations=str(ann), images=str(tmp_path / "imgs"),
                      holdout_images=2, split_seed=3)
    recs = load_records(data)
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [6, 2, 2]
    assert [r.label for r in recs if r.split == "train"] == list(range(6))
    assert all(r.label == -1 for r in recs if r.split != "train")
    assert load_records(data) == recs
    assert describe_sources(data)["annotations"] == str(ann)
    with pytest.raises(ValueError, match="lower data.holdout_images"):
        load_records(DataConfig(dataset="coco-format", annotations=str(ann), images=str(tmp_path / "imgs"),
                                holdout_images=5))


def test_load_coco_format_given_files_and_id_clash(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    train = write_json(tmp_path / "train.json", coco_numbered(4, prefix="tr"))
    val = write_json(tmp_path / "val.json", coco_numbered(2, prefix="va"))  # ids 1, 2 again, other files
    test = write_json(tmp_path / "test.json", coco_numbered(2, start=10, prefix="te"))
    data = DataConfig(dataset="coco-format", annotations=str(train), images=str(imgs),
                      val_annotations=str(val), test_annotations=str(test))
    recs = load_records(data)
    assert [r.image_id for r in by_split(recs, "val")] == ["val:1", "val:2"]
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [4, 2, 2]
    # the same image file in train and test is a leak
    write_json(test, coco_numbered(2, start=1, prefix="tr"))
    with pytest.raises(ValueError, match="more than one split"):
        load_records(data)
    # only a test file: val is held out of the training file
    test_only = DataConfig(dataset="coco-format", annotations=str(train), images=str(imgs),
                           test_annotations=str(write_json(tmp_path / "t2.json", coco_numbered(2, 50))),
                           holdout_images=1)
    recs = load_records(test_only)
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [3, 1, 2]


def test_load_coco_dataset_default_layout_and_own_file(tmp_path):
    write_mscoco(tmp_path / "coco", karpathy_path=tmp_path / "karpathy" / "dataset_coco.json")
    recs = load_records(DataConfig(dataset="coco", root=str(tmp_path)))
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [4, 1, 2]
    assert sorted(r.label for r in recs if r.split == "train") == [0, 1, 2, 3]
    src = describe_sources(DataConfig(dataset="coco", root=str(tmp_path)))
    assert src["annotations"] == str(tmp_path / "karpathy" / "dataset_coco.json")
    assert src["captions_val2014"] == str(tmp_path / "coco" / "annotations" / "captions_val2014.json")
    # DESIGN §1: `--config coco --set data.annotations=own.json data.images=…` reads a user's own file
    own = write_json(tmp_path / "own.json", coco_numbered(8))
    data = DataConfig(dataset="coco", split="karpathy", annotations=str(own), images=str(tmp_path), holdout_images=2)
    recs = load_records(data)
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [4, 2, 2]
    assert describe_sources(data)["split"].startswith("by image")


def test_load_flickr30k_both_splits_from_root(tmp_path):
    write_flickr(tmp_path)
    recs = load_records(DataConfig(dataset="flickr30k", root=str(tmp_path), split="paper"))
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [3, 1, 2]
    write_json(tmp_path / "karpathy" / "dataset_flickr30k.json", {"images": [
        {"filename": f"{k}.jpg", "split": s, "sentences": [{"raw": "x"}]}
        for k, s in enumerate(["train", "train", "val", "test"])]})
    recs = load_records(DataConfig(dataset="flickr30k", root=str(tmp_path), split="karpathy"))
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [2, 1, 1]


def test_load_synthetic_files(tmp_path):
    files = {}
    for k, split in enumerate(("train", "val", "test")):
        files[split] = write_json(tmp_path / f"{split}.json", coco_numbered(3, start=10 * k, prefix=split))
        for i in range(3):
            write_jpeg(tmp_path / split / f"{split}{10 * k + i}.jpg")
    recs = load_records(DataConfig(dataset="synthetic"), synthetic_files=files)
    assert [len(by_split(recs, s)) for s in ("train", "val", "test")] == [3, 3, 3]
    assert all(Path(r.path).is_file() for r in recs)
    assert by_split(recs, "val")[0].path == str((tmp_path / "val" / "val10.jpg").absolute())
    with pytest.raises(ValueError, match="synthetic_files"):
        load_records(DataConfig(dataset="synthetic"))


@pytest.mark.parametrize("data, path_part, key, how", [
    (DataConfig(dataset="coco"), "karpathy/dataset_coco.json", "data.annotations", "dpcnn download karpathy-splits"),
    (DataConfig(dataset="flickr30k"), "flickr30k-images", "data.images", "request form"),
    (DataConfig(dataset="cuhk-pedes"), "cuhk-pedes/reid_raw.json", "data.annotations", "request form"),
    (DataConfig(dataset="coco-format", annotations="nowhere.json", images="."), "nowhere.json",
     "data.annotations", "Check the path"),
])
def test_missing_files_say_what_to_do(tmp_path, data, path_part, key, how):
    from dataclasses import replace
    data = replace(data, root=str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as err:
        load_records(data)
    assert isinstance(err.value, DataNotFoundError)
    msg = str(err.value)
    assert path_part in msg and key in msg and how in msg


def test_missing_coco_captions_and_flickr8k_lists(tmp_path):
    _, karpathy = write_mscoco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(DataNotFoundError, match=r"captions_val2014\.json.*dpcnn download coco"):
        load_records(DataConfig(dataset="coco", root=str(tmp_path), annotations=str(karpathy)))
    p = write_flickr(tmp_path)
    p["dev"].unlink()
    with pytest.raises(DataNotFoundError, match=r"Flickr_8k\.devImages\.txt.*flickr30k-splits"):
        load_records(DataConfig(dataset="flickr30k", root=str(tmp_path)))


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="data.annotations"):
        load_records(DataConfig(dataset="coco-format"))
    with pytest.raises(ConfigError, match="data.dataset"):
        load_records(DataConfig(dataset="imagenet"))
    write_flickr(tmp_path)
    with pytest.raises(ConfigError, match="paper or karpathy"):
        load_records(DataConfig(dataset="flickr30k", root=str(tmp_path), split="random"))
