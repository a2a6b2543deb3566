"""Small helpers shared by several modules: atomic file writes, seeding, logging set-up, CSV cells."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The file gets the mode a plain ``open()`` would give it (0666 minus the user's umask), not
    the 0600 of a temporary file: run folders are shared on group servers and Drive folders.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save(path: str | Path, save: Callable[[str], Any]) -> None:
    """``save(tmp)`` (e.g. a Keras ``save`` / ``save_weights``) to a temporary file beside ``path``
    with the same suffix (Keras reads the format from it), then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def discard_file(path: str | Path) -> None:
    """Delete ``path``, truncating it to 0 bytes first.

    On a Google Drive mount (Colab) a deleted file goes to Drive's trash and counts against the
    storage quota for 30 days; truncated first, the trashed copy is empty (the pattern of
    so-vits-svc-fork pull request 581). Elsewhere it is a plain delete. A missing file is no error.
    """
    path = Path(path)
    if path.is_symlink():  # a link: remove the link, never empty what it points to
        path.unlink()
        return
    try:
        with open(path, "r+b") as f:
            f.truncate(0)
    except (FileNotFoundError, IsADirectoryError):
        pass
    path.unlink(missing_ok=True)


def sha256_files(*paths: str | Path) -> str:
    """Hex sha256 of the files' contents, one after the other, streamed."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is now (pytest and notebooks replace it)."""

    @property
    def stream(self):
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the ``dpcnn`` logger for command-line use (the library itself never configures logging)."""
    logger = logging.getLogger("dpcnn")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


SPREADSHEET_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet evaluate a cell (OWASP, "CSV Injection")."""
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text instead of running it as a formula.

    OWASP, "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection): a cell that
    starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
    LibreOffice Calc and Google Sheets (``=HYPERLINK(…)``, ``=WEBSERVICE(…)``, DDE); prefixed with a
    single quote it is text — ``=1+1 red square`` becomes ``'=1+1 red square``, the quote visible to
    whoever reads the cell. Quoting of commas, quotes and line breaks is left to the ``csv`` module.

    One departure from OWASP's rule, which would prefix every such cell: a string that is a plain
    decimal number (``-0.25``, ``+3``, ``-1e-05``) is a number to a spreadsheet, runs nothing, and
    stays as it is, so a score column stays numeric. Values that are not strings (int, float, None)
    are returned unchanged: the ``csv`` module writes them as numbers or an empty cell.
    """
    if isinstance(value, str) and value.startswith(SPREADSHEET_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value
