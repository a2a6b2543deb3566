"""The embedded synthetic shapes dataset: determinism, caching, COCO format, caption truth."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpcnn.config import Config, DataConfig, SyntheticConfig, fingerprint
from dpcnn.data import shapes as syn
from dpcnn.data.datasets import get
from dpcnn.data.manifest import Exclusions

SMALL = SyntheticConfig(num_train=12, num_val=4, num_test=4, image_size=32, seed=3, max_objects=3)
SPLITS = ("train", "val", "test")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("syn") / "data"
    return out, syn.generate(SMALL, out)


# --------------------------------------------------------------------------------------------
# Files: determinism, caching, format
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes(small, tmp_path):
    out, _ = small
    other = tmp_path / "again"
    syn.generate(SMALL, other)
    a, b = _files(out), _files(other)
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith(".jpg")]) == 20
    for key in a:
        assert a[key] == b[key], key


def test_other_seed_other_data(small, tmp_path):
    out, paths = small
    other = syn.generate(dataclasses.replace(SMALL, seed=4), tmp_path / "s4")
    assert json.loads(paths["test"].read_text())["annotations"] != json.loads(other["test"].read_text())["annotations"]


def test_second_call_returns_without_writing(small, monkeypatch):
    out, paths = small
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def boom(*args, **kwargs):
        raise AssertionError("a complete dataset was generated again")

    monkeypatch.setattr(syn, "sample_splits", boom)
    monkeypatch.setattr(syn, "render_scene", boom)
    assert syn.generate(SMALL, out) == paths
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_partial_folder_is_regenerated(small, tmp_path):
    out, _ = small
    partial = tmp_path / "partial"
    syn.generate(SMALL, partial)
    (partial / "DONE.json").unlink()
    next(iter(sorted((partial / "train").glob("*.jpg")))).unlink()
    (partial / "captions_val.json").write_text("{not json")
    (partial / "test" / "stray.jpg").write_bytes(b"junk")
    (partial / "notes.txt").write_text("the user's own file")
    syn.generate(SMALL, partial)
    files = _files(partial)
    assert files.pop("notes.txt") == b"the user's own file"  # only our own files are replaced
    assert files == _files(out)


def test_other_config_in_the_same_folder_is_regenerated(tmp_path):
    syn.generate(SMALL, tmp_path)
    bigger = dataclasses.replace(SMALL, num_test=6)
    paths = syn.generate(bigger, tmp_path)
    assert len(json.loads(paths["test"].read_text())["images"]) == 6
    assert len(list((tmp_path / "test").glob("*.jpg"))) == 6
    assert json.loads((tmp_path / "DONE.json").read_text())["config"]["num_test"] == 6


def test_dataset_dir():
    assert syn.dataset_dir(Path("data"), SMALL) == Path("data") / "synthetic" / f"32px-{fingerprint(SMALL)}"
    assert syn.dataset_dir(Path("d"), SMALL) != syn.dataset_dir(Path("d"), SyntheticConfig(seed=9))


def test_counts_ids_and_images(small):
    out, paths = small
    assert set(paths) == set(SPLITS)
    want = {"train": 12, "val": 4, "test": 4}
    all_ids = []
    for split, path in paths.items():
        assert path == out / f"captions_{split}.json"
        data = json.loads(path.read_text())
        assert len(data["images"]) == want[split]
        assert len(data["annotations"]) == 5 * want[split]
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(i["file_name"] for i in data["images"])
        for im in data["images"]:
            all_ids.append(im["id"])
            with Image.open(out / split / im["file_name"]) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert img.size == (32, 32) == (im["width"], im["height"])
                img.load()
    assert len(set(all_ids)) == len(all_ids)


def test_coco_api_reads_every_split(small):
    from pycocotools.coco import COCO

    for path in small[1].values():
        coco = COCO(str(path))
        ids = coco.getImgIds()
        assert ids
        for image_id in ids:
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert len(anns) == 5
            assert len({a["caption"] for a in anns}) == 5
            assert coco.loadImgs(image_id)[0]["file_name"] == f"{image_id}.jpg"


def test_the_synthetic_spec_reads_what_the_generator_wrote(tmp_path):
    spec = get("synthetic")
    data = spec.generate(Config(data=DataConfig(root=str(tmp_path)), synthetic=SMALL), False)
    assert Path(data.images) == syn.dataset_dir(tmp_path, SMALL)
    exclusions = Exclusions()
    records = spec.read(data, exclusions)
    assert exclusions.total == 0
    assert [sum(r.split == s for r in records) for s in SPLITS] == [12, 4, 4]
    assert all(len(r.captions) == 5 and Path(r.path).is_file() for r in records)
    assert all(Path(r.path).parent.name == r.split for r in records)
    named = set(spec.sources(data).values())
    assert {str(p) for p in syn.caption_files(Path(data.images)).values()} <= named


@pytest.mark.parametrize("size", [16, 48])
def test_any_image_size(tmp_path, size):
    cfg = SyntheticConfig(num_train=2, num_val=1, num_test=1, image_size=size, max_objects=4)
    paths = syn.generate(cfg, tmp_path)
    for split, path in paths.items():
        for im in json.loads(path.read_text())["images"]:
            with Image.open(tmp_path / split / im["file_name"]) as img:
                assert img.size == (size, size)


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------

SCENES_CFG = SyntheticConfig(num_train=300, num_val=50, num_test=50, seed=7, max_objects=4)


@pytest.fixture(scope="module")
def sampled() -> dict[str, list[tuple[syn.Scene, list[str]]]]:
    return syn.sample_splits(SCENES_CFG)


def test_scenes_unique_within_and_across_splits(sampled):
    keys = [scene.key for items in sampled.values() for scene, _ in items]
    assert len(keys) == 400
    assert len(set(keys)) == len(keys)


def test_scenes_are_well_formed(sampled):
    counts = {k: 0 for k in range(1, 5)}
    for items in sampled.values():
        for scene, _ in items:
            objs = scene.objects
            counts[len(objs)] += 1
            assert len({(o.row, o.col) for o in objs}) == len(objs)
            assert len({(o.colour, o.shape) for o in objs}) == len(objs)
            for o in objs:
                x0, y0, x1, y1 = o.bbox
                assert 0 < x0 < x1 < 1 and 0 < y0 < y1 < 1
            for a in objs:  # no overlap at all: distinct cells are separated
                for b in objs:
                    if a is not b:
                        assert a.left_of(b) or b.left_of(a) or a.above(b) or b.above(a)
    assert all(c > 0 for c in counts.values()), counts
    used = {(o.colour, o.shape, o.size) for items in sampled.values() for s, _ in items for o in s.objects}
    assert {c for c, _, _ in used} == set(syn.COLOURS) and len(syn.COLOURS) >= 8
    assert {s for _, s, _ in used} == set(syn.SHAPES) and len(syn.SHAPES) >= 6
    assert {z for _, _, z in used} == {"small", "large"}


def test_test_split_depends_only_on_seed_and_its_size():
    a = syn.sample_splits(SyntheticConfig(num_train=30, num_val=5, num_test=10, seed=1, image_size=32))
    b = syn.sample_splits(SyntheticConfig(num_train=50, num_val=9, num_test=10, seed=1, image_size=256))
    assert a["test"] == b["test"]


def test_too_many_scenes_for_the_scene_space_is_an_error():
    with pytest.raises(ValueError, match="different scenes"):
        syn.sample_splits(SyntheticConfig(num_train=900, num_val=1, num_test=1, max_objects=1))


def test_backgrounds_never_look_like_an_object():
    objects = np.array(list(syn.COLOURS.values()), float)
    tones = np.array(list(syn.BACKGROUNDS.values()), float)
    for shift in (-syn.TEXTURE_AMPLITUDE, 0, syn.TEXTURE_AMPLITUDE):
        dist = np.linalg.norm((tones + shift)[:, None] - objects[None], axis=-1)
        assert dist.min() > 80


def test_pixels_at_object_centres_have_the_object_colour(tmp_path):
    cfg = SyntheticConfig(num_train=20, num_val=2, num_test=2, image_size=64, seed=5)
    paths = syn.generate(cfg, tmp_path)
    palette = {name: np.array(rgb, float) for name, rgb in syn.COLOURS.items()}
    palette.update({f"bg-{name}": np.array(rgb, float) for name, rgb in syn.BACKGROUNDS.items()})
    checked = 0
    for im in json.loads(paths["train"].read_text())["images"]:
        pixels = np.asarray(Image.open(tmp_path / "train" / im["file_name"]).convert("RGB"), float)
        for obj in im["objects"]:
            x, y, w, h = obj["bbox"]
            px = pixels[int(y + h / 2), int(x + w / 2)]
            nearest = min(palette, key=lambda n: np.linalg.norm(palette[n] - px))
            assert nearest == obj["colour"], (im["file_name"], obj, px)
            checked += 1
        # a corner is background: the free margin holds no object
        corner = pixels[1, 1]
        assert min(palette, key=lambda n: np.linalg.norm(palette[n] - corner)).startswith("bg-")
    assert checked >= 30


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

SIZE_OF = {w: size for size, words in syn.SIZE_WORDS.items() for w in words}
SHAPE_OF = {w: shape for shape, words in syn.SHAPE_WORDS.items() for w in words}
NP = (rf"(?:({'|'.join(SIZE_OF)}) )?({'|'.join(syn.COLOURS)}) ({'|'.join(SHAPE_OF)})")
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4}


def _find(scene: syn.Scene, size: str | None, colour: str, shape_word: str) -> syn.SceneObject:
    """The object a noun phrase names; fails if none matches (wrong colour, shape or size)."""
    hits = [o for o in scene.objects if o.colour == colour and o.shape == SHAPE_OF[shape_word]]
    assert len(hits) == 1, f"no single {colour} {shape_word} in {scene.objects}"
    if size is not None:
        assert hits[0].size == SIZE_OF[size], f"{size} {colour} {shape_word} is {hits[0].size}"
    return hits[0]


def check_caption(scene: syn.Scene, caption: str) -> None:
    """Assert that ``caption`` is true of ``scene``, read with an independent little parser."""
    assert re.fullmatch(r"[a-z]+(,? [a-z]+)*", caption), caption
    assert len(caption.split()) <= syn.MAX_WORDS
    k = len(scene.objects)
    named = {id(_find(scene, *m.groups())) for m in re.finditer(NP, caption)}
    assert (len(named) == k) if k <= 2 else (len(named) >= 2), caption
    for m in re.finditer(r"\b(one|two|three|four) (shapes|objects|shape)\b", caption):
        assert COUNTS[m.group(1)] == k, caption
    if re.search(r"\b(single|with one|one shape)\b|^one ", caption):
        assert k == 1, caption
    if re.search(r"\bit is (\w+)", caption):
        assert scene.objects[0].size == SIZE_OF[re.search(r"\bit is (\w+)", caption).group(1)]

    def obj(m, i):
        return _find(scene, m.group(i), m.group(i + 1), m.group(i + 2))

    for m in re.finditer(rf"{NP} (?:is )?(?:to the |on the )?(left|right) of (?:a |an )?{NP}", caption):
        a, b = obj(m, 1), obj(m, 5)
        left, right = (a, b) if m.group(4) == "left" else (b, a)
        assert left.cx + left.radius < right.cx - right.radius and left.col < right.col, caption
    for m in re.finditer(rf"{NP} (?:is )?(above|below|under) (?:a |an )?{NP}", caption):
        a, b = obj(m, 1), obj(m, 5)
        upper, lower = (a, b) if m.group(4) == "above" else (b, a)
        assert upper.cy + upper.radius < lower.cy - lower.radius and upper.row < lower.row, caption
    for m in re.finditer(rf"{NP} (in the middle|in the center|on the (?:left|right)|at the (?:top|bottom)(?: left| right)?"
                         rf"|in the (?:top|bottom) (?:left|right) corner)", caption):
        o, where = obj(m, 1), m.group(4)
        if "middle" in where or "center" in where:
            assert (o.row, o.col) == (1, 1), caption
        if "top" in where:
            assert o.row == 0 and o.cy < 1 / 3, caption
        if "bottom" in where:
            assert o.row == 2 and o.cy > 2 / 3, caption
        if "left" in where:
            assert o.col == 0 and o.cx < 1 / 3, caption
        if "right" in where:
            assert o.col == 2 and o.cx > 2 / 3, caption
    m = re.match(r"from (left to right|top to bottom), (.*)$", caption)
    if m:
        items = [_find(scene, *n.groups()) for n in re.finditer(NP, m.group(2))]
        assert len(items) == k, caption
        for p, q in zip(items, items[1:]):
            assert p.left_of(q) if m.group(1) == "left to right" else p.above(q), caption


def test_every_caption_is_true(sampled):
    seen_relations = {"left": 0, "right": 0, "above": 0, "below": 0, "under": 0, "from": 0, "corner": 0}
    for items in sampled.values():
        for scene, captions in items:
            assert len(captions) == 5 and len(set(captions)) == 5
            for caption in captions:
                check_caption(scene, caption)
                for word in seen_relations:
                    seen_relations[word] += word in caption.split()
    assert all(n > 20 for n in seen_relations.values()), seen_relations


def test_checker_catches_false_captions():
    """The parser above is not vacuous: it rejects wrong colours, sizes, relations and counts."""
    red = syn.SceneObject("circle", "red", "large", 1, 0, 0.2, 0.5)
    blue = syn.SceneObject("square", "blue", "small", 1, 2, 0.8, 0.5)
    scene = syn.Scene((red, blue), "flat", ("grey", "beige"), 0)
    check_caption(scene, "a large red circle to the left of a small blue square")
    for wrong in ("a large red circle to the right of a small blue square",
                  "a small blue square is left of a red circle",
                  "a large blue circle to the left of a small red square",
                  "a small red circle and a blue square",
                  "three shapes, a red circle and a blue square",
                  "a red circle above a blue square",
                  "a red circle in the middle and a blue square"):
        with pytest.raises(AssertionError):
            check_caption(scene, wrong)


def test_swapped_colours_give_different_captions():
    def scene(left_colour: str, right_colour: str) -> syn.Scene:
        return syn.Scene((syn.SceneObject("circle", left_colour, "large", 1, 0, 0.2, 0.5),
                          syn.SceneObject("square", right_colour, "large", 1, 2, 0.8, 0.5)),
                         "flat", ("grey", "beige"), 0)

    a = syn.describe_scene(scene("red", "blue"), np.random.default_rng(0))
    b = syn.describe_scene(scene("blue", "red"), np.random.default_rng(0))
    assert not set(a) & set(b)
    for caption in a:
        assert re.search(r"red (circle|disc)", caption) and "blue square" in caption
    for caption in b:
        assert re.search(r"blue (circle|disc)", caption) and "red square" in caption


def test_vocabulary_is_modest_and_no_word_names_one_image(sampled):
    images_with: dict[str, int] = {}
    for _, captions in sampled["train"]:
        for word in {w for c in captions for w in re.split(r"[ ,]+", c)}:
            images_with[word] = images_with.get(word, 0) + 1
    assert 40 <= len(images_with) <= 150
    assert min(images_with.values()) >= 3, sorted(images_with.items(), key=lambda kv: kv[1])[:5]
    assert {"the", "a", "and", "of"} <= set(images_with)
    # val and test use the same words
    for split in ("val", "test"):
        words = {w for _, caps in sampled[split] for c in caps for w in re.split(r"[ ,]+", c)}
        assert words <= set(images_with)
