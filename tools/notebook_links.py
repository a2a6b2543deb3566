"""Write setup.cfg's repository URL and version into the notebooks: the Colab badge and the install cell.

For every ``notebooks/*.ipynb``:

- the first cell becomes the "Open in Colab" badge
  (``https://colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/<name>.ipynb``),
  inserted if missing; while the repository is not public (:data:`PUBLISHED`) it says so and how to
  open the notebook meanwhile (File → Upload notebook);
- the first code cell's lines before ``import dpcnn.notebook`` become the Colab install
  (:func:`install_lines`): ``SOURCE = …`` — the one line a student sets — then a pip install that
  runs only on Colab when dpcnn is missing, and whose failure is one readable line saying what to do
  (an exception whose ``_render_traceback_`` Jupyter and Colab show instead of a traceback). The
  default ``SOURCE`` is the wheel ``/content/dpcnn-<version>-py3-none-any.whl`` (uploaded in Colab's
  Files pane) while the repository is not public, ``git+<url>`` once it is;
- the fallback URL in ``dpcnn/notebook.py`` follows too.

Change the url or version in setup.cfg (or :data:`PUBLISHED` here), run this, and all of them agree:

    python tools/notebook_links.py           # rewrite what differs
    python tools/notebook_links.py --check   # exit 1 and list what differs (CI, tests)
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SETUP_CFG = ROOT / "setup.cfg"
HELPER = ROOT / "dpcnn" / "notebook.py"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
FALLBACK = re.compile(r'^(_FALLBACK_REPOSITORY = )"[^"]*"', re.MULTILINE)
IMPORT_LINE = "import dpcnn.notebook"
"""The install lines are everything above this line of the first code cell; what follows is the notebook's own."""

PUBLISHED = False
"""Whether setup.cfg's url is a public repository today (https://github.com/dpcnn/dpcnn is not yet).
False: the notebooks install a wheel and show no command that needs the repository. Set it to True
when the repository is published, run this tool, and update README "Install"."""


def _metadata(setup_cfg: Path, key: str) -> str:
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    value = parser.get("metadata", key, fallback="").strip()
    if not value:
        raise SystemExit(f"{setup_cfg}: [metadata] has no {key}")
    return value


def package_version(setup_cfg: Path = SETUP_CFG) -> str:
    """``[metadata] version`` of setup.cfg (the package's only version source)."""
    return _metadata(setup_cfg, "version")


def wheel_name(version: str) -> str:
    """The file name ``python -m build`` gives dpcnn's wheel (pure Python: py3-none-any)."""
    return f"dpcnn-{version}-py3-none-any.whl"


def repository_url(setup_cfg: Path = SETUP_CFG) -> str:
    """``[metadata] url`` of setup.cfg, without a trailing slash or ``.git``."""
    url = _metadata(setup_cfg, "url").rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def colab_url(repository: str, name: str, branch: str = BRANCH) -> str:
    """Colab's address of ``notebooks/<name>.ipynb`` in a GitHub repository."""
    match = re.fullmatch(r"https?://github\.com/([^/]+)/([^/]+)", repository)
    if not match:
        raise SystemExit(f"Colab opens notebooks from GitHub: the url must be https://github.com/OWNER/REPO, got {repository}")
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/notebooks/{name}.ipynb"


def badge_source(repository: str, name: str, published: bool = PUBLISHED) -> str:
    badge = f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(repository, name)})"
    if published:
        return badge
    return (f"{badge} (this link works once the repository is public; until then open the notebook in Colab "
            "with File → Upload notebook, and upload the dpcnn wheel too: README \"Install\")")


