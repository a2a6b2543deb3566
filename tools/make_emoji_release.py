"""Build the release archive that ``dpcnn download emoji`` fetches, from the OpenMoji npm tarball.

    npm pack openmoji@17.0.0                                   # → openmoji-17.0.0.tgz
    python tools/make_emoji_release.py openmoji-17.0.0.tgz --out dist

converts the tarball (:func:`dpcnn.data.emoji_source.convert`) in a temporary folder and packs the
``emoji/`` folder it writes into ``<out>/emoji-openmoji-17.0.0.tar.gz``: members relative to that
folder (``emoji.json``, ``LICENSE.txt``, ``ATTRIBUTION.md``, ``images/…``), sorted, each with mtime
0, owner 0/0 and mode 0644, in a gzip stream with mtime 0 and no file name. The same tarball and
the same packages give the same bytes, so the sha256 it prints is the archive's identity: upload
the file as the asset of the release ``emoji-openmoji-17.0.0`` of setup.cfg's repository and put
the printed sha256 and size into ``REGISTRY["emoji"]`` of ``dpcnn/data/download.py``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpcnn.data.emoji_source import RELEASE, convert  # noqa: E402


def pack(folder: Path, archive: Path) -> None:
    """Every file under ``folder`` into a deterministic ``.tar.gz`` at ``archive`` (module docstring)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())


def build(tarball: Path, out: Path, progress: bool = True) -> Path:
    """Convert ``tarball`` and pack the result as ``out/<RELEASE>.tar.gz``; returns its path."""
    archive = out / f"{RELEASE}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        result = convert(tarball, tmp, progress=progress)
        pack(result.folder, archive)
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tarball", type=Path, help="openmoji-17.0.0.tgz (npm pack openmoji@17.0.0)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the archive (default: here)")
    args = parser.parse_args(argv)
    archive = build(args.tarball, args.out)
    data = archive.read_bytes()
    print(f"{archive}\n  sha256 {hashlib.sha256(data).hexdigest()}\n  size   {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
