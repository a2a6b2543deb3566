"""The run folder: config.json, env.json, stage markers, overwrite protection (DESIGN §1).

    DIR/config.json  env.json  data_report.json  history.csv  tb/  backup/
    DIR/stage1/  stage2/   model.weights.h5 (weights at the end of the stage) + done.json
    DIR/metrics.json  metrics.md  examples.png
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from dpcnn.config import Config
from dpcnn.utils import atomic_write_json, read_json

log = logging.getLogger(__name__)

WEIGHTS = "model.weights.h5"
DONE = "done.json"


from dpcnn.errors import RunError as RunDirError  # noqa: E402


def stage_dir(run: Path, stage: int) -> Path:
    return Path(run) / f"stage{stage}"


def stage_done(run: Path, stage: int) -> bool:
    d = stage_dir(run, stage)
    return (d / DONE).exists() and (d / WEIGHTS).exists()


def backup_dir(run: Path, stage: int) -> Path:
    return Path(run) / "backup" / f"stage{stage}"


def open_run(run: Path, cfg: Config, stages: tuple[int, ...], overwrite: bool) -> None:
    """Create ``run`` or check that it belongs to ``cfg``; refuse to overwrite finished results.

    - New folder: created, config.json written.
    - Same config, unfinished: resumed (nothing is deleted).
    - Same config, every requested stage finished: RunDirError unless ``overwrite``.
    - Different config: RunDirError unless ``overwrite``.
    ``overwrite`` deletes the folder's previous contents first.
    """
    run = Path(run)
    config_path = run / "config.json"
    if run.exists() and any(run.iterdir()):
        if overwrite:
            log.warning("--overwrite: deleting the previous contents of %s", run)
            for child in run.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif config_path.exists():
            previous = read_json(config_path)
            if previous != json.loads(cfg.to_json()):
                changed = _diff(previous, json.loads(cfg.to_json()))
                raise RunDirError(
                    f"{run} holds a run with a different configuration ({', '.join(changed[:6])}). "
                    "Use another --run folder, or --overwrite to replace it."
                )
            if all(stage_done(run, s) for s in stages):
                raise RunDirError(
                    f"{run} has already finished stage(s) {', '.join(map(str, stages))}. "
                    f"Evaluate it with `dpcnn eval --run {run}`, or train again with --overwrite."
                )
            log.info("resuming the unfinished run in %s", run)
        else:
            raise RunDirError(f"{run} exists and is not a dpcnn run folder: choose another --run")
    run.mkdir(parents=True, exist_ok=True)
    cfg.save(config_path)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} → {vb!r}")
    return out


def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment() -> dict:
    """Versions, devices and the code revision, for env.json and reports."""
    import keras
    import numpy as np
    import tensorflow as tf

    import dpcnn

    gpus = tf.config.list_physical_devices("GPU")
    details = []
    for gpu in gpus:
        try:
            details.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (RuntimeError, ValueError):
            details.append(gpu.name)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "dpcnn": dpcnn.__version__,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpus": details,
        "command": " ".join(sys.argv),
    }


def write_env(run: Path) -> None:
    atomic_write_json(Path(run) / "env.json", environment())
