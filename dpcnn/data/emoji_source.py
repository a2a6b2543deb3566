"""Make the emoji dataset (``data.dataset=emoji``) from a local copy of OpenMoji.

The source is the OpenMoji npm package (``npm pack openmoji@17.0.0`` makes ``openmoji-17.0.0.tgz``),
as the tarball or extracted (the ``package/`` folder or the folder holding it). It holds
``data/openmoji.json`` (one object per emoji: hexcode, annotation, tags, openmoji_tags, group,
subgroups, skintone …) and two SVG drawings of each emoji, ``color/svg/<HEXCODE>.svg`` and
``black/svg/<HEXCODE>.svg`` (the line art alone).

:func:`convert` writes ``{root}/emoji/``:

- ``images/color/<HEXCODE>.png`` and ``images/black/<HEXCODE>.png``: each SVG rendered at 72 × 72
  RGB on white (:mod:`dpcnn.data.svg`);
- ``emoji.json``: ``{"source", "image_size", "excluded_counts", "emoji": [{"hexcode", "emoji",
  "annotation", "tags", "openmoji_tags", "group", "subgroup", "images": [{"style", "file",
  "sha256"}]}]}`` (``file`` relative to the folder, ``sha256`` of the PNG file), written last;
- ``LICENSE.txt`` (the package's: CC BY-SA 4.0) and ``ATTRIBUTION.md``.

Left out, counted and logged: skin-tone variants (non-empty ``skintone``; their black drawings are
their base emoji's, so they would be one picture with several names), entries without a usable
hexcode or repeating one, missing and unreadable SVGs, and emoji left without any rendering.
A copy without ``data/openmoji.json`` is a DataError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpcnn.data.manifest import Exclusions
from dpcnn.errors import DataError, DataNotFoundError

log = logging.getLogger(__name__)

OPENMOJI_VERSION = "17.0.0"
RELEASE = f"emoji-openmoji-{OPENMOJI_VERSION}"
"""The release tag and archive stem of the converted data (``tools/make_emoji_release.py``)."""
FOLDER = "emoji"
TABLE = "emoji.json"
IMAGE_SIZE = 72
STYLES = ("color", "black")
NPM_PACK = f"npm pack openmoji@{OPENMOJI_VERSION}"
HOW_TO_GET = (f"make the OpenMoji copy with `{NPM_PACK}` (openmoji-{OPENMOJI_VERSION}.tgz) "
              "or give the extracted package/ folder")

_HEXCODE = re.compile(r"[0-9A-F]{2,6}(-[0-9A-F]{2,6})*")
"""A hexcode as OpenMoji writes it (``1F600``, ``1F3F3-FE0F-200D-1F308``): safe as a file name."""
_SVG = re.compile(r"(color|black)/svg/[^/]+\.svg")
_KEPT_FILES = ("data/openmoji.json", "package.json", "LICENSE.txt")

ATTRIBUTION = """\
# Emoji images: attribution and licence

All emojis designed by OpenMoji (https://openmoji.org/) – the open-source emoji and icon project.
License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).

