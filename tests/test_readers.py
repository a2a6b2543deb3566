"""Dataset readers and the registry, on tiny files written here in each source's real format
(offline; no image is decoded, TensorFlow is not imported)."""

from __future__ import annotations

import builtins
import json
import logging
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from dpcnn.config import DataConfig
from dpcnn.data import download
from dpcnn.data.coco_captions import read_coco_format
from dpcnn.data.datasets import REGISTRY, get
from dpcnn.data.datasets.cuhk_pedes import read_cuhk_pedes
from dpcnn.data.datasets.flickr30k import read_flickr30k_karpathy, read_flickr30k_paper
from dpcnn.data.datasets.mscoco import read_mscoco_karpathy
from dpcnn.data.manifest import Exclusions, ImageRecord
from dpcnn.data.splits import check_disjoint, holdout_size, split_by_image
from dpcnn.errors import ConfigError, DataError, DataNotFoundError, UserError

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
    return coco_captions(images, [(k, f"caption {k} {s}") for k in images for s in "ab"])


def count(recs: list[ImageRecord], split: str) -> int:
    return sum(r.split == split for r in recs)


def split_counts(recs: list[ImageRecord]) -> list[int]:
    return [count(recs, s) for s in ("train", "val", "test")]


# --------------------------------------------------------------------------------------------
# COCO-format files: records, file-level errors, item-level exclusions
# --------------------------------------------------------------------------------------------


def test_coco_format_records_caption_order_and_no_stdout(tmp_path, capsys, caplog):
    ann = write_json(tmp_path / "caps.json", coco_captions(
        {7: "a.jpg", 3: "sub/b.jpg", 9: "c.jpg"},
        [(3, "b first"), (7, "a first"), (3, "b second"), (7, "a second"), (3, "b third")]))
    ex = Exclusions()
    with caplog.at_level(logging.DEBUG, logger="dpcnn"):
        recs = read_coco_format(ann, tmp_path / "imgs", "val", ex)
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured...
    assert any("creating index" in r.getMessage() for r in caplog.records)  # ...and logged
    assert [r.image_id for r in recs] == ["7", "3", "9"]  # images[] order, str ids
    assert recs[0].captions == ("a first", "a second")
    assert recs[1].captions == ("b first", "b second", "b third")
    assert recs[1].path == str((tmp_path / "imgs" / "sub" / "b.jpg").absolute())
    assert recs[2].captions == ()  # zero-caption image kept for prepare to count, not dropped
    assert {r.split for r in recs} == {"val"} and all(r.identity == r.image_id for r in recs)
    assert ex.total == 0


def test_coco_format_does_not_open_images(tmp_path):
    ann = write_json(tmp_path / "caps.json", coco_numbered(2))
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "img1.jpg").write_bytes(b"not a jpeg")  # corrupt; img2 missing
    assert len(read_coco_format(ann, tmp_path / "imgs", "train", Exclusions())) == 2


ONE = {"id": 1, "file_name": "a.jpg"}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid JSON COCO-format captions file (Expecting property name"),
    ('{"images": [], "annotations": [', "Expecting value at line 1, column 32"),  # truncated: the end of the file
    ('{"images": [{"file_na', "(Unterminated string starting at line 1, column 14)"),  # cut inside a string
    ("[1, 2]", "JSON object with 'images' and 'annotations', got a JSON list"),
    (json.dumps({"annotations": []}), "missing top-level 'images'"),
    (json.dumps({"images": []}), "missing top-level 'annotations'"),
    (json.dumps({"images": {"1": "a.jpg"}, "annotations": []}), "'images' must be a list, got a JSON dict"),
    (json.dumps({"images": [ONE, {"id": 1, "file_name": "b.jpg"}], "annotations": []}),
     "image id 1 appears twice in 'images' (images[0] and images[1])"),
    (json.dumps({"images": [ONE], "annotations": []}), "no captions: 'annotations' is empty"),
    (json.dumps({"images": [ONE], "annotations": [{"image_id": 2, "caption": "x"}, {"image_id": 1, "caption": 5}]}),
     "no usable caption in its 2 annotations; the first problem: annotations[0]: caption of an unknown image id"),
    (json.dumps({"images": [ONE], "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}]}),
     "(an instances/keypoints file, not a captions file?)"),
])
def test_coco_format_file_level_problems_are_data_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_coco_format(path, tmp_path, "train", Exclusions())
    assert isinstance(err.value, UserError) and str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)  # the CLI prints it as one line


