"""``dpcnn export``: a finished stage of a run as an export folder (:mod:`dpcnn.export`)."""

from __future__ import annotations

from pathlib import Path

from dpcnn.export import write_export
from dpcnn.run import Run


def export_run(run_path: str | Path, out: str | Path, stage: int | None = None) -> str:
    """``dpcnn export``: write the export of ``stage`` (default: the last finished) to ``out``;
    returns a summary to print."""
    run = Run.open(run_path)
    stage = run.resolve_stage(stage)
    files = write_export(run, out, stage)
    return f"exported stage {stage} of {run.path}:\n" + "\n".join(f"  {f}" for f in files)
