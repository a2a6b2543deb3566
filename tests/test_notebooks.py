"""The notebooks and their set-up helper (CI runs them through ``make test``).

Fast checks: the notebooks are committed clean, their first code cell is the short
``dpcnn.notebook.setup`` cell, the Colab badge and the install URL agree with setup.cfg's url
(``tools/notebook_links.py`` writes them), and ``dpcnn.notebook.setup`` itself (environment
overrides, the Drive switch, the chdir, TensorBoard only where it can be shown).

Slow checks execute every notebook top to bottom on the ``tiny`` preset
(``DPCNN_NOTEBOOK_PRESET=tiny``), each in its own temporary working directory with
``DPCNN_DATA_ROOT`` and ``DPCNN_RUNS`` pointing into it, so each generates its own data and trains
what it needs: a notebook that only works after another one fails here. The kernel is this
interpreter: a ``python3`` kernelspec for ``sys.executable`` is written to a temporary
``JUPYTER_PATH`` (no network), so a system-wide ``python3`` kernel of another environment is never
picked up. A raising cell fails the test with the cell's source and traceback.
"""

from __future__ import annotations

import configparser
import importlib.util
import io
import json
import os
import re
import sys
import time
import tokenize
import types
from pathlib import Path

import nbclient  # the dev extras (pip install -e '.[dev]'), installed by `make test`
import nbformat
import pytest
from helpers import ROOT
from nbclient.exceptions import CellExecutionError

NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_data", "02_model", "03_stage1", "04_stage2", "05_evaluation_search", "06_instance_loss")
CELL_TIMEOUT_S = 600
SETUP_CELL_MAX_LINES = 8


def setup_cfg_url() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser.get("metadata", "url")


def setup_cfg_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser.get("metadata", "version")