def test_coco_format_bad_entries_are_excluded_and_counted(tmp_path):
    obj = coco_captions({1: "a.jpg", 2: "b.jpg"}, [(1, "good one"), (17, "orphan"), (2, "good two")])
    obj["images"] += [{"id": 3, "file_name": ""}, {"file_name": "noid.jpg"}, "not an object"]
    obj["annotations"] += [
        {"id": 7, "image_id": 1, "caption": 42},
        {"id": 8, "image_id": 2},
        {"id": 9, "image_id": 3, "caption": "of the image without a file name"},
        {"id": 10, "image_id": [1], "caption": "odd id"},
    ]
    ex = Exclusions()
    recs = read_coco_format(write_json(tmp_path / "mine.json", obj), tmp_path, "train", ex)
    assert [(r.image_id, r.captions) for r in recs] == [("1", ("good one",)), ("2", ("good two",))]
    report = ex.report()
    assert report["excluded_counts"] == {
        "caption of an unknown image id": 1, "caption is not a string": 1, "annotation has no caption": 1,
        "caption of an excluded image entry": 1, "annotation has no usable image_id": 1,
        "image entry has no usable file_name": 1, "image entry has no usable id": 1, "image entry is not an object": 1}
    orphan = next(c for c in report["excluded_captions"] if c["reason"] == "caption of an unknown image id")
    assert orphan == {"source": "mine.json", "entry": "annotations[1]", "image_id": 17, "caption": "orphan",
                      "reason": "caption of an unknown image id"}
    not_str = next(c for c in report["excluded_captions"] if c["entry"] == "annotations[3]")
    assert not_str["caption"] == 42 and not_str["reason"] == "caption is not a string (int)"
    assert [e["entry"] for e in report["excluded_images"]] == ["images[2]", "images[3]", "images[4]"]
    json.dumps(report)  # every listed value is JSON (the [1] id is listed as its repr)


def test_exclusions_count_everything_but_list_only_the_first():
    ex = Exclusions(max_listed=3)
    for k in range(5):
        ex.image(f"corrupt image: broken byte {k}", path=f"/i/{k}.jpg")
        ex.caption(f"caption is not a string ({['int', 'list'][k % 2]})", caption=k)
    report = ex.report()
    assert report["excluded_counts"] == {"corrupt image": 5, "caption is not a string": 5}  # the kind, not the detail
    assert [e["path"] for e in report["excluded_images"]] == ["/i/0.jpg", "/i/1.jpg", "/i/2.jpg"]
    assert report["excluded_images"][1]["reason"] == "corrupt image: broken byte 1"
    assert len(report["excluded_captions"]) == 3 and ex.total == 10


# --------------------------------------------------------------------------------------------
# MSCOCO 2014 + Karpathy split
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


def read_karpathy(files, root, karpathy, ex=None):
    obj = json.loads(Path(karpathy).read_text())
    return read_mscoco_karpathy(files, root, obj, karpathy, Exclusions() if ex is None else ex)


def test_mscoco_karpathy_splits_restval_and_paths(tmp_path, capsys):
    files, karpathy = write_mscoco(tmp_path)
    recs = read_karpathy(files, tmp_path, karpathy)
    assert capsys.readouterr().out == ""
    assert {r.image_id: r.split for r in recs} == {"1": "train", "2": "train", "3": "train", "4": "val",
                                                   "5": "test", "6": "train", "7": "test"}
    assert split_counts(recs) == [4, 1, 2]
    r2, r5 = (next(r for r in recs if r.image_id == i) for i in ("2", "5"))
    assert r2.path == str((tmp_path / "train2014" / "COCO_train2014_000000000002.jpg").absolute())
    assert r5.path == str((tmp_path / "val2014" / "COCO_val2014_000000000005.jpg").absolute())
    assert r2.captions == ("train 2 a", "train 2 b")  # from the COCO annotations, in their order
    assert r5.captions == ("val 5 a", "val 5 b", "val 5 c")