Source: the OpenMoji npm package {version} (`npm pack openmoji@{version}`), files
data/openmoji.json, color/svg/*.svg and black/svg/*.svg.

Changes made by dpcnn: every SVG rendered to a {size} x {size} RGB PNG on a white background
(images/color/, images/black/); the emoji's annotation, tags, OpenMoji tags, group and subgroup
copied into emoji.json; skin-tone variants left out. The PNGs are adaptations of the OpenMoji
graphics and are shared under the same licence, CC BY-SA 4.0 (LICENSE.txt, copied from the
package). OpenMoji's code is LGPL-3.0; none of it is included here.
"""


class _Package:
    """The files of an OpenMoji package that a conversion reads, by path inside ``package/``."""

    def __init__(self, where: Path, files: Mapping[str, bytes] | None = None, folder: Path | None = None):
        self.where, self._files, self._folder = where, files, folder

    def read(self, relative: str) -> bytes | None:
        """The bytes of ``package/<relative>``; None when the copy does not have it."""
        if self._files is not None:
            return self._files.get(relative)
        path = self._folder / relative
        return path.read_bytes() if path.is_file() else None


def _from_tarball(path: Path) -> _Package:
    """Read the tarball once, front to back (a gzip stream does not seek back cheaply)."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                top, _, relative = member.name.partition("/")
                if top != "package" or not member.isfile():
                    continue
                if relative in _KEPT_FILES or _SVG.fullmatch(relative):
                    files[relative] = tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: not a readable npm tarball ({e}); {HOW_TO_GET}") from None
    return _Package(path, files=files)


def open_package(source: str | Path) -> _Package:
    """An OpenMoji copy: the npm tarball, the ``package/`` folder or the folder holding it."""
    source = Path(source)
    if source.is_dir():
        for folder in (source, source / "package"):
            if (folder / "data" / "openmoji.json").is_file():
                return _Package(source, folder=folder)
        raise DataError(f"{source}: no data/openmoji.json or package/data/openmoji.json in this folder; {HOW_TO_GET}")
    if not source.exists():
        raise DataNotFoundError(f"OpenMoji copy not found: {source}; {HOW_TO_GET}")
    if not tarfile.is_tarfile(source):
        raise DataError(f"{source} is neither an npm tarball (.tgz) nor a folder; {HOW_TO_GET}")
    package = _from_tarball(source)
    if package.read("data/openmoji.json") is None:
        raise DataError(f"{source}: the tarball has no package/data/openmoji.json, so it is not the OpenMoji "
                        f"npm package; {HOW_TO_GET}")
    return package


def _json(package: _Package, relative: str) -> Any:
    data = package.read(relative)
    try:
        return json.loads(data) if data is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{package.where}: package/{relative} is not valid JSON ({e})") from None


def _text(entry: Mapping[str, Any], key: str) -> str:
    """A string field of an openmoji.json entry ("" when absent or not a string)."""
    value = entry.get(key)
    return value.strip() if isinstance(value, str) else ""


def _usable(table: list[Any], exclusions: Exclusions, skin_tones: bool) -> list[Mapping[str, Any]]:
    """The entries to render; the others are counted in ``exclusions``."""
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(table):
        where = {"source": "openmoji.json", "entry": f"[{i}]"}
        hexcode = entry.get("hexcode") if isinstance(entry, Mapping) else None
        if not isinstance(hexcode, str) or not _HEXCODE.fullmatch(hexcode):
            exclusions.image("entry has no usable hexcode", **where, hexcode=hexcode)
        elif hexcode in seen:
            exclusions.image("hexcode appears twice", **where, hexcode=hexcode)
        elif entry.get("skintone") not in ("", None) and not skin_tones:
            exclusions.image("skin-tone variant", **where, hexcode=hexcode)
        else:
            seen.add(hexcode)
            out.append(entry)
    return out


def _render(package: _Package, hexcode: str, folder: Path, exclusions: Exclusions) -> list[dict[str, str]]:
    """Write each style's PNG of one emoji; the image entries of the table."""
    from dpcnn.data.svg import render_png

    images = []
    for style in STYLES:
        relative = f"{style}/svg/{hexcode}.svg"
        svg = package.read(relative)
        if svg is None:
            exclusions.image(f"missing SVG ({relative})", hexcode=hexcode, style=style)
            continue
        try:
            png = render_png(svg, IMAGE_SIZE)
        except ValueError as e:
            exclusions.image(f"unreadable SVG: {relative}: {e}", hexcode=hexcode, style=style)
            continue
        file = f"images/{style}/{hexcode}.png"
        (folder / file).write_bytes(png)
        images.append({"style": style, "file": file, "sha256": hashlib.sha256(png).hexdigest()})
    return images


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` wrote: the folder, the emoji and images in its table, what it left out."""

    folder: Path
    emoji: int
    images: int
    exclusions: Exclusions

    @property
    def table(self) -> Path:
        return self.folder / TABLE


def convert(source: str | Path, root: str | Path, *, skin_tones: bool = False, progress: bool = True) -> Conversion:
    """Render the OpenMoji copy ``source`` into ``{root}/emoji/`` (module docstring).

    skin_tones: keep the skin-tone variants (left out by default). Raises DataNotFoundError for a
    missing source, DataError for one that is not an OpenMoji package.
    """
    from tqdm.auto import tqdm

    from dpcnn.utils import atomic_write_json, atomic_write_text

    package = open_package(source)
    table = _json(package, "data/openmoji.json")
    if not isinstance(table, list):
        raise DataError(f"{package.where}: package/data/openmoji.json is a JSON list of emoji, "
                        f"got a JSON {type(table).__name__}")
    meta = _json(package, "package.json")
    version = meta.get("version", "unknown") if isinstance(meta, Mapping) else "unknown"
    folder = Path(root) / FOLDER
    (folder / TABLE).unlink(missing_ok=True)  # written last: its presence means a finished conversion
    for style in STYLES:
        (folder / "images" / style).mkdir(parents=True, exist_ok=True)
    exclusions = Exclusions()
    rows = []
    for entry in tqdm(_usable(table, exclusions, skin_tones), desc="render OpenMoji SVGs", unit="emoji",
                      disable=not progress):
        hexcode = entry["hexcode"]
        images = _render(package, hexcode, folder, exclusions)
        if not images:
            exclusions.image("emoji without any rendering", hexcode=hexcode)
            continue
        rows.append({"hexcode": hexcode, "emoji": _text(entry, "emoji"), "annotation": _text(entry, "annotation"),
                     "tags": _text(entry, "tags"), "openmoji_tags": _text(entry, "openmoji_tags"),
                     "group": _text(entry, "group"), "subgroup": _text(entry, "subgroups"), "images": images})
    licence = package.read("LICENSE.txt")
    if licence is None:
        log.warning("%s has no LICENSE.txt; the OpenMoji graphics are CC BY-SA 4.0 (see ATTRIBUTION.md)", package.where)
    else:
        (folder / "LICENSE.txt").write_bytes(licence)
    atomic_write_text(folder / "ATTRIBUTION.md", ATTRIBUTION.format(version=version, size=IMAGE_SIZE))
    atomic_write_json(folder / TABLE, {
        "source": {"name": "OpenMoji", "version": version, "licence": "CC BY-SA 4.0", "url": "https://openmoji.org/"},
        "image_size": IMAGE_SIZE, "excluded_counts": dict(sorted(exclusions.counts.items())), "emoji": rows})
    result = Conversion(folder, len(rows), sum(len(r["images"]) for r in rows), exclusions)
    log.info("OpenMoji %s: %d emoji, %d images written to %s", version, result.emoji, result.images, folder)
    if exclusions.total:
        log.info("left out: %s", ", ".join(f"{n} × {why}" for why, n in sorted(exclusions.counts.items())))
    if exclusions.counts["skin-tone variant"]:
        log.info("skin-tone variants are left out: their black drawing is their base emoji's "
                 "(skin_tones=True keeps them)")
    return result
