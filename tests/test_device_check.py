"""``benchmarks/device_check.py --smoke`` runs on a CPU and writes its JSON and markdown table.

The device check is what a session with a lent GPU runs once; this runs the same script at tiny
sizes (``--smoke``, about 40 s on 2 CPU cores) so that it is known to work before a GPU is lent.
It checks the files' structure, not the figures (speed is measured in ``benchmarks/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

CONDITIONS = ("mixed_float16", "mixed_float16+xla", "float32")
ITEMS = ("resnet50", "stage1", "stage2")


@pytest.mark.slow
def test_device_check_smoke_writes_the_json_and_the_table(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--smoke", "--out", str(out),
                           "--data", str(tmp_path / "data")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((out / "device_check.json").read_text())
    assert set(result) == {"meta", "pipeline", "conditions", "peak_gpu_memory_mib", "goal_ratio", "skipped",
                           "errors", "total_s"}
    assert result["meta"]["smoke"] is True and result["meta"]["image_size"] == 32
    assert result["errors"] == {}
    assert result["peak_gpu_memory_mib"] is None  # no GPU: null, not a made-up number
    for stage in ("stage1", "stage2"):
        p = result["pipeline"][stage]
        assert set(p) >= {"images_per_s", "cpu_ms_per_image", "images_per_s_per_core", "cores_busy"}
        assert p["images_per_s"] > 0 and p["images_per_s_per_core"] > 0
    assert tuple(result["conditions"]) == CONDITIONS
    for name, condition in result["conditions"].items():
        assert set(condition) == {*ITEMS, "ratio_stage1", "ratio_stage2"}, name
        for item in ("stage1", "stage2"):  # the dual path runs in every condition, XLA and mixed included
            got = condition[item]
            assert got["status"] == "ok", (name, item, got)
            assert got["steps_per_s"] > 0 and got["first_step_s"] > 0 and got["peak_gpu_memory_mib"] is None
    float32 = result["conditions"]["float32"]
    assert float32["resnet50"]["status"] == "ok" and float32["ratio_stage2"] > 0
    assert result["conditions"]["mixed_float16"]["resnet50"]["status"] == "skipped"  # --smoke: no float16 ResNet on a CPU
    assert result["conditions"]["mixed_float16"]["ratio_stage1"] is None

    table = (out / "device_check.md").read_text()
    assert "| condition | stage I steps/s (images/s) |" in table
    for name in CONDITIONS:
        assert f"\n| {name} |" in table
    assert "| pipeline | images/s | CPU ms / image | images/s per core | cores busy |" in table
