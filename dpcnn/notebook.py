"""The set-up of the notebooks in ``notebooks/``: one call in their first cell, locally and on Colab.

    import dpcnn.notebook
    nb = dpcnn.notebook.setup(preset="demo", drive=False)
    cfg = nb.config()                      # the resolved Config of nb.preset with nb.overrides
    dpcnn.notebook.tensorboard(nb.run)     # %tensorboard on the run's logs (Jupyter / Colab only)

:func:`setup` picks the preset (``DPCNN_NOTEBOOK_PRESET`` overrides it: the test suite runs the
notebooks on ``tiny``), the data root and the runs folder (``DPCNN_DATA_ROOT``, ``DPCNN_RUNS``
override them; with ``drive=True`` on Colab the runs live on Google Drive, which survives a
disconnect, and so does the data of the synthetic presets, while a real dataset stays on the VM's
local disk), moves to the repository root when the kernel starts in ``notebooks/`` of a checkout,
quiets TensorFlow's C++ log and tqdm's widget warning, and prints one line: version, Colab or not,
preset, device, data root and run folder. ``train.mixed_precision`` is ``auto`` in every preset,
so training uses mixed precision exactly when a GPU is present.

:data:`REPOSITORY` is the project's URL (``setup.cfg`` ``[metadata] url``, read from the installed
package's metadata); ``tools/notebook_links.py`` writes it into the notebooks' Colab badge and,
once the repository is public, their install line (until then they install a wheel).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

_FALLBACK_REPOSITORY = "https://github.com/dpcnn/dpcnn"
"""setup.cfg's url, for a dpcnn whose installed metadata has none (tools/notebook_links.py keeps it in step)."""

PRESET_VARIABLE = "DPCNN_NOTEBOOK_PRESET"
"""Overrides the notebook's preset; when set (the test suite sets ``tiny``) TensorBoard is not started."""
DATA_VARIABLE, RUNS_VARIABLE = "DPCNN_DATA_ROOT", "DPCNN_RUNS"
LOCAL_DATA, LOCAL_RUNS = Path("data"), Path("runs/notebooks")
"""Default folders, relative to the repository root (locally) or ``/content`` (Colab); git-ignored."""
DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = DRIVE_MOUNT / "MyDrive" / "dpcnn"
"""With ``drive=True`` on Colab: DRIVE_FOLDER/data and DRIVE_FOLDER/runs."""

__all__ = ["REPOSITORY", "Setup", "in_colab", "repository", "setup", "tensorboard"]


def repository() -> str:
    """The project's URL from the installed package metadata (``setup.cfg`` url), else the fallback."""
    from importlib import metadata

    try:
        meta = metadata.metadata("dpcnn")
    except metadata.PackageNotFoundError:
        return _FALLBACK_REPOSITORY
    url = (meta.get("Home-page") or "").strip()
    if not url:
        for entry in meta.get_all("Project-URL") or []:
            label, _, value = entry.partition(",")
            if label.strip().lower() in ("homepage", "home", "source", "repository"):
                url = value.strip()
                break
    return url or _FALLBACK_REPOSITORY


REPOSITORY = repository()


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


@dataclass(frozen=True)
class Setup:
    """What the notebooks share: the preset, the folders, and the config overrides."""

    preset: str
    data_root: Path
    """Datasets and prepared caches (``data.root``)."""
    runs: Path
    """Run folders written by the notebooks."""
    run: Path
    """The run folder of notebooks 03, 04 and 05: ``runs/<preset>`` (each trains what is missing)."""
    overrides: list[str] = field(default_factory=list)
    """``--set``-style overrides that every notebook applies (``data.root=…``)."""
    in_colab: bool = False

    def config(self):
        """The resolved :class:`dpcnn.config.Config` of the preset with the overrides."""
        from dpcnn.presets import resolve

        return resolve(self.preset, self.overrides)


def _checkout_root(cwd: Path) -> Path | None:
    """The repository root when ``cwd`` is ``notebooks/`` of a dpcnn checkout, else None."""
    root = cwd.parent
    if cwd.name == "notebooks" and (root / "dpcnn" / "__init__.py").is_file() and (root / "setup.cfg").is_file():
        return root
    return None


def _folders(drive: bool, colab: bool, data_on_drive: bool) -> tuple[Path, Path]:
    """(data root, runs folder): the environment variables, else Drive (``drive`` on Colab: the runs,
    and the data where ``data_on_drive``), else local."""
    data_env, runs_env = os.environ.get(DATA_VARIABLE), os.environ.get(RUNS_VARIABLE)
    data, runs = LOCAL_DATA, LOCAL_RUNS
    if drive and not colab:
        print(f"drive=True works on Google Colab only: using the local folders {LOCAL_DATA}/ and {LOCAL_RUNS}/")
    elif drive and not (data_env and runs_env):
        from google.colab import drive as google_drive  # only importable on Colab

        google_drive.mount(str(DRIVE_MOUNT))
        runs = DRIVE_FOLDER / "runs"
        if data_on_drive:
            data = DRIVE_FOLDER / "data"
        elif not data_env:
            print(f"data on the VM's local disk ({LOCAL_DATA}/, fetched again in each session: `dpcnn download … "
                  "--delete-archives`), runs on Drive; setup(..., data_on_drive=True) keeps the data on Drive")
    return Path(data_env) if data_env else data, Path(runs_env) if runs_env else runs