def test_mscoco_karpathy_files_that_do_not_belong_together(tmp_path):
    files, karpathy = write_mscoco(tmp_path, {1: "train", 2: "train", 4: "val", 5: "test", 6: "test", 7: "val"})
    with pytest.raises(DataError, match=r"not in the Karpathy split file, e\.g\. ids 3"):
        read_karpathy(files, tmp_path, karpathy)
    files, karpathy = write_mscoco(tmp_path)
    with pytest.raises(DataError, match="in none of"):  # only one of the two annotation files
        read_karpathy(files[:1], tmp_path, karpathy)
    obj = json.loads(karpathy.read_text())
    obj["images"][0]["split"] = "holdout"
    write_json(karpathy, obj)
    with pytest.raises(DataError, match=r"images\[0\] \(cocoid 7\) has split 'holdout'"):
        read_karpathy(files, tmp_path, karpathy)


def test_mscoco_orphan_caption_in_the_official_file_is_counted(tmp_path):
    files, karpathy = write_mscoco(tmp_path)
    obj = json.loads(files[1].read_text())
    obj["annotations"].append({"id": 999, "image_id": 12345, "caption": "an image that is not there"})
    write_json(files[1], obj)
    ex = Exclusions()
    assert split_counts(read_karpathy(files, tmp_path, karpathy, ex)) == [4, 1, 2]
    assert ex.report()["excluded_captions"][0]["source"] == "captions_val2014.json"


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


def read_paper(p, ex=None):
    return read_flickr30k_paper(p["token"], p["images"], p["test"], p["dev"], Exclusions() if ex is None else ex)


def test_flickr30k_paper_split_and_captions_by_filename(tmp_path):
    p = write_flickr(tmp_path, seed=0)
    recs = read_paper(p)
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
    recs2 = read_flickr30k_paper(p2["token"], p["images"], p2["test"], p2["dev"], Exclusions())
    assert p["token"].read_text() != p2["token"].read_text() and recs2 == recs


def test_flickr30k_image_in_both_lists_is_test(tmp_path):
    p = write_flickr(tmp_path)
    p["dev"].write_text("2513260012_03d33305cf.jpg\n10002456_0000000000.jpg\n")  # also in the test list
    split = {r.image_id: r.split for r in read_paper(p)}
    assert split["2513260012.jpg"] == "test" and split["10002456.jpg"] == "val"  # as split_Flickr30k.m


@pytest.mark.parametrize("bad_line, reason", [
    ("1000092795.jpg\tno index", "line is not 'name.jpg#k<TAB>caption'"),
    ("1000092795.jpg#x\tbad index", "line is not 'name.jpg#k<TAB>caption'"),
    ("1000092795.jpg#1 no tab", "line is not 'name.jpg#k<TAB>caption'"),
    ("1000092795.jpg#0\tduplicate", "caption number seen twice: 1000092795.jpg#0"),
])
def test_flickr30k_bad_token_line_is_excluded_with_its_line_number(tmp_path, bad_line, reason):
    p = write_flickr(tmp_path)
    p["token"].write_text(f"1000092795.jpg#0\tfirst\n{bad_line}\n10002456.jpg#0\tother\n", encoding="utf-8")
    ex = Exclusions()
    recs = read_paper(p, ex)
    assert [(r.image_id, r.captions) for r in recs] == [("1000092795.jpg", ("first",)), ("10002456.jpg", ("other",))]
    [entry] = ex.report()["excluded_captions"]
    assert entry["line"] == 2 and entry["reason"] == reason and entry["source"] == "results_20130124.token"


def test_flickr30k_token_file_without_a_usable_line_is_a_data_error(tmp_path):
    p = write_flickr(tmp_path)
    write_json(p["token"], {"images": []})  # e.g. the Karpathy file given as the token file
    with pytest.raises(DataError, match=r"results_20130124\.token: no caption line .*the first problem: line 1: "):
        read_paper(p)
    p["token"].write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        read_paper(p)


