"""``make wheel-check``: the built wheel installs into a fresh environment and runs.

Reads ``dist/`` (``make wheel``: ``python -m build`` writes one sdist and one wheel there), checks
that both carry setup.cfg's version and that the wheel's metadata is complete (licence expression
and file, classifiers, the README as description, the ``dpcnn`` console script), then creates a new
virtual environment in a temporary folder, ``pip install``\\ s the wheel into it — pip fetches
TensorFlow and the other dependencies as it would for a user, reusing pip's cache and any
``PIP_FIND_LINKS`` of the environment — and, from a folder outside the checkout (so nothing is
imported from the source tree), runs ``dpcnn --version`` and one import of the package. Prints the
time of each step; exit 1 with one line per problem.

    python tools/wheel_check.py [--dist dist] [--python python3] [--keep]
"""

from __future__ import annotations

import argparse
import configparser
import email
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLASSIFIERS = (
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Operating System :: OS Independent",
    "Intended Audience :: Science/Research",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
)
"""Classifiers the wheel must declare (the licence is the License-Expression field: PEP 639)."""

IMPORT_CHECK = """
import sys, dpcnn
from dpcnn.metrics import retrieval_metrics
m = retrieval_metrics([[0.9, 0.1], [0.2, 0.8]], [0, 1])  # two images, two captions, each its own best match
assert m["i2t"]["r1"] == 100.0 and m["t2i"]["r1"] == 100.0, m
assert dpcnn.__file__.startswith(sys.prefix), f"dpcnn imported from {dpcnn.__file__}, not the fresh environment"
import keras, tensorflow as tf  # the dependencies pip chose load together
print(f"import dpcnn {dpcnn.__version__} (retrieval_metrics works) with TensorFlow {tf.__version__}, Keras {keras.__version__}")
"""


def setup_cfg_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser.get("metadata", "version").strip()


def one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"wheel-check: expected one {pattern} in {dist}/, found {[p.name for p in found]}: run make wheel")
    return found[0]


def wheel_problems(wheel: Path, version: str) -> list[str]:
    """What is missing or wrong in the wheel's metadata, one line each."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = f"dpcnn-{version}.dist-info"
        if f"{info}/METADATA" not in names:
            return [f"{wheel.name}: no {info}/METADATA (the version in the file name and setup.cfg differ?)"]
        meta = email.message_from_bytes(z.read(f"{info}/METADATA"))
        entry_points = z.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in names else ""
    problems = []
    expected = {"Name": "dpcnn", "Version": version, "License-Expression": "MIT", "License-File": "LICENSE",
                "Description-Content-Type": "text/markdown", "Requires-Python": ">=3.11"}
    for field, value in expected.items():
        if meta.get(field) != value:
            problems.append(f"METADATA {field}: {meta.get(field)!r}, expected {value!r}")
    if f"{info}/licenses/LICENSE" not in names:
        problems.append(f"the wheel has no {info}/licenses/LICENSE (setup.cfg license_files)")
    classifiers = meta.get_all("Classifier") or []
    problems += [f"METADATA has no classifier {c!r}" for c in CLASSIFIERS if c not in classifiers]
    if "dpcnn" not in (meta.get_payload() or "")[:200]:
        problems.append("METADATA has no README as its description (setup.cfg long_description)")
    if "dpcnn = dpcnn.cli:main" not in entry_points:
        problems.append("the wheel has no `dpcnn` console script (setup.cfg entry_points)")
    if not any(r.startswith("tensorflow") for r in meta.get_all("Requires-Dist") or []):
        problems.append("METADATA requires no TensorFlow (setup.cfg install_requires)")
    return problems


def sdist_problems(sdist: Path, version: str) -> list[str]:
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
    top = f"dpcnn-{version}"
    return [f"{sdist.name} has no {name}" for name in ("LICENSE", "README.md", "setup.cfg", "pyproject.toml", "PKG-INFO")
            if f"{top}/{name}" not in names]


def run(command: list[str], cwd: Path, what: str) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"wheel-check: {what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the fresh environment")
    parser.add_argument("--keep", action="store_true", help="keep the temporary environment (its path is printed)")
    args = parser.parse_args(argv)

    version = setup_cfg_version()
    wheel, sdist = one(args.dist, "dpcnn-*.whl"), one(args.dist, "dpcnn-*.tar.gz")
    problems = wheel_problems(wheel, version) + sdist_problems(sdist, version)
    if problems:
        print("\n".join(f"wheel-check: {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"wheel-check: {wheel.name} and {sdist.name}: version {version}, metadata complete")

    tmp = Path(tempfile.mkdtemp(prefix="dpcnn-wheel-check-"))
    try:
        venv, work = tmp / "venv", tmp / "work"
        work.mkdir()
        t0 = time.perf_counter()
        run([args.python, "-m", "venv", str(venv)], tmp, "creating the environment")
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel.resolve())], tmp,
            f"pip install {wheel.name}")
        t1 = time.perf_counter()
        printed = run([str(venv / "bin" / "dpcnn"), "--version"], work, "dpcnn --version")
        if printed != f"dpcnn {version}":
            print(f"wheel-check: `dpcnn --version` printed {printed!r}, expected 'dpcnn {version}'", file=sys.stderr)
            return 1
        imported = run([str(venv / "bin" / "python"), "-c", IMPORT_CHECK], work, "import dpcnn")
        t2 = time.perf_counter()
        python = run([str(venv / "bin" / "python"), "--version"], work, "python --version")
        print(f"wheel-check: fresh environment ({python}): venv + pip install {t1 - t0:.0f} s; "
              f"`{printed}` and {imported} in {t2 - t1:.0f} s")
    finally:
        if args.keep:
            print(f"wheel-check: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
