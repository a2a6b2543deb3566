"""An install that works as written: one version, complete metadata, no command that cannot work today.

``make wheel-check`` (in CI) builds the wheel and installs it into a fresh environment; here, fast:
``dpcnn --version`` and ``env.json`` report the installed metadata's version (setup.cfg's, the only
source), the metadata carries the licence and classifiers, the wheel checker finds what is missing,
and no page, notebook or docstring shows an install command for a repository that is not public
(``PUBLISHED`` in tools/notebook_links.py) or for a package index dpcnn is not on. The notebooks'
install cell itself is checked in tests/test_notebooks.py (no URL of the unpublished repository in
the code that runs; a failed install is one line).
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from helpers import ROOT

import dpcnn
from dpcnn.cli import main


def setup_cfg(key: str) -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser.get("metadata", key).strip()


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STALE = "the installed metadata is stale: pip install -e . (make setup does it when setup.cfg changes)"


def test_one_version_source():
    assert metadata.version("dpcnn") == setup_cfg("version"), STALE
    assert dpcnn.__version__ == metadata.version("dpcnn")
    init = (ROOT / "dpcnn" / "__init__.py").read_text()
    assert not re.search(r"^__version__ = [\"']", init, re.MULTILINE), "a second version literal in dpcnn/__init__.py"


def test_version_flag_prints_the_metadata_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"dpcnn {metadata.version('dpcnn')}\n"


def test_the_console_script_prints_it_too(tmp_path):
    script = Path(sys.executable).with_name("dpcnn")  # the entry point pip wrote beside this interpreter
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "dpcnn"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"dpcnn {setup_cfg('version')}\n" and not done.stderr


def test_env_json_records_the_same_version():
    from dpcnn.run import environment

    assert environment()["dpcnn"] == metadata.version("dpcnn")


def test_installed_metadata_has_licence_and_classifiers():
    meta = metadata.metadata("dpcnn")
    assert meta["License-Expression"] == "MIT", STALE
    classifiers = meta.get_all("Classifier")
    for classifier in load_tool("wheel_check").CLASSIFIERS:
        assert classifier in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639: the licence is License-Expression"
    assert meta["Description-Content-Type"] == "text/markdown" and meta["Requires-Python"] == ">=3.11"
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "the dpcnn authors" in licence


def fake_wheel(path: Path, metadata_text: str, version: str = "1.2.3", licence: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"dpcnn-{version}.dist-info/METADATA", metadata_text)
        z.writestr(f"dpcnn-{version}.dist-info/entry_points.txt", "[console_scripts]\ndpcnn = dpcnn.cli:main\n")
        if licence:
            z.writestr(f"dpcnn-{version}.dist-info/licenses/LICENSE", "MIT License\n")
    return path


def complete_metadata(version: str = "1.2.3") -> str:
    tool = load_tool("wheel_check")
    lines = ["Metadata-Version: 2.4", "Name: dpcnn", f"Version: {version}", "License-Expression: MIT",
             "License-File: LICENSE", "Description-Content-Type: text/markdown", "Requires-Python: >=3.11",
             "Requires-Dist: tensorflow>=2.20", *(f"Classifier: {c}" for c in tool.CLASSIFIERS)]
    return "\n".join(lines) + "\n\n# dpcnn — Dual-Path CNN\n"


def test_wheel_check_accepts_complete_metadata_and_names_what_is_missing(tmp_path):
    tool = load_tool("wheel_check")
    assert tool.wheel_problems(fake_wheel(tmp_path / "ok.whl", complete_metadata()), "1.2.3") == []

    text = complete_metadata().replace("License-Expression: MIT\n", "").replace(
        "Classifier: Operating System :: OS Independent\n", "")
    problems = tool.wheel_problems(fake_wheel(tmp_path / "bad.whl", text, licence=False), "1.2.3")
    assert len(problems) == 3, problems
    assert any("License-Expression" in p for p in problems) and any("licenses/LICENSE" in p for p in problems)
    assert any("OS Independent" in p for p in problems)
    # a wheel of another version than setup.cfg's: one line that says so
    [problem] = tool.wheel_problems(fake_wheel(tmp_path / "v.whl", complete_metadata("1.0"), "1.0"), "1.2.3")
    assert "differ" in problem


# ------------------------------------------------------------------------------------------------
# No page shows a command that cannot work today
# ------------------------------------------------------------------------------------------------

def pages() -> list[Path]:
    """What a user reads: the README, docs/, the notebooks, and the library (its docstrings and messages)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "notebooks").glob("*.ipynb")),
            *sorted((ROOT / "dpcnn").rglob("*.py"))]


def install_commands(text: str, url: str) -> list[str]:
    """``pip install`` of the repository (git+URL, or the URL itself) or of ``dpcnn`` from an index."""
    repo = re.escape(url.removeprefix("https://").rstrip("/"))
    pattern = (rf"pip\S*\s+install\s+(?:-\S+\s+)*(?:[\"']?git\+https?://{repo}|[\"']?https?://{repo}"
               r"|[\"']?dpcnn(?![\w.*/-])(?:\[\w+\])?)")
    return re.findall(pattern, text)


def test_the_pattern_finds_the_commands_that_cannot_work():
    url = "https://github.com/dpcnn/dpcnn"
    for bad in ("pip install git+https://github.com/dpcnn/dpcnn", '!pip install -q "git+https://github.com/dpcnn/dpcnn"',
                "`pip install dpcnn`'s dependencies", "pip3 install dpcnn[dev]", "python -m pip install -U dpcnn"):
        assert install_commands(bad, url), bad
    for fine in ("pip install dist/dpcnn-*-py3-none-any.whl", "pip install -e '.[dev]'", "pip install dpcnn-0.2.0-py3-none-any.whl",
                 "pip install git+https://github.com/someone/fork", "~/dpcnn-env/bin/pip install dist/dpcnn-0.2.0.tar.gz"):
        assert not install_commands(fine, url), fine


def test_no_page_shows_an_install_that_cannot_work_today():
    tool = load_tool("notebook_links")
    url = setup_cfg("url")
    found = {}
    for path in pages():
        commands = install_commands(path.read_text(encoding="utf-8"), url)
        if tool.PUBLISHED:  # then git+URL works; `pip install dpcnn` still needs a package index entry
            commands = [c for c in commands if "git+" not in c and "://" not in c]
        if commands:
            found[str(path.relative_to(ROOT))] = commands
    assert not found, f"install commands that cannot work today (README 'Install' has the ways that do): {found}"