def test_flickr30k_karpathy(tmp_path):
    obj = {"dataset": "flickr30k", "images": [
        {"filename": "1.jpg", "split": "train", "imgid": 0, "sentences": [{"raw": "one a"}, {"raw": "one b"}]},
        {"filename": "2.jpg", "split": "val", "imgid": 1, "sentences": [{"raw": "two"}, {"tokens": ["no", "raw"]}]},
        {"filename": "3.jpg", "split": "test", "imgid": 2, "sentences": [{"raw": "three"}, {"raw": 3}]},
        {"filename": "4.jpg", "split": "restval", "imgid": 3, "sentences": [{"raw": "four"}]},
        {"split": "train", "imgid": 4, "sentences": [{"raw": "no file name"}]},
    ]}
    ex = Exclusions()
    recs = read_flickr30k_karpathy(write_json(tmp_path / "dataset_flickr30k.json", obj), tmp_path / "imgs", ex)
    assert [(r.image_id, r.split, r.captions) for r in recs] == [
        ("1.jpg", "train", ("one a", "one b")), ("2.jpg", "val", ("two",)),
        ("3.jpg", "test", ("three",)), ("4.jpg", "train", ("four",))]
    assert ex.report()["excluded_counts"] == {"sentence has no 'raw' caption": 1, "caption is not a string": 1,
                                              "Karpathy entry without a usable 'filename'": 1}
    assert ex.report()["excluded_captions"][0]["entry"] == "images[1].sentences[1]"


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


def test_cuhk_pedes_identity_and_order(tmp_path):
    recs = read_cuhk_pedes(write_json(tmp_path / "reid_raw.json", cuhk_entries()), tmp_path / "imgs", Exclusions())
    assert [r.image_id for r in recs] == [e["file_path"] for e in cuhk_entries()]  # json order
    assert [r.identity for r in recs] == ["5", "9", "5", "11", "12", "12"]
    assert recs[0].captions == ("a man in red", "red shirt man")
    assert recs[1].path == str((tmp_path / "imgs" / "CUHK03" / "12_1.jpg").absolute())
    assert get("cuhk-pedes").by_identity and not get("coco").by_identity


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d[1].pop("file_path"), "entry has no usable file_path"),
    (lambda d: d[2].update(captions="not a list"), "entry has no captions list"),
    (lambda d: d[2].update(id=None), "entry has no usable person id"),
    (lambda d: d.__setitem__(2, ["not", "an", "object"]), "entry is not an object"),
])
def test_cuhk_pedes_bad_entry_is_excluded(tmp_path, mutate, reason):
    entries = cuhk_entries()
    mutate(entries)
    ex = Exclusions()
    recs = read_cuhk_pedes(write_json(tmp_path / "reid_raw.json", entries), tmp_path, ex)
    assert len(recs) == 5 and ex.report()["excluded_counts"] == {reason: 1}


def test_cuhk_pedes_file_level_problems(tmp_path):
    entries = cuhk_entries()
    entries[0]["captions"].append(7)
    ex = Exclusions()
    read_cuhk_pedes(write_json(tmp_path / "reid_raw.json", entries), tmp_path, ex)
    assert ex.report()["excluded_captions"][0] == {"source": "reid_raw.json", "entry": "[0].captions[2]",
                                                   "image_id": "CUHK01/0363004.png", "caption": 7,
                                                   "reason": "caption is not a string (int)"}
    entries[0]["split"] = "gallery"
    with pytest.raises(DataError, match=r"entry 0 \(CUHK01/0363004.png\) has split 'gallery'"):
        read_cuhk_pedes(write_json(tmp_path / "reid_raw.json", entries), tmp_path, Exclusions())
    for obj, message in (({"not": "a list"}, "JSON list"), ([], "no usable entry"),
                         ([{}], r"\[0\]: entry has no usable file_path")):
        with pytest.raises(DataError, match=message):
            read_cuhk_pedes(write_json(tmp_path / "reid_raw.json", obj), tmp_path, Exclusions())


# --------------------------------------------------------------------------------------------
# split_by_image, holdout default, check_disjoint
# --------------------------------------------------------------------------------------------


def plain_records(n: int, split: str = "train") -> list[ImageRecord]:
    return [ImageRecord(f"id{k:02d}", f"/imgs/{k}.jpg", split, (f"cap {k}",)) for k in range(n)]


def test_split_by_image_deterministic_disjoint_order_free():
    recs = plain_records(12)
    out = split_by_image(recs, holdout=3, seed=7)
    assert split_counts(out) == [6, 3, 3]
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
        assert [count(out, s) for s in ("val", "test")] == [2, 2]
    with pytest.raises(ConfigError, match="set data.holdout_images to at most 2"):
        split_by_image(plain_records(7), holdout=3, seed=0)  # needs 2*3+2 = 8
    with pytest.raises(DataError, match="more than once"):
        split_by_image(plain_records(5) + plain_records(5), holdout=1, seed=0)


