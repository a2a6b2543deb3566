"""Dataset files on disk: the checks every reader shares.

- :func:`require`: a missing file or folder raises :class:`DataNotFoundError` naming the path, the
  ``data.*`` key that sets it and how to get it.
- :func:`load_json`: a file that is not JSON raises :class:`DataError` naming the file and where
  the parser stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dpcnn.errors import DataError, DataNotFoundError


def require(path: Path, what: str, setting: str, how: str) -> Path:
    """``path`` if it exists, else DataNotFoundError.

    what: what the file is ("Karpathy split file (dataset_coco.json)");
    setting: the ``data.*`` assignment that points at it ("data.annotations=PATH");
    how: a sentence saying how to get it ("Get it with `dpcnn download ...`").
    """
    if not path.exists():
        raise DataNotFoundError(f"{what} not found: {path}. {how}; or set {setting}.")
    return path


def download_hint(name: str, root: str | Path) -> str:
    """"Get it with `dpcnn download NAME --root ROOT`"."""
    return f"Get it with `dpcnn download {name} --root {root}`"


def load_json(path: str | Path, what: str) -> Any:
    """Parse a dataset JSON file.

    what: a few words saying what the file should be ("COCO-format captions file", ...).
    Raises DataNotFoundError if it is missing, DataError if it is not UTF-8 JSON.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataNotFoundError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        where = e.msg.removesuffix(" at")  # "Unterminated string starting at" + our "at line …"
        raise DataError(f"{path}: not a valid JSON {what} ({where} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a valid JSON {what} (not UTF-8 text: byte {e.start})") from None


def abs_path(path: str | Path) -> Path:
    """Absolute form of ``path`` without touching the file system (no symlink resolution)."""
    return Path(os.path.abspath(os.fspath(path)))