def load_links_tool():
    spec = importlib.util.spec_from_file_location("notebook_links", ROOT / "tools" / "notebook_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(name: str):
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def first_code_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


# --------------------------------------------------------------------------------------------
# The committed notebooks
# --------------------------------------------------------------------------------------------


def test_the_notebooks_are_there():
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_code_cell_is_the_short_setup_cell(name):
    source = first_code_cell(read(name)).source
    lines = [line for line in source.splitlines() if line.strip()]
    assert len(lines) <= SETUP_CELL_MAX_LINES, f"{name}: the setup cell has {len(lines)} lines:\n{source}"
    assert "google.colab" in source and "pip" in source, f"{name}: the setup cell must install dpcnn on Colab"
    assert re.search(r"^nb = dpcnn\.notebook\.setup\(", source, re.MULTILINE), f"{name}: no dpcnn.notebook.setup call"
    assert 'preset="demo"' in source, f"{name}: the notebooks default to the demo preset"


def code_without_comments(source: str) -> str:
    """What of ``source`` would run: every token but the comments."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return " ".join(t.string for t in tokens if t.type != tokenize.COMMENT)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_colab_badge_and_install_cell_agree_with_setup_cfg(name):
    tool = load_links_tool()
    url, version = setup_cfg_url(), setup_cfg_version()
    owner_repo = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url).group(1)
    nb = read(name)
    badge = nb.cells[0]
    assert badge.cell_type == "markdown"
    assert f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}.ipynb" in badge.source
    assert "colab-badge.svg" in badge.source
    cell = first_code_cell(nb).source
    install = tool.install_lines(url, version)
    assert cell.splitlines()[:len(install)] == install
    if not tool.PUBLISHED:
        # The repository does not exist yet: the badge says so, and nothing that runs names it.
        assert "once the repository is public" in badge.source and "File → Upload notebook" in badge.source
        code = code_without_comments(cell)
        assert url.removeprefix("https://") not in code and "git+" not in code, code
        assert f'SOURCE = "/content/dpcnn-{version}-py3-none-any.whl"' in cell
    else:
        assert f'SOURCE = "git+{url}"' in cell


@pytest.mark.parametrize("name", ("03_stage1", "04_stage2"))
def test_training_notebooks_open_tensorboard_before_training(name):
    sources = [c.source for c in read(name).cells if c.cell_type == "code"]
    board = next(i for i, s in enumerate(sources) if "dpcnn.notebook.tensorboard(nb.run)" in s)
    trains = next(i for i, s in enumerate(sources) if "train(cfg, nb.run" in s)
    assert board < trains


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_import_the_model_losses_and_metrics(name):
    code = "\n".join(c.source for c in read(name).cells if c.cell_type == "code")
    for pattern in (r"keras\.layers\.", r"keras\.Model\(", r"def \w*(loss|metric|recall|rank|mine)\w*\("):
        assert not re.search(pattern, code), f"{name} re-defines library code ({pattern}): import it from dpcnn"


def test_links_tool_finds_nothing_to_update():
    tool = load_links_tool()
    assert tool.repository_url() == setup_cfg_url()
    assert tool.stale(setup_cfg_url()) == [], "run python tools/notebook_links.py"


def test_links_tool_rewrites_badge_and_install_cell(tmp_path):
    tool = load_links_tool()
    nb = read("03_stage1")
    n = len(tool.install_lines(setup_cfg_url(), setup_cfg_version()))
    own = first_code_cell(nb).source.splitlines()[n:]  # the notebook's own lines stay as they are
    assert own[0].startswith("import dpcnn.notebook")
    assert not tool.update_notebook(nb, setup_cfg_url(), "03_stage1")
    assert tool.update_notebook(nb, "https://github.com/someone/fork", "03_stage1", version="9.8.7", published=False)
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/03_stage1.ipynb" in nb.cells[0].source
    assert "once the repository is public" in nb.cells[0].source
    cell = first_code_cell(nb).source
    assert 'SOURCE = "/content/dpcnn-9.8.7-py3-none-any.whl"' in cell and "git+" not in cell
    assert cell.splitlines()[n:] == own
    assert tool.update_notebook(nb, "https://github.com/someone/fork", "03_stage1", version="9.8.7", published=True)
    assert 'SOURCE = "git+https://github.com/someone/fork"' in first_code_cell(nb).source
    assert "once the repository is public" not in nb.cells[0].source
    del nb.cells[0]  # no badge: one is inserted
    assert tool.update_notebook(nb, setup_cfg_url(), "03_stage1")
    assert tool.is_badge(nb.cells[0]) and nb.cells[0].source == read("03_stage1").cells[0].source
    assert first_code_cell(nb).source == first_code_cell(read("03_stage1")).source
    with pytest.raises(SystemExit, match="GitHub"):
        tool.colab_url("https://gitlab.com/someone/fork", "03_stage1")


def test_repository_setting_is_one_place():
    import dpcnn.notebook

    text = (ROOT / "dpcnn" / "notebook.py").read_text()
    fallback = re.search(r'^_FALLBACK_REPOSITORY = "([^"]*)"', text, re.MULTILINE).group(1)
    assert fallback == setup_cfg_url()
    # The installed metadata's url, or the fallback for an install made before setup.cfg had one.
    assert dpcnn.notebook.REPOSITORY == setup_cfg_url(), "the installed metadata is stale: pip install -e ."


# --------------------------------------------------------------------------------------------
# dpcnn.notebook.setup
# --------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No notebook variables, an empty working directory, and the dpcnn logger restored after."""
    import logging

    for name in ("DPCNN_NOTEBOOK_PRESET", "DPCNN_DATA_ROOT", "DPCNN_RUNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    logger, data_logger = logging.getLogger("dpcnn"), logging.getLogger("dpcnn.data")
    state = (list(logger.handlers), logger.level, logger.propagate, data_logger.level)
    yield tmp_path
    logger.handlers[:] = state[0]
    logger.setLevel(state[1])
    logger.propagate = state[2]
    data_logger.setLevel(state[3])


def test_setup_defaults_and_environment_overrides(clean_env, monkeypatch, capsys):
    import dpcnn
    from dpcnn.notebook import setup

    nb = setup()
    assert (nb.preset, nb.data_root, nb.runs, nb.run) == ("demo", Path("data"), Path("runs/notebooks"),
                                                          Path("runs/notebooks/demo"))
    assert nb.overrides == ["data.root=data"] and not nb.in_colab
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"]

    monkeypatch.setenv("DPCNN_NOTEBOOK_PRESET", "tiny")
    monkeypatch.setenv("DPCNN_DATA_ROOT", str(clean_env / "d"))
    monkeypatch.setenv("DPCNN_RUNS", str(clean_env / "r"))
    capsys.readouterr()
    nb = setup(preset="demo")
    assert nb.preset == "tiny" and nb.run == clean_env / "r" / "tiny"
    assert nb.overrides == [f"data.root={clean_env / 'd'}"]
    cfg = nb.config()
    assert cfg.name == "tiny" and cfg.data.root == str(clean_env / "d")
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    for part in (f"dpcnn {dpcnn.__version__}", "local", "preset tiny", str(clean_env / "d"), str(clean_env / "r" / "tiny")):
        assert part in line, (part, line)
    assert "CPU (" in line or "GPU (" in line


def test_setup_rejects_an_unknown_preset(clean_env):
    from dpcnn.errors import ConfigError
    from dpcnn.notebook import setup

    with pytest.raises(ConfigError, match="unknown preset"):
        setup(preset="demo-typo")


def test_setup_moves_from_notebooks_to_the_checkout_root(clean_env, monkeypatch):
    from dpcnn.notebook import setup

    checkout = clean_env / "checkout"
    (checkout / "dpcnn").mkdir(parents=True)
    (checkout / "dpcnn" / "__init__.py").write_text("")
    (checkout / "setup.cfg").write_text("[metadata]\n")
    (checkout / "notebooks").mkdir()
    monkeypatch.chdir(checkout / "notebooks")
    setup()
    assert Path.cwd() == checkout

    elsewhere = clean_env / "notebooks"  # a folder named notebooks outside a checkout: stay
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    setup()
    assert Path.cwd() == elsewhere


def test_drive_switch_without_colab_falls_back_with_a_note(clean_env, capsys):
    from dpcnn.notebook import setup

    nb = setup(drive=True)
    out = capsys.readouterr().out
    assert "drive=True works on Google Colab only" in out
    assert (nb.data_root, nb.runs) == (Path("data"), Path("runs/notebooks"))


def test_drive_switch_on_colab_mounts_drive(clean_env, monkeypatch):
    from dpcnn import notebook

    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)

    nb = notebook.setup(drive=True)
    assert mounted == ["/content/drive"] and nb.in_colab
    assert nb.data_root == Path("/content/drive/MyDrive/dpcnn/data")
    assert nb.run == Path("/content/drive/MyDrive/dpcnn/runs/demo")
    assert nb.overrides == ["data.root=/content/drive/MyDrive/dpcnn/data"]

    nb = notebook.setup(preset="coco", drive=True)  # a real dataset: data on the VM's disk, runs on Drive
    assert (nb.data_root, nb.run) == (Path("data"), Path("/content/drive/MyDrive/dpcnn/runs/coco"))
    nb = notebook.setup(preset="coco", drive=True, data_on_drive=True)
    assert nb.data_root == Path("/content/drive/MyDrive/dpcnn/data")

    nb = notebook.setup(drive=False)  # Colab without Drive: /content, wiped by a disconnect
    assert (nb.data_root, nb.runs, len(mounted)) == (Path("data"), Path("runs/notebooks"), 3)

    monkeypatch.setenv("DPCNN_DATA_ROOT", str(clean_env / "d"))
    monkeypatch.setenv("DPCNN_RUNS", str(clean_env / "r"))
    nb = notebook.setup(drive=True)  # the environment wins: nothing to mount
    assert (nb.data_root, nb.runs, len(mounted)) == (clean_env / "d", clean_env / "r", 3)


def test_tensorboard_only_in_an_interactive_session(clean_env, monkeypatch, capsys):
    from dpcnn import notebook

    notebook.tensorboard(clean_env / "run")
    assert "not an interactive Jupyter/Colab session" in capsys.readouterr().out

    calls = []
    shell = types.SimpleNamespace(extension_manager=types.SimpleNamespace(loaded=set()),
                                  run_line_magic=lambda *args: calls.append(args))
    monkeypatch.setattr(notebook, "_interactive_shell", lambda: shell)
    monkeypatch.setenv("TENSORBOARD_BINARY", "")  # restored (removed) after the test
    monkeypatch.delenv("TENSORBOARD_BINARY")
    monkeypatch.setattr(notebook.shutil, "which", lambda name: None)  # a Jupyter whose PATH lacks the venv
    notebook.tensorboard(clean_env / "run")
    assert calls == [("load_ext", "tensorboard"), ("tensorboard", f'--logdir "{clean_env / "run" / "tb"}"')]
    beside = Path(sys.executable).with_name("tensorboard")
    assert os.environ.get("TENSORBOARD_BINARY") == (str(beside) if beside.is_file() else None)

    monkeypatch.setenv("DPCNN_NOTEBOOK_PRESET", "tiny")  # the test suite: never start it
    notebook.tensorboard(clean_env / "run")
    assert len(calls) == 2
    assert "DPCNN_NOTEBOOK_PRESET is set" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Executing the notebooks
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory) -> Path:
    """A JUPYTER_PATH whose ``python3`` kernel runs ``sys.executable`` (this venv's ipykernel)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    return prefix / "share" / "jupyter"


COLAB_WITHOUT_DPCNN = """\
import importlib.util, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")  # as on Colab
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "dpcnn" else _find_spec(name, *a)  # dpcnn not installed yet
"""


def test_a_failed_colab_install_is_one_line_that_says_what_to_do(tmp_path, kernel_path, monkeypatch):
    """The setup cell as on a fresh Colab runtime whose SOURCE wheel is not there: pip fails, and the
    cell shows one line (pip's reason and the advice), no traceback, and stops before the rest."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    missing = tmp_path / "dpcnn-0.2.0-py3-none-any.whl"
    cell = first_code_cell(read("01_data")).source
    cell = re.sub(r'^SOURCE = "[^"]*"', f'SOURCE = "{missing}"', cell, count=1, flags=re.MULTILINE)
    assert str(missing) in cell
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(COLAB_WITHOUT_DPCNN), nbformat.v4.new_code_cell(cell),
                                         nbformat.v4.new_code_cell('print("nb" in globals())')])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert not nb.cells[0].outputs
    [error] = nb.cells[1].outputs
    assert error.output_type == "error" and len(error.traceback) == 1, error
    line = error.traceback[0]
    assert "\n" not in line.strip() and "Traceback" not in line and "\x1b" not in line, line
    assert line.startswith(f"dpcnn not installed from {missing}: ERROR: ") and "No such file" in line, line
    assert "SOURCE" in line and line.endswith("(README 'Install')"), line  # what to do
    assert nb.cells[2].outputs[0].text.strip() == "False"  # the cell stopped before `nb = …`


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, kernel_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, f"kernel python3 resolves to {spec.argv}, not {sys.executable}"

    nb = read(name)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "DPCNN_NOTEBOOK_PRESET": "tiny", "DPCNN_DATA_ROOT": str(tmp_path / "data"),
           "DPCNN_RUNS": str(tmp_path / "runs"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as e:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the kernel's traceback without colour codes
        pytest.fail(f"{name}.ipynb: a cell raised\n{plain}", pytrace=False)
    print(f"{name}.ipynb executed in {time.perf_counter() - start:.1f} s")

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = outputs_text(nb)
    assert "preset tiny" in printed, "the setup line does not show the preset of DPCNN_NOTEBOOK_PRESET"
    assert (tmp_path / "data" / "prepared").is_dir(), "the notebook did not use DPCNN_DATA_ROOT"
    run = tmp_path / "runs" / "tiny"
    if name in ("03_stage1", "04_stage2", "05_evaluation_search"):
        assert "TensorBoard not started" in printed or name == "05_evaluation_search"
        for path in ("config.json", "history.csv", "curves.png", "stage1/done.json", "stage1/metrics.json",
                     "stage1/metrics.md", "stage1/examples.png"):
            assert (run / path).is_file(), f"{name}: the run folder has no {path}"
        assert any((run / "tb" / "stage1").iterdir())
    elif name == "06_instance_loss":  # stage I in the shared run folder, then the comparison beside it
        assert (run / "stage1" / "done.json").is_file() and not (run / "stage2").exists(), "06 trains stage I only there"
        saved = (tmp_path / "runs" / "compare" / "results.json").read_text()
        from dpcnn.compare import ORDER

        assert {(r["dataset"], r["seed"], r["variant"]) for r in json.loads(saved)["results"]} == {
            ("tiny", 0, v) for v in ORDER}
        assert (tmp_path / "runs" / "compare" / "tiny-seed0.png").is_file()
        assert "### tiny" in "\n".join(o.data.get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                                        for o in c.outputs if o.output_type == "display_data")
    else:
        assert not run.exists(), f"{name} should not train"
    if name in ("04_stage2", "05_evaluation_search"):
        for path in ("stage2/done.json", "metrics.json", "metrics.md", "examples.png"):
            assert (run / path).is_file(), f"{name}: the run folder has no {path}"
        assert "ours, stage I" in (run / "metrics.md").read_text() and "ours, stage II" in (run / "metrics.md").read_text()
    if name == "03_stage1":
        assert not (run / "stage2").exists(), "03 trains stage I only"
    if name == "05_evaluation_search":
        export = tmp_path / "runs" / "tiny-export"
        assert (export / "image_features.keras").is_file() and (export / "text_features.keras").is_file()
        assert (run / "search_text.png").is_file() and (run / "search_image.png").is_file()
        assert "$ dpcnn search --run" in printed and "rank" in printed
