"""The emoji dataset: OpenMoji npm package → conversion → reader, the release archive through
``dpcnn download emoji`` (a local HTTP server), ``--from``, and the command line's one-line errors.

Everything is made here: a tarball laid out like ``npm pack openmoji@17.0.0`` with hand-written
72 × 72 SVGs and an ``openmoji.json`` of eight entries. What each entry is for:

| entry | SVGs | expected |
|---|---|---|
| 1F534 red circle | both | train; its black circle is 1F7E2's too → that rendering excluded at read |
| 1F7E6 blue square | both | train, two renderings |
| 1F44D thumbs up | both | test, two renderings |
| 1F44D-1F3FB (skin tone 1) | both | left out: skin-tone variant |
| 1F7E2 green circle | both | val; black rendering excluded at read (1F534's black circle) |
| 2B50 star | black only | train, one rendering; "missing SVG" |
| 1F7E1 yellow circle | colour unreadable, black missing | "unreadable SVG", "missing SVG", "emoji without any rendering" |
| ``../evil`` | – | "entry has no usable hexcode" (never a file name) |

Splits (sha256 of the hexcode, worked out once): 1F534, 1F7E6, 2B50 train; 1F7E2 val; 1F44D test.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import re
import sys
import tarfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from helpers import ROOT, serving
from PIL import Image

from dpcnn.cli import main
from dpcnn.data import download as dl
from dpcnn.data import emoji_source
from dpcnn.data.datasets import emoji as emoji_spec
from dpcnn.data.manifest import Exclusions
from dpcnn.errors import ChecksumError, DataError, DataNotFoundError, MissingDependencyError


def _svg(body: str) -> str:
    return f'<svg viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg">{body}</svg>'


RING = _svg('<circle cx="36" cy="36" r="30" fill="none" stroke="#000000" stroke-width="2"/>')
SVGS = {
    "color/svg/1F534.svg": _svg('<circle cx="36" cy="36" r="30" fill="#FF0000"/>'),
    "black/svg/1F534.svg": RING,
    "color/svg/1F7E6.svg": _svg('<rect x="12" y="12" width="48" height="48" fill="#0000FF"/>'),
    "black/svg/1F7E6.svg": _svg('<rect x="12" y="12" width="48" height="48" fill="none" stroke="#000000"/>'),
    "color/svg/1F44D.svg": _svg('<polygon points="36,8 64,64 8,64" fill="#00FF00"/>'),
    "black/svg/1F44D.svg": _svg('<polygon points="36,8 64,64 8,64" fill="none" stroke="#000000"/>'),
    "color/svg/1F44D-1F3FB.svg": _svg('<polygon points="36,8 64,64 8,64" fill="#FFDDCC"/>'),
    "black/svg/1F44D-1F3FB.svg": _svg('<polygon points="36,8 64,64 8,64" fill="none" stroke="#000000"/>'),
    "color/svg/1F7E2.svg": _svg('<circle cx="36" cy="36" r="30" fill="#00FF00"/>'),
    "black/svg/1F7E2.svg": RING,
    "black/svg/2B50.svg": _svg('<polygon points="36,4 46,28 70,28 50,44 58,68 36,54 14,68 22,44 2,28 26,28" '
                               'fill="none" stroke="#000000"/>'),
    "color/svg/1F7E1.svg": "<svg this is not xml",
}


def _entry(hexcode, annotation, tags="", openmoji_tags="", skintone=""):
    return {"emoji": "?", "hexcode": hexcode, "group": "symbols", "subgroups": "geometric",
            "annotation": annotation, "tags": tags, "openmoji_tags": openmoji_tags, "skintone": skintone}


TABLE = [
    _entry("1F534", "red circle", "circle, geometric, red"),
    _entry("1F7E6", "blue square", "blue, square", "box"),
    _entry("1F44D", "thumbs up", "+1, hand, thumb, up", "like, good"),
    _entry("1F44D-1F3FB", "thumbs up: light skin tone", "+1, hand", skintone=1),
    _entry("1F7E2", "green circle", "circle, green"),
    _entry("2B50", "star", "star, night"),
    _entry("1F7E1", "yellow circle", "circle, yellow"),
    _entry("../evil", "not a hexcode"),
]
LICENCE = "Attribution-ShareAlike 4.0 International\n(test copy)\n"

CONVERSION_EXCLUSIONS = {"entry has no usable hexcode": 1, "skin-tone variant": 1, "missing SVG": 2,
                         "unreadable SVG": 1, "emoji without any rendering": 1}
CAPTIONS = {
    "1F534": ("red circle", "circle, geometric, red"),
    "1F7E6": ("blue square", "blue, square", "box"),
    "1F44D": ("thumbs up", "+1, hand, thumb, up", "like, good"),
    "1F7E2": ("green circle", "circle, green"),
    "2B50": ("star", "star, night"),
}
RECORDS = {  # image_id → split, after the two identical black circles are excluded
    "color/1F534": "train", "color/1F7E6": "train", "black/1F7E6": "train", "color/1F44D": "test",
    "black/1F44D": "test", "color/1F7E2": "val", "black/2B50": "train",
}


def _tar(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _package_files() -> dict[str, bytes]:
    files = {f"package/{k}": v.encode() for k, v in SVGS.items()}
    files["package/data/openmoji.json"] = json.dumps(TABLE).encode()
    files["package/package.json"] = b'{"name": "openmoji", "version": "17.0.0"}'
    files["package/LICENSE.txt"] = LICENCE.encode()
    files["package/README.md"] = b"# OpenMoji\n"
    return files


@pytest.fixture(scope="module")
def npm_tarball(tmp_path_factory) -> Path:
    return _tar(_package_files(), tmp_path_factory.mktemp("npm") / "openmoji-17.0.0.tgz")


@pytest.fixture(scope="module")
def converted(npm_tarball, tmp_path_factory):
    return emoji_source.convert(npm_tarball, tmp_path_factory.mktemp("root"), progress=False)


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    monkeypatch.setattr(logging.getLogger("dpcnn"), "propagate", True)  # the CLI turns it off


def _read(folder: Path) -> tuple[list, Exclusions]:
    exclusions = Exclusions()
    return emoji_spec.read_emoji(folder / "emoji.json", folder, exclusions), exclusions


def _pixel(path: Path, x: int, y: int) -> tuple[int, ...]:
    with Image.open(path) as im:
        assert (im.mode, im.size) == ("RGB", (72, 72))
        return im.getpixel((x, y))


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"dpcnn {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


# --- conversion ---


def test_conversion_writes_the_layout_and_counts_what_it_leaves_out(converted):
    folder = converted.folder
    assert (converted.emoji, converted.images) == (5, 9)
    assert dict(converted.exclusions.counts) == CONVERSION_EXCLUSIONS
    table = json.loads((folder / "emoji.json").read_text())
    assert table["excluded_counts"] == dict(sorted(CONVERSION_EXCLUSIONS.items()))
    assert [e["hexcode"] for e in table["emoji"]] == ["1F534", "1F7E6", "1F44D", "1F7E2", "2B50"]
    star = table["emoji"][4]
    assert {k: star[k] for k in ("annotation", "tags", "openmoji_tags", "group", "subgroup")} == {
        "annotation": "star", "tags": "star, night", "openmoji_tags": "", "group": "symbols", "subgroup": "geometric"}
    assert [i["file"] for i in star["images"]] == ["images/black/2B50.png"]
    for entry in table["emoji"]:
        for image in entry["images"]:
            assert hashlib.sha256((folder / image["file"]).read_bytes()).hexdigest() == image["sha256"]
    # a red disc and a blue square on white: the centre is the fill, the corner the background
    assert _pixel(folder / "images/color/1F534.png", 36, 36) == (255, 0, 0)
    assert _pixel(folder / "images/color/1F534.png", 1, 1) == (255, 255, 255)
    assert _pixel(folder / "images/color/1F7E6.png", 36, 36) == (0, 0, 255)
    assert _pixel(folder / "images/black/1F7E6.png", 36, 36) == (255, 255, 255)  # outline only
    assert not (folder / "images/color/1F44D-1F3FB.png").exists()
    assert not list(folder.parent.rglob("evil*"))
    assert (folder / "LICENSE.txt").read_text() == LICENCE
    assert "CC BY-SA 4.0" in (folder / "ATTRIBUTION.md").read_text()


def test_conversion_is_deterministic_and_reads_folders_too(npm_tarball, converted, tmp_path):
    extracted = tmp_path / "extracted"
    with tarfile.open(npm_tarball) as tf:
        tf.extractall(extracted, filter="data")
    for source in (npm_tarball, extracted, extracted / "package"):
        again = emoji_source.convert(source, tmp_path / source.name, progress=False)
        for path in sorted(converted.folder.rglob("*.*")):
            relative = path.relative_to(converted.folder)
            assert (again.folder / relative).read_bytes() == path.read_bytes(), (source, relative)


@pytest.mark.parametrize("case, error, message", [
    ("no-table", DataError, "has no package/data/openmoji.json"),
    ("not-a-tar", DataError, "neither an npm tarball"),
    ("missing", DataNotFoundError, "OpenMoji copy not found"),
    ("empty-folder", DataError, "no data/openmoji.json or package/data/openmoji.json"),
    ("table-not-a-list", DataError, "is a JSON list of emoji, got a JSON dict"),
])
def test_a_copy_that_is_not_openmoji_is_one_clear_error(tmp_path, case, error, message):
    files = _package_files()
    source = tmp_path / "openmoji-17.0.0.tgz"
    if case == "no-table":
        del files["package/data/openmoji.json"]
        _tar(files, source)
    elif case == "not-a-tar":
        source.write_text("not a tarball")
    elif case == "empty-folder":
        source = tmp_path / "folder"
        source.mkdir()
    elif case == "table-not-a-list":
        files["package/data/openmoji.json"] = b'{"1F600": {}}'
        _tar(files, source)
    with pytest.raises(error, match=message) as info:
        emoji_source.convert(source, tmp_path / "root", progress=False)
    assert "npm pack openmoji@17.0.0" in str(info.value) or case == "table-not-a-list"


def test_without_the_rasteriser_the_error_says_what_to_install(monkeypatch):
    from dpcnn.data.svg import render_png

    monkeypatch.setitem(sys.modules, "resvg_py", None)  # `import resvg_py` fails
    with pytest.raises(MissingDependencyError, match="pip install resvg-py"):
        render_png(SVGS["color/svg/1F534.svg"].encode(), 72)


# --- the reader ---


def test_reader_gives_one_record_per_rendering_split_by_emoji(converted):
    records, exclusions = _read(converted.folder)
    assert {r.image_id: r.split for r in records} == RECORDS
    assert dict(exclusions.counts) == {"rendering identical to another emoji's": 2}
    assert sorted(e["image_id"] for e in exclusions.images) == ["black/1F534", "black/1F7E2"]
    for r in records:
        hexcode = r.image_id.split("/")[1]
        assert r.identity == hexcode and r.captions == CAPTIONS[hexcode]
        assert r.path == str(converted.folder / "images" / f"{r.image_id}.png")
    # every rendering of an emoji is in one split
    splits = {}
    for r in records:
        splits.setdefault(r.identity, set()).add(r.split)
    assert all(len(s) == 1 for s in splits.values())


def test_split_of_is_the_sha256_bucket():
    assert [emoji_spec.split_of(h) for h in ("1F534", "1F7E6", "2B50", "1F7E2", "1F44D")] == \
        ["train", "train", "train", "val", "test"]
    # bucket = first 8 bytes of sha256 mod 10: 8 → val, 9 → test
    digest = int.from_bytes(hashlib.sha256(b"1F44D").digest()[:8], "big")
    assert digest % 10 == 9


def test_a_missing_table_says_how_to_get_it(tmp_path):
    from dpcnn.config import DataConfig

    with pytest.raises(DataNotFoundError) as info:
        emoji_spec.read(DataConfig(dataset="emoji", root=str(tmp_path)), Exclusions())
    message = str(info.value)
    assert f"{tmp_path}/emoji/emoji.json" in message and "dpcnn download emoji" in message
    assert "--from openmoji-17.0.0.tgz" in message and "npm pack openmoji@17.0.0" in message


def test_prepare_counts_a_missing_png_and_uses_emoji_as_classes(converted, tmp_path):
    import shutil

    from dpcnn.data.prepare import load_prepared, prepare
    from dpcnn.presets import resolve

    root = tmp_path / "data"
    shutil.copytree(converted.folder, root / "emoji")
    (root / "emoji/images/black/1F7E6.png").unlink()
    cfg = resolve("emoji", [f"data.root={root}"])
    report = prepare(cfg, progress=False)
    assert report["excluded_counts"] == {"rendering identical to another emoji's": 2, "missing image file": 1}
    assert {s: c["images"] for s, c in report["counts"].items()} == {"train": 3, "val": 1, "test": 2}
    assert report["num_classes"] == 3  # 1F534, 1F7E6, 2B50
    data = load_prepared(report["prepared_dir"], cfg.data.max_len)
    test = data.splits["test"]
    assert test.identities[0] == test.identities[1] and len(test.captions) == 6


# --- the release archive and `dpcnn download emoji` ---


def _tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_emoji_release", ROOT / "tools" / "make_emoji_release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def release(converted, tmp_path_factory) -> Path:
    """The release archive of the converted test data, in a folder served over HTTP."""
    served = tmp_path_factory.mktemp("served")
    _tool().pack(converted.folder, served / f"{emoji_source.RELEASE}.tar.gz")
    return served / f"{emoji_source.RELEASE}.tar.gz"


def test_the_release_archive_is_deterministic(converted, release, tmp_path):
    again = tmp_path / "again.tar.gz"
    _tool().pack(converted.folder, again)
    assert again.read_bytes() == release.read_bytes()
    with tarfile.open(release) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[:3] == ["ATTRIBUTION.md", "LICENSE.txt", "emoji.json"]
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}
    assert release.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime 0


def _server(folder: Path) -> ThreadingHTTPServer:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))


def _item_at(monkeypatch, url: str, sha256: str, size: int) -> None:
    """REGISTRY["emoji"] with its archive at ``url`` (the real item's name, layout and --from route)."""
    real = dl.REGISTRY["emoji"]
    rf = dataclasses.replace(real.files[0], sources=(dl.Source(url, sha256=sha256, size=size),))
    monkeypatch.setattr(dl, "REGISTRY", MappingProxyType({**dl.REGISTRY, "emoji": dataclasses.replace(real, files=(rf,))}))


def test_download_emoji_fetches_verifies_and_extracts_the_release(converted, release, tmp_path, monkeypatch, capsys):
    data = release.read_bytes()
    with serving(_server(release.parent)) as srv:
        url = f"http://127.0.0.1:{srv.server_port}/{release.name}"
        _item_at(monkeypatch, url, hashlib.sha256(data).hexdigest(), len(data))
        root = tmp_path / "data"
        assert main(["download", "emoji", "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(root / "emoji/emoji.json")]
    records, _ = _read(root / "emoji")
    assert {r.image_id: r.split for r in records} == RECORDS
    assert (root / "emoji/images/color/1F534.png").read_bytes() == (converted.folder / "images/color/1F534.png").read_bytes()


def test_a_wrong_checksum_or_a_failed_download_points_at_from(release, tmp_path, monkeypatch, capsys):
    data = release.read_bytes()
    with serving(_server(release.parent)) as srv:
        url = f"http://127.0.0.1:{srv.server_port}/{release.name}"
        _item_at(monkeypatch, url, "0" * 64, len(data))
        with pytest.raises(ChecksumError) as info:
            dl.download("emoji", tmp_path / "a", progress=False, retries=0)
        assert "sha256 mismatch" in str(info.value) and "dpcnn download emoji --from openmoji-17.0.0.tgz" in str(info.value)
        assert not (tmp_path / "a/emoji/emoji.json").exists()
        _item_at(monkeypatch, url.replace(release.name, "missing.tar.gz"), "0" * 64, len(data))
        assert main(["download", "emoji", "--root", str(tmp_path / "b")]) == 2
    line = _one_line_error(capsys, "download")
    assert re.search(r"HTTP 404 .* --from openmoji-17\.0\.0\.tgz` \(the file `npm pack openmoji@17\.0\.0` makes\)", line)


# --- --from and the command line's errors ---


def test_download_from_a_folder(npm_tarball, converted, tmp_path, capsys):
    extracted = tmp_path / "extracted"
    with tarfile.open(npm_tarball) as tf:
        tf.extractall(extracted, filter="data")
    root = tmp_path / "data"
    assert main(["download", "emoji", "--from", str(extracted / "package"), "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(root / "emoji/emoji.json")]
    assert json.loads((root / "emoji/emoji.json").read_text()) == json.loads(converted.table.read_text())


@pytest.mark.parametrize("argv, expected", [
    (["download", "coco", "--from", "x.tgz"], "dpcnn download coco takes no --from: only emoji can be made"),
    (["download", "cuhk-pedes", "--from", "x.tgz"], "dpcnn download cuhk-pedes takes no --from"),
    (["download", "emoji", "--from", "{tmp}/nope.tgz"], "OpenMoji copy not found: {tmp}/nope.tgz"),
    (["download", "emoji", "--from", "{tmp}/bad.tgz"], "has no package/data/openmoji.json"),
    (["download", "emoji", "--from", "{tmp}", "--delete-archives"], "--delete-archives has no effect with --from"),
    (["prepare", "--config", "emoji", "--set", "data.root={tmp}"], "dpcnn download emoji --root {tmp}"),
])
def test_command_line_errors_are_one_line(tmp_path, capsys, argv, expected):
    _tar({"package/README.md": b"x"}, tmp_path / "bad.tgz")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert expected.replace("{tmp}", str(tmp_path)) in _one_line_error(capsys, argv[0])


def test_the_emoji_preset_evaluates_by_class():
    from dpcnn.data.datasets import get
    from dpcnn.evaluation import compute, plan, validation_protocol
    from dpcnn.presets import preset

    cfg = preset("emoji")
    assert (cfg.data.dataset, cfg.eval.protocols, cfg.data.flip) == ("emoji", ("class",), False)
    assert get("emoji").protocols == ("class",) and get("emoji").by_identity
    assert plan(["class"], 3, explicit=False) == (["class"], {})  # no "full" added beside it

    class Split:  # images 0, 1: two renderings of emoji 7, image 2: emoji 4; caption classes 7, 4, 7, 4
        identities = np.array([7, 7, 4])
        caption_image = np.array([0, 2, 1, 2])

        num_images = 3

    assert (validation_protocol(Split), validation_protocol(Split, reid=True)) == ("class", "reid")
    Split.identities = np.array([7, 5, 4])  # one image per identity: the image-level protocol
    assert validation_protocol(Split) == "full"
    Split.identities = np.array([7, 7, 4])
    sims = np.array([[0.9, 0.8, 0.1, 0.3], [0.2, 0.7, 0.6, 0.6], [0.5, 0.4, 0.9, 0.4]])  # test_metrics' CLASS_SIMS
    entries, _ = compute(["class"], np.eye(3), sims.T, Split)  # images @ texts.T = sims
    # the hand-worked ranks of tests/test_metrics.py: i2t [1, 3, 3], t2i [1, 3, 2, 2]
    assert entries["class"]["i2t"]["r1"] == pytest.approx(100 / 3) and entries["class"]["i2t"]["medr"] == 3.0
    assert entries["class"]["t2i"]["r1"] == 25.0 and entries["class"]["t2i"]["medr"] == 2.0
