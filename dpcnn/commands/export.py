"""``dpcnn export``: a finished stage of a run as an export folder (:mod:`dpcnn.export`)."""

from __future__ import annotations

from pathlib import Path

from dpcnn.export import KERAS, write_export
from dpcnn.run import Run


def export_run(run_path: str | Path, out: str | Path, stage: int | None = None, fmt: str = KERAS) -> str:
    """``dpcnn export``: write the export of ``stage`` (default: the last finished) to ``out`` in
    format ``fmt`` (``keras`` or ``savedmodel``); returns a summary to print."""
    run = Run.open(run_path)
    stage = run.resolve_stage(stage)
    files = write_export(run, out, stage, fmt)
    size = sum(f.stat().st_size for p in files for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return (f"exported stage {stage} of {run.path} ({fmt}, {size / 1e6:.1f} MB):\n"
            + "\n".join(f"  {f}{'/' if f.is_dir() else ''}" for f in files))
