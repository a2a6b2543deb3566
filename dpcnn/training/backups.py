"""Mid-stage backups on disk: two slot files written in turn, each one self-describing and verified.

    backup/stage{N}/backup-a.weights.h5   backup-b.weights.h5   state.json

A backup is the compiled stage's weights and optimiser state (Keras ``save_weights`` of the stage
model) plus a record {serial, epoch, step, metric_state} stored as the HDF5 attribute
``dpcnn_backup`` of the same file. The record is written after Keras has closed the file, so a
file that carries it was written to the end: the record is the commit point. ``state.json`` is
an index for people and tools (the newest record and the previous one), written after the commit.

Why two fixed slots, overwritten in place (DESIGN §3, docs/fidelity.md has no row: this moves no
number):

- a new backup always goes into the slot that does *not* hold the newest good backup, so a
  failure while writing (a full disk, a killed session, a Drive upload that never finished)
  leaves the previous good backup whole;
- on a Google Drive mount (Colab) a deleted file goes to Drive's trash and keeps counting against
  the storage quota for 30 days, while overwriting an existing file adds a revision that does not
  count (rclone's Drive documentation on revisions; gpt-2-simple issue 155 and colabtools issue
  2147 for the trash filling up). Writing a new file each time and deleting the old one — what
  dpcnn did before — left one dead backup (2.4 GB for ``coco``) in the trash per backup. With
  slots, a stage's backups take exactly two backup sizes on Drive, and files that are removed
  (the stage's end) are truncated to 0 bytes first (:func:`dpcnn.utils.discard_file`), so the
  trash holds empty files.

Resume (:func:`usable_backups`) checks each slot newest first — the file opens, its record is
there, every array reads to the end — and skips a damaged one with a warning, so a truncated or
empty newest backup falls back to the previous one, and none at all restarts the stage.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any

from dpcnn.utils import atomic_write_json, discard_file, read_json

log = logging.getLogger(__name__)

SLOTS = ("backup-a.weights.h5", "backup-b.weights.h5")
STATE = "state.json"
RECORD = "dpcnn_backup"
"""The HDF5 attribute (a JSON string) that makes a slot file a committed backup."""
LEGACY = "ckpt-*.weights.h5"
"""The one-file-per-backup layout of dpcnn ≤ 0.2 (still resumed from)."""


def next_slot(newest_file: str | None) -> str:
    """The slot to write next: the one that does not hold ``newest_file``."""
    return SLOTS[1] if newest_file == SLOTS[0] else SLOTS[0]


def write(folder: Path, save_weights, record: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Write one backup into ``record["file"]`` (a slot) and commit it; returns the record with its size.

    ``save_weights(path)``: Keras' ``Model.save_weights``. ``previous``: the newest committed record
    (kept whole, and listed in ``state.json`` as the fallback). A failure leaves the slot without
    a record (never used) and ``previous`` untouched, and is raised.
    """
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record["file"]
    record = {**record, "written": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    save_weights(str(path))  # h5py mode "w": the slot is truncated and rewritten in place
    with h5py.File(path, "a") as f:
        f.attrs[RECORD] = json.dumps(record)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    record["bytes"] = path.stat().st_size
    atomic_write_json(folder / STATE, {**record, "previous": previous})
    for old in folder.glob(LEGACY):  # a run started by dpcnn ≤ 0.2 now has a slot backup
        discard_file(old)
    return record


def read_record(path: Path) -> dict[str, Any] | None:
    """The committed record of one slot file (opening only its metadata), or None."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(RECORD)
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError, RuntimeError, KeyError):
        return None


def check(path: Path) -> str | None:
    """None if ``path`` is a whole backup: it opens and every array reads to the end; else why not."""
    import h5py

    if not path.is_file():
        return "the file is missing"
    if path.stat().st_size == 0:
        return "the file is empty"
    problems: list[str] = []

    def read(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and not problems:
            try:
                obj[()]
            except (OSError, ValueError, RuntimeError, KeyError) as err:
                problems.append(f"its array {name} does not read ({str(err).splitlines()[0][:80]})")

    try:
        with h5py.File(path, "r") as f:
            f.visititems(read)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        return f"it is not a readable HDF5 file ({str(err).splitlines()[0][:80]})"
    return problems[0] if problems else None


def newest_record(folder: str | Path) -> dict[str, Any] | None:
    """The record with the highest serial among the slots (metadata only: cheap, unverified)."""
    records = [r for r in (read_record(Path(folder) / s) for s in SLOTS) if r is not None]
    return max(records, key=lambda r: r["serial"]) if records else None


def _legacy(folder: Path) -> list[dict[str, Any]]:
    state = folder / STATE
    try:
        record = read_json(state) if state.is_file() else None
    except (OSError, ValueError):
        return []
    if record and str(record.get("file", "")).startswith("ckpt-"):
        return [{k: v for k, v in record.items() if k != "previous"}]
    return []


def usable_backups(folder: str | Path) -> list[dict[str, Any]]:
    """The committed backups of a stage that pass :func:`check`, newest first.

    Each damaged one is named in a warning (one line, with the reason); when backups existed but
    none is usable, one more warning says that the stage restarts from its first step.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = [r for r in (read_record(folder / s) for s in SLOTS) if r is not None]
    candidates += _legacy(folder)
    seen = [s for s in SLOTS if (folder / s).exists()]
    candidates.sort(key=lambda r: r["serial"], reverse=True)
    usable = []
    for record in candidates:
        problem = check(folder / record["file"])
        if problem is None:
            usable.append(record)
        else:
            log.warning("backup %s (epoch %d, step %d) cannot be used: %s", folder / record["file"],
                        record["epoch"] + 1, record["step"], problem)
    uncommitted = [s for s in seen if s not in {r["file"] for r in candidates}]
    for slot in uncommitted:
        problem = check(folder / slot) or f"it was never finished (no {RECORD} record)"
        log.warning("backup %s cannot be used: %s", folder / slot, problem)
    if not usable and (candidates or uncommitted):
        log.warning("no usable backup in %s: the stage restarts from its first step", folder)
    return usable


def discard(folder: str | Path) -> None:
    """Remove a stage's backups (its end): each file truncated to 0 bytes first (Drive's trash)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.is_file():
            discard_file(path)
    try:
        folder.rmdir()
    except OSError:
        log.warning("could not remove %s (not empty)", folder)
