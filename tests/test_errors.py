"""Every error whose message tells the user what to do is a UserError (one line, exit 2, no traceback).

The scan reads the package's source (ast): a ``raise`` of a built-in exception class whose message
gives the user advice — a command to run, a config key to set, a flag — is a defect, since the CLI
shows built-in exceptions as tracebacks. Built-in exceptions stay right for programming errors of
the Python API (an array of the wrong shape passed to ``retrieval_metrics``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import dpcnn
from dpcnn import errors

PACKAGE = Path(dpcnn.__file__).resolve().parent
BUILTIN = {"ValueError", "RuntimeError", "TypeError", "KeyError", "IndexError", "FileNotFoundError", "OSError",
           "Exception", "AssertionError", "NotImplementedError", "PermissionError"}
ADVICE = re.compile(r"`dpcnn [a-z-]+|\brun `|\b(lower|raise|set|pass|use|delete|check|train|choose|give|rebuild)\b "
                    r"(it|the|a|an|data\.|train\.|model\.|eval\.|--)|\b(data|train|model|eval)\.[a-z_]+=|--[a-z]+",
                    re.IGNORECASE)


def message_text(node: ast.expr) -> str:
    """The literal text of a message argument (the constant parts of an f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp):
        return message_text(node.left) + message_text(node.right)
    return ""


def advice_in_builtin_raises(source: str, name: str) -> list[str]:
    """``name:line: message`` for every built-in exception raised with advice for the user."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
            if node.exc.func.id in BUILTIN and node.exc.args:
                text = message_text(node.exc.args[0])
                if ADVICE.search(text):
                    found.append(f"{name}:{node.lineno}: {node.exc.func.id}({text[:80]!r})")
    return found


@pytest.mark.parametrize("source, flagged", [
    ('raise ValueError(f"{n} images cannot fill a batch: lower train.batch_size")', True),
    ('raise RuntimeError("the cache is stale: run `dpcnn prepare` again")', True),
    ('raise ValueError("set data.images=FOLDER")', True),
    ('raise ValueError(f"sims must be a 2-D array, got shape {s}")', False),
    ('raise ConfigError("lower train.batch_size")', False),
])
def test_the_scan_sees_advice_in_builtin_raises(source, flagged):
    assert bool(advice_in_builtin_raises(source, "x.py")) is flagged


def test_every_error_that_advises_the_user_is_a_user_error():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += advice_in_builtin_raises(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert not found, "built-in exceptions with advice for the user (use a dpcnn.errors class):\n" + "\n".join(found)


def test_download_errors_live_in_errors_and_are_user_errors():
    from dpcnn.data import download

    for name in ("ChecksumError", "UnsafeArchiveError", "ManualDownloadRequired", "UnknownItemError"):
        cls = getattr(errors, name)
        assert issubclass(cls, errors.UserError) and getattr(download, name) is cls, name
    own = [n.name for n in ast.walk(ast.parse((PACKAGE / "data" / "download.py").read_text()))
           if isinstance(n, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id.endswith(("Error", "Required"))
                                                  for b in n.bases)]
    assert own == []  # no exception class of its own
