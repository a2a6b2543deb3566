"""Write the repository URL of setup.cfg (``[metadata] url``) into the notebooks.

For every ``notebooks/*.ipynb``: the first cell becomes the "Open in Colab" badge
(``https://colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/<name>.ipynb``),
inserted if missing; the ``git+…`` URL in the first code cell (the setup cell's Colab install)
becomes ``git+<url>``. The fallback URL in ``dpcnn/notebook.py`` follows too. Change the url in
setup.cfg, run this, and all of them agree:

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
PIP_URL = re.compile(r"git\+[^\s\"']+")
FALLBACK = re.compile(r'^(_FALLBACK_REPOSITORY = )"[^"]*"', re.MULTILINE)


def repository_url(setup_cfg: Path = SETUP_CFG) -> str:
    """``[metadata] url`` of setup.cfg, without a trailing slash or ``.git``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    url = parser.get("metadata", "url", fallback="").strip()
    if not url:
        raise SystemExit(f"{setup_cfg}: [metadata] has no url")
    url = url.rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def colab_url(repository: str, name: str, branch: str = BRANCH) -> str:
    """Colab's address of ``notebooks/<name>.ipynb`` in a GitHub repository."""
    match = re.fullmatch(r"https?://github\.com/([^/]+)/([^/]+)", repository)
    if not match:
        raise SystemExit(f"Colab opens notebooks from GitHub: the url must be https://github.com/OWNER/REPO, got {repository}")
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/notebooks/{name}.ipynb"


def badge_source(repository: str, name: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(repository, name)})"


def is_badge(cell) -> bool:
    return cell.cell_type == "markdown" and BADGE_IMAGE in cell.source


def first_code_cell(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def update_notebook(nb, repository: str, name: str) -> bool:
    """Set the badge cell and the setup cell's install URL of ``nb`` in place; True if it changed."""
    changed = False
    badge = badge_source(repository, name)
    if nb.cells and is_badge(nb.cells[0]):
        if nb.cells[0].source != badge:
            nb.cells[0].source = badge
            changed = True
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(badge))
        changed = True
    setup_cell = first_code_cell(nb)
    if setup_cell is None or not PIP_URL.search(setup_cell.source):
        raise SystemExit(f"{name}.ipynb: the first code cell has no `git+…` install URL to update")
    source = PIP_URL.sub(f"git+{repository}", setup_cell.source)
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
    """The files that do not agree with ``repository``."""
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
            print(f"{path.relative_to(ROOT)} does not agree with setup.cfg's url {repository}: "
                  "run python tools/notebook_links.py")
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
    print(f"notebooks link to {repository}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
