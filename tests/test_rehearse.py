"""``benchmarks/rehearse.py --smoke`` runs the path of a real run end to end and writes its JSON and table.

The rehearsal runs a real run's steps (generate data, prepare, build, stage I killed after a
backup and resumed, stage II, encoding for the evaluation, export, search), each in its own
process, at the real size on a GPU machine; this runs the same script at CPU size (``--smoke``,
about a minute on 2 CPU cores). It checks that every step ran and was measured, not the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ("generate data", "prepare", "build model", "stage I to first backup", "stage I resumed to the end",
         "stage II", "evaluation (COCO 5K, extrapolated)", "export", "search")


@pytest.mark.slow
def test_rehearse_smoke_runs_every_step_and_records_it(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rehearse.py"), "--smoke", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((out / "rehearsal.json").read_text())
    assert result["ok"] is True and result["smoke"] is True and result["preset"] == "coco"
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["ram_gb"] > 0
    assert result["machine"]["tensorflow"] and result["date"]
    steps = {s["name"]: s for s in result["steps"]}
    assert tuple(steps) == STEPS
    for name, step in steps.items():
        assert step["wall_s"] > 0 and step["peak_rss_gb"] > 0, name
        assert step["command"] and step["command_line"], name

    killed, resumed = steps["stage I to first backup"], steps["stage I resumed to the end"]
    assert killed["killed"] is True and killed["returncode"] != 0
    assert killed["result"]["backup_state"]["epoch"] >= 1
    assert "resuming at epoch 2" in resumed["result"]["resumed_line"]
    assert resumed["command"] == killed["command"]  # the same command continues the run
    for name in ("stage I resumed to the end", "stage II", "export", "search"):
        assert steps[name]["returncode"] == 0 and not steps[name]["killed"], name

    backups = result["files"]["backup"]
    assert {p.split("/")[1] for p in backups} == {"stage1", "stage2"}
    assert all(p.endswith(".h5") and size > 0 for p, size in backups.items())
    assert set(result["files"]["stage_weights"]) == {"stage1/model.weights.h5", "stage2/model.weights.h5"}
    assert all(size > 0 for size in result["files"]["stage_weights"].values())
    assert result["files"]["export"] and steps["export"]["disk_written"] > 0

    evaluation = result["evaluation"]
    assert evaluation["n"] == 10 and evaluation["m"] == 50 and evaluation["extrapolated_s"] > 0
    assert "5000" in evaluation["formula"] and "25000" in evaluation["formula"]
    assert len(steps["search"]["result"]["results"]) == 5

    table = (out / "rehearsal.md").read_text()
    assert "| step | wall s | peak RSS GB | disk written | notes |" in table
    for name in STEPS:
        assert f"\n| {name} |" in table
    assert table.strip() in proc.stdout