@pytest.mark.parametrize("captioned, expected", [(422, 42), (9, 1), (3, 1), (25_000, 1000)])
def test_default_holdout_is_ten_percent_capped_and_at_least_one(captioned, expected):
    assert holdout_size(0, captioned) == expected
    assert holdout_size(5, captioned) == 5  # an explicit value is kept as it is


def test_single_file_default_holdout_is_logged_and_explicit_one_must_fit(tmp_path, caplog):
    obj = coco_numbered(430)
    obj["images"] += [{"id": 1000 + k, "file_name": f"nocap{k}.jpg"} for k in range(5)]  # not counted
    obj["annotations"] = [a for a in obj["annotations"] if a["image_id"] > 8]  # 422 captioned images
    ann = write_json(tmp_path / "mine.json", obj)
    data = DataConfig(dataset="coco-format", annotations=str(ann), images=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="dpcnn"):
        recs = get("coco-format").read(data, Exclusions())
    assert split_counts(recs) == [435 - 84, 42, 42]
    assert "holding out 42 images for each of val and test" in caplog.text
    assert "10 % of its 422 captioned images" in caplog.text
    assert split_counts(get("coco-format").read(replace(data, holdout_images=7), Exclusions()))[1:] == [7, 7]
    with pytest.raises(ConfigError, match="only 422 images with captions.*at most 210") as err:
        get("coco-format").read(replace(data, holdout_images=500), Exclusions())
    assert isinstance(err.value, UserError)


def test_check_disjoint_errors():
    a = ImageRecord("x", "/i/x.jpg", "train", ("c",))
    with pytest.raises(DataError, match="more than one split"):
        check_disjoint([a, ImageRecord("x", "/i/x.jpg", "test", ("c",))])
    with pytest.raises(DataError, match="more than once in one split"):
        check_disjoint([a, a])
    with pytest.raises(DataError, match="more than one split"):  # one file under two ids
        check_disjoint([a, ImageRecord("y", "/i/x.jpg", "val", ("c",))])
    with pytest.raises(DataError, match="one file under two ids"):
        check_disjoint([a, ImageRecord("y", "/i/x.jpg", "train", ("c",))])
    check_disjoint(plain_records(3))


# --------------------------------------------------------------------------------------------
# The dataset specs: read and sources on the default layouts
# --------------------------------------------------------------------------------------------


def read(data: DataConfig) -> list[ImageRecord]:
    return get(data.dataset).read(data, Exclusions())


