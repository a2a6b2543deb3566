"""Execute the five notebooks top to bottom (CI runs them through ``make test``).

Each notebook runs in its own temporary working directory with ``DPCNN_DATA_ROOT`` and
``DPCNN_RUNS`` pointing into it, so it generates its own (tiny/demo) data and trains its own tiny
run: a notebook that only works after another one fails here. The kernel is this interpreter:
a ``python3`` kernelspec for ``sys.executable`` is written to a temporary ``JUPYTER_PATH``
(no network), so a system-wide ``python3`` kernel of another environment is never picked up.

A raising cell fails the test with the cell's source and traceback. The notebooks must be
committed without outputs.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbclient  # the dev extras (pip install -e '.[dev]'), installed by `make test`
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_data", "02_model", "03_stage1", "04_stage2", "05_evaluation_search")
CELL_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory) -> Path:
    """A JUPYTER_PATH whose ``python3`` kernel runs ``sys.executable`` (this venv's ipykernel)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    return prefix / "share" / "jupyter"


def test_the_five_notebooks_are_there():
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them before committing"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "google.colab" in first_code.source and "import dpcnn" in first_code.source, (
        f"{name}: the first code cell must be the local/Colab setup cell"
    )


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, kernel_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, f"kernel python3 resolves to {spec.argv}, not {sys.executable}"

    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "DPCNN_DATA_ROOT": str(tmp_path / "data"), "DPCNN_RUNS": str(tmp_path / "runs"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as e:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the kernel's traceback without colour codes
        pytest.fail(f"{name}.ipynb: a cell raised\n{plain}", pytrace=False)
    seconds = time.perf_counter() - start
    print(f"{name}.ipynb executed in {seconds:.1f} s")

    assert (tmp_path / "data").is_dir(), "the notebook did not use DPCNN_DATA_ROOT"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if name in ("03_stage1", "04_stage2", "05_evaluation_search"):
        run = tmp_path / "runs" / "tiny"
        assert (run / "stage1" / "metrics.json").is_file()
        if name != "03_stage1":
            assert (run / "metrics.json").is_file() and (run / "examples.png").is_file()