def _device(cfg) -> str:
    """Which device training will use and in which precision (``train.mixed_precision``), in words."""
    import tensorflow as tf

    from dpcnn.training.distribute import use_mixed_precision

    precision = "mixed precision" if use_mixed_precision(cfg.train.mixed_precision) else "float32"

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
            except (RuntimeError, ValueError):
                names.append(gpu.name)
        return f"GPU ({', '.join(names)}), {precision}"
    return f"CPU ({os.cpu_count()} cores), {precision}"


def _show_library_log() -> None:
    """dpcnn's INFO messages (stage starts and ends, resumes, skipped protocols) in the notebook, on
    stdout (``dpcnn.utils.setup_logging`` writes to stderr, which notebooks show as if it were an error)."""
    logger = logging.getLogger("dpcnn")
    for handler in [h for h in logger.handlers if getattr(h, "_dpcnn_notebook", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler._dpcnn_notebook = True
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not twice where the root logger has a handler too
    logging.getLogger("dpcnn.data").setLevel(logging.WARNING)  # the notebooks print the data report themselves


def setup(preset: str = "demo", drive: bool = False, data_on_drive: bool | None = None) -> Setup:
    """Prepare the notebook session and say where everything goes (module docstring).

    preset: the notebook's preset (``DPCNN_NOTEBOOK_PRESET`` overrides it).
    drive: on Colab, keep the runs in ``MyDrive/dpcnn/runs`` on Google Drive (mounted here, it asks
        for permission once), where they survive a disconnect; elsewhere a printed note and the
        local folders. ``DPCNN_DATA_ROOT`` / ``DPCNN_RUNS`` override both folders.
    data_on_drive: with ``drive``, the data root on Drive too (``MyDrive/dpcnn/data``). Default:
        yes for the synthetic presets (megabytes), no for the real datasets (``coco``, ``flickr30k``,
        ``cuhk-pedes`` …): their data stays on the VM's local disk, as README "Colab" explains —
        COCO is 20.4 GB of archives plus as much extracted, over the 15 GB of a free Drive, and
        reading 123,287 small files through the Drive mount is slow.
    """
    import dpcnn

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: text bars
    colab = in_colab()
    root = None if colab else _checkout_root(Path.cwd())
    if root is not None:
        os.chdir(root)  # paths are relative to the repository root, as for the `dpcnn` command
    preset = os.environ.get(PRESET_VARIABLE) or preset
    if data_on_drive is None:
        from dpcnn.presets import resolve

        data_on_drive = resolve(preset, []).data.dataset == "synthetic"
    data_root, runs = _folders(drive, colab, data_on_drive)
    nb = Setup(preset=preset, data_root=data_root, runs=runs, run=runs / preset,
               overrides=[f"data.root={data_root}"], in_colab=colab)
    cfg = nb.config()  # an unknown preset stops here, with the list of presets
    _show_library_log()
    print(f"dpcnn {dpcnn.__version__} | {'Colab' if colab else 'local'} | preset {preset} | {_device(cfg)} | "
          f"data root {data_root.resolve()} | run folder {nb.run.resolve()}")
    return nb


def _interactive_shell():
    """The IPython shell of a Jupyter or Colab kernel, or None (a plain interpreter, a terminal IPython)."""
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell  # Colab's shell is a subclass
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if isinstance(shell, ZMQInteractiveShell) else None


def tensorboard(run: str | os.PathLike) -> None:
    """``%tensorboard --logdir RUN/tb`` in an interactive Jupyter or Colab session; otherwise one
    printed line (with the command to start it by hand). Not started when ``DPCNN_NOTEBOOK_PRESET``
    is set (the test suite)."""
    from dpcnn.run import Run

    logdir = Run(run).tensorboard_dir
    by_hand = f"`tensorboard --logdir {logdir}` in a terminal"
    shell = _interactive_shell()
    if os.environ.get(PRESET_VARIABLE):
        print(f"TensorBoard not started ({PRESET_VARIABLE} is set, as in the test suite); to watch: {by_hand}")
    elif shell is None:
        print(f"TensorBoard not started: this is not an interactive Jupyter/Colab session; to watch: {by_hand}")
    else:
        beside = Path(sys.executable).with_name("tensorboard")  # a venv kernel of a Jupyter whose PATH lacks it
        if not shutil.which("tensorboard") and not os.environ.get("TENSORBOARD_BINARY") and beside.is_file():
            os.environ["TENSORBOARD_BINARY"] = str(beside)
        if "tensorboard" not in shell.extension_manager.loaded:
            shell.run_line_magic("load_ext", "tensorboard")
        shell.run_line_magic("tensorboard", f'--logdir "{logdir}"')