def test_coco_format_given_files_and_id_clash(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    train = write_json(tmp_path / "train.json", coco_numbered(4, prefix="tr"))
    val = write_json(tmp_path / "val.json", coco_numbered(2, prefix="va"))  # ids 1, 2 again, other files
    test = write_json(tmp_path / "test.json", coco_numbered(2, start=10, prefix="te"))
    data = DataConfig(dataset="coco-format", annotations=str(train), images=str(imgs),
                      val_annotations=str(val), test_annotations=str(test))
    recs = read(data)
    assert [r.image_id for r in recs if r.split == "val"] == ["val:1", "val:2"]
    assert split_counts(recs) == [4, 2, 2]
    assert get("coco-format").sources(data)["split"] == "given files"
    # the same image file in train and test is a leak (prepare runs check_disjoint on the records)
    write_json(test, coco_numbered(2, start=1, prefix="tr"))
    with pytest.raises(DataError, match="more than one split"):
        check_disjoint(read(data))
    # only a test file: val is held out of the training file
    test_only = replace(data, val_annotations="", holdout_images=1,
                        test_annotations=str(write_json(tmp_path / "t2.json", coco_numbered(2, 50))))
    assert split_counts(read(test_only)) == [3, 1, 2]


def test_coco_dataset_default_layout_and_own_file(tmp_path):
    write_mscoco(tmp_path / "coco", karpathy_path=tmp_path / "karpathy" / "dataset_coco.json")
    assert split_counts(read(DataConfig(dataset="coco", root=str(tmp_path)))) == [4, 1, 2]
    # DESIGN §1: `--config coco --set data.annotations=own.json data.images=…` reads a user's own file
    own = write_json(tmp_path / "own.json", coco_numbered(8))
    data = DataConfig(dataset="coco", split="karpathy", annotations=str(own), images=str(tmp_path), holdout_images=2)
    assert split_counts(read(data)) == [4, 2, 2]
    assert get("coco").sources(data)["split"].startswith("by image: 2 for each of val and test")
    # the own-data keys mean nothing with the Karpathy split
    karpathy = DataConfig(dataset="coco", root=str(tmp_path), val_annotations=str(own))
    with pytest.raises(ConfigError, match="data.val_annotations has no effect here"):
        read(karpathy)


def test_flickr30k_both_splits_from_root(tmp_path):
    write_flickr(tmp_path)
    assert split_counts(read(DataConfig(dataset="flickr30k", root=str(tmp_path), split="paper"))) == [3, 1, 2]
    write_json(tmp_path / "karpathy" / "dataset_flickr30k.json", {"images": [
        {"filename": f"{k}.jpg", "split": s, "sentences": [{"raw": "x"}]}
        for k, s in enumerate(["train", "train", "val", "test"])]})
    assert split_counts(read(DataConfig(dataset="flickr30k", root=str(tmp_path), split="karpathy"))) == [2, 1, 1]


def write_synthetic(folder: Path) -> None:
    for k, split in enumerate(("train", "val", "test")):
        write_json(folder / f"captions_{split}.json", coco_numbered(3, start=10 * k, prefix=split))
        for i in range(3):
            write_jpeg(folder / split / f"{split}{10 * k + i}.jpg")


def test_synthetic_spec_reads_the_generated_folder(tmp_path):
    write_synthetic(tmp_path)
    recs = read(DataConfig(dataset="synthetic", images=str(tmp_path)))
    assert split_counts(recs) == [3, 3, 3] and all(Path(r.path).is_file() for r in recs)
    assert next(r for r in recs if r.split == "val").path == str((tmp_path / "val" / "val10.jpg").absolute())


def layouts(root: Path) -> dict[str, DataConfig]:
    """Every dataset on a tiny copy of its default layout under ``root`` (one data config each)."""
    write_mscoco(root / "coco", karpathy_path=root / "karpathy" / "dataset_coco.json")
    write_flickr(root)
    write_json(root / "karpathy" / "dataset_flickr30k.json", {"images": [
        {"filename": f"{fid}.jpg", "split": s, "sentences": [{"raw": "x"}]}
        for fid, s in zip(FLICKR_IDS, ["train", "train", "val", "test", "train", "train"])]})
    write_json(root / "cuhk-pedes" / "reid_raw.json", cuhk_entries())
    (root / "cuhk-pedes" / "imgs").mkdir()
    write_synthetic(root / "synthetic")
    own = root / "own"
    write_json(own / "train.json", coco_numbered(8))
    write_json(own / "test.json", coco_numbered(2, start=20))
    (own / "train.csv").write_text("image,caption\n" + "".join(f"img{k}.jpg,caption {k} {s}\n" for k in range(1, 9) for s in "ab"))
    write_json(root / "emoji" / "emoji.json", {"emoji": [
        {"hexcode": "1F600", "annotation": "grinning face", "tags": "face, grin", "openmoji_tags": "",
         "images": [{"style": style, "file": f"images/{style}/1F600.png", "sha256": style * 8}
                    for style in ("color", "black")]}]})
    return {
        "coco": DataConfig(dataset="coco", root=str(root)),
        "coco-format": DataConfig(dataset="coco-format", annotations=str(own / "train.json"), images=str(own),
                                  test_annotations=str(own / "test.json"), holdout_images=1),
        "flickr30k": DataConfig(dataset="flickr30k", root=str(root), split="paper"),
        "flickr30k-karpathy": DataConfig(dataset="flickr30k", root=str(root), split="karpathy"),
        "cuhk-pedes": DataConfig(dataset="cuhk-pedes", root=str(root)),
        "synthetic": DataConfig(dataset="synthetic", images=str(root / "synthetic")),
        "csv": DataConfig(dataset="csv", annotations=str(own / "train.csv"), images=str(own), holdout_images=1),
        "emoji": DataConfig(dataset="emoji", root=str(root)),
    }


def test_every_dataset_is_registered_with_downloads_that_exist(tmp_path):
    # every dataset has a layout in the read/sources agreement test below
    configs = layouts(tmp_path)
    assert set(LAYOUTS) == set(configs) and {d.dataset for d in configs.values()} == set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert get(name) is spec and spec.name == name
        assert set(spec.downloads) <= set(download.REGISTRY), name
        assert all(row.dataset == name for row in spec.paper_results)
    behind_a_form = {name for name, spec in REGISTRY.items() if spec.manual_steps}
    assert behind_a_form == {name for name in download.available() if download.is_manual(name)}
    with pytest.raises(ConfigError, match="one of synthetic, coco, coco-format, csv, flickr30k, cuhk-pedes, emoji; got 'imagenet'"):
        get("imagenet")


LAYOUTS = ["coco", "coco-format", "flickr30k", "flickr30k-karpathy", "cuhk-pedes", "synthetic", "csv", "emoji"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_and_sources_agree_on_the_files(tmp_path, monkeypatch, layout):
    """``read`` opens exactly the files ``sources`` names, its records lie in the folders it names,
    and removing any named file makes ``read`` stop with a DataNotFoundError that names it."""
    data = layouts(tmp_path)[layout]
    spec = get(data.dataset)
    named = {Path(p) for p in spec.sources(data).values() if Path(p).is_absolute()}
    files = {p for p in named if p.is_file()}
    folders = {p.absolute() for p in named if p.is_dir()}
    opened: list[Path] = []
    real_open = builtins.open

    def recording_open(path, *args, **kwargs):
        opened.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    recs = spec.read(data, Exclusions())
    monkeypatch.setattr(builtins, "open", real_open)
    assert recs and set(opened) == files
    assert all(any(Path(r.path).is_relative_to(f) for f in folders) for r in recs)
    for path in sorted(files):
        path.rename(path.with_name(path.name + ".away"))
        with pytest.raises(DataNotFoundError, match=re.escape(str(path))):
            spec.read(data, Exclusions())
        path.with_name(path.name + ".away").rename(path)


def test_manual_steps_put_the_files_where_the_reader_looks(tmp_path):
    for name, spec in REGISTRY.items():
        if not spec.manual_steps:
            continue
        steps = download.manual_instructions(name, tmp_path)
        sources = spec.sources(DataConfig(dataset=name, root=str(tmp_path)))
        for role in ("annotations", "images"):
            assert Path(sources[role]).as_posix() in steps, (name, role)


@pytest.mark.parametrize("data, path_part, key, how", [
    (DataConfig(dataset="coco"), "karpathy/dataset_coco.json", "data.annotations", "dpcnn download karpathy-splits"),
    (DataConfig(dataset="flickr30k"), "flickr30k-images", "data.images", "request form"),
    (DataConfig(dataset="cuhk-pedes"), "cuhk-pedes/reid_raw.json", "data.annotations", "request form"),
    (DataConfig(dataset="coco-format", annotations="nowhere.json", images="."), "nowhere.json",
     "data.annotations", "Check the path"),
])
def test_missing_files_say_what_to_do(tmp_path, data, path_part, key, how):
    with pytest.raises(DataNotFoundError) as err:
        read(replace(data, root=str(tmp_path / "data")))
    assert isinstance(err.value, UserError) and isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert path_part in msg and key in msg and how in msg


def test_missing_coco_captions_and_flickr8k_lists(tmp_path):
    _, karpathy = write_mscoco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(DataNotFoundError, match=r"captions_val2014\.json.*dpcnn download coco"):
        read(DataConfig(dataset="coco", root=str(tmp_path), annotations=str(karpathy)))
    p = write_flickr(tmp_path)
    p["dev"].unlink()
    with pytest.raises(DataNotFoundError, match=r"Flickr_8k\.devImages\.txt.*flickr30k-splits"):
        read(DataConfig(dataset="flickr30k", root=str(tmp_path)))


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="data.annotations"):
        read(DataConfig(dataset="coco-format"))
    ann = write_json(tmp_path / "mine.json", coco_numbered(10))
    with pytest.raises(ConfigError, match="data.images=FOLDER is needed"):
        read(DataConfig(dataset="coco-format", annotations=str(ann)))
    write_flickr(tmp_path)
    with pytest.raises(ConfigError, match="paper or karpathy"):
        read(DataConfig(dataset="flickr30k", root=str(tmp_path), split="random"))
