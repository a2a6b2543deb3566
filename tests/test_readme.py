"""The README's "Use a trained model" commands run as written (on a tiny run standing in for the demo's).

In a temporary folder: ``runs/demo`` is a copy of the tiny run, ``my_photos/`` a few images,
``.venv/bin/dpcnn`` this interpreter's ``python -m dpcnn``; then every line of the shell block under
the ``<!-- tested: … -->`` marker runs with bash, and the Python block after it with this Python.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, check_search_output, reference_run_features, search_example

README = ROOT / "README.md"


def readme_blocks() -> tuple[list[str], str]:
    text = README.read_text()
    marker = text.index("<!-- tested:")
    shell = re.search(r"```sh\n(.*?)```", text[marker:], re.S).group(1)
    python = re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)
    return [line for line in shell.splitlines() if line.strip()], python


@pytest.mark.slow
def test_the_use_a_trained_model_section_runs_as_written(tiny_run, tiny_data, tmp_path):
    commands, python = readme_blocks()
    assert len(commands) >= 4 and all(c.startswith(".venv/bin/dpcnn ") for c in commands)
    shutil.copytree(tiny_run, tmp_path / "runs" / "demo")
    photos, copies = tmp_path / "my_photos", {}
    photos.mkdir()
    for i, path in enumerate(tiny_data.splits["test"].paths[:3]):
        name = f"photo{i + 1}.{'jpg' if i != 1 else 'png'}"
        shutil.copy(path, photos / name)
        copies[f"my_photos/{name}"] = str(path)
    shim = tmp_path / ".venv" / "bin" / "dpcnn"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dpcnn "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    for name in ("exports/demo/image_features.keras", "search.png", "alt.csv", "alt.html"):
        assert (tmp_path / name).is_file(), name
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    files, caption, k = search_example(python)  # the ranking it prints, recomputed from the run by hand
    images, texts = reference_run_features(tmp_path / "runs" / "demo", [copies[f] for f in files], [caption])
    check_search_output(done.stdout, images, texts[0], k)