def install_lines(repository: str, version: str, published: bool = PUBLISHED) -> list[str]:
    """The Colab install at the top of each notebook's first code cell (module docstring)."""
    if published:
        source = f'SOURCE = "git+{repository}"  # on Colab: this repository, or the path of a dpcnn wheel (README "Install")'
        advice = "Set SOURCE to the repository's git+ URL or to an uploaded dpcnn wheel (README 'Install')"
    else:
        source = (f'SOURCE = "/content/{wheel_name(version)}"  # on Colab: the dpcnn wheel you uploaded (Files pane), '
                  'or its path on Drive (README "Install")')
        advice = "Upload the dpcnn wheel in the Files pane and set SOURCE to its path (README 'Install')"
    return [
        source,
        "import importlib.util, subprocess, sys",
        "class NotInstalled(Exception): _render_traceback_ = lambda self: "
        f'[f"dpcnn not installed from {{SOURCE}}: {{self}}. {advice}"]  # one line, not a traceback',
        'if "google.colab" in sys.modules and importlib.util.find_spec("dpcnn") is None:  # Colab: install dpcnn once per runtime',
        '    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-color", SOURCE], '
        "capture_output=True, text=True)",
        '    if pip.returncode: raise NotInstalled((pip.stderr.strip() or "pip failed").splitlines()[-1])',
    ]


def is_badge(cell) -> bool:
    return cell.cell_type == "markdown" and BADGE_IMAGE in cell.source


def first_code_cell(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def update_notebook(nb, repository: str, name: str, version: str | None = None, published: bool = PUBLISHED) -> bool:
    """Set the badge cell and the install lines of the setup cell of ``nb`` in place; True if it changed."""
    changed = False
    badge = badge_source(repository, name, published)
    if nb.cells and is_badge(nb.cells[0]):
        if nb.cells[0].source != badge:
            nb.cells[0].source = badge
            changed = True
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(badge))
        changed = True
    setup_cell = first_code_cell(nb)
    lines = setup_cell.source.splitlines() if setup_cell is not None else []
    at = next((i for i, line in enumerate(lines) if line.startswith(IMPORT_LINE)), None)
    if at is None:
        raise SystemExit(f"{name}.ipynb: the first code cell has no `{IMPORT_LINE}` line (the install goes above it)")
    source = "\n".join(install_lines(repository, version or package_version(), published) + lines[at:])
    if source != setup_cell.source:
        setup_cell.source = source
        changed = True
    return changed


def update_helper(text: str, repository: str) -> str:
    """``dpcnn/notebook.py`` with its fallback URL set to ``repository``."""
    if not FALLBACK.search(text):
        raise SystemExit(f"{HELPER}: no `_FALLBACK_REPOSITORY = \"…\"` line to update")
    return FALLBACK.sub(lambda m: f'{m.group(1)}"{repository}"', text)


def stale(repository: str, notebooks: Path = NOTEBOOKS, helper: Path = HELPER) -> list[Path]:
    """The files that do not agree with ``repository`` (and setup.cfg's version)."""
    out = []
    for path in sorted(notebooks.glob("*.ipynb")):
        if update_notebook(nbformat.read(path, as_version=4), repository, path.stem):
            out.append(path)
    if update_helper(helper.read_text(encoding="utf-8"), repository) != helper.read_text(encoding="utf-8"):
        out.append(helper)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the files that differ (exit 1 if any)")
    args = parser.parse_args(argv)
    repository = repository_url()
    if args.check:
        out_of_date = stale(repository)
        for path in out_of_date:
            print(f"{path.relative_to(ROOT)} does not agree with setup.cfg's url {repository} and version "
                  f"{package_version()}: run python tools/notebook_links.py")
        return 1 if out_of_date else 0
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if update_notebook(nb, repository, path.stem):
            nbformat.write(nb, path)
            print(f"updated {path.relative_to(ROOT)}")
    text = HELPER.read_text(encoding="utf-8")
    if update_helper(text, repository) != text:
        HELPER.write_text(update_helper(text, repository), encoding="utf-8")
        print(f"updated {HELPER.relative_to(ROOT)}")
    print(f"notebooks link to {repository} ({'public' if PUBLISHED else 'not public yet'}) and install "
          f"{f'git+{repository}' if PUBLISHED else wheel_name(package_version())} on Colab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
