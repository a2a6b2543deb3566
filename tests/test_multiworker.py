"""``train.strategy=multiworker`` on real processes: two workers of ``dpcnn train`` on 127.0.0.1.

Each worker gets its own ``TF_CONFIG`` (free ports), both run the same command on the same run
folder (a shared file system), the chief (worker 0) writes the run folder and the other worker
writes its backups to a scratch folder (``tempfile.mkdtemp``: under ``TMPDIR``, which each worker
gets inside the test's own folder, so no test reads the machine's ``/tmp``). The losses must agree with one process on the same
global batch within the tolerance measured for ``mirrored`` (``helpers.MIRRORED_TOLERANCE``); a worker
killed mid-stage must resume from the last backup when the two commands are run again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MIRRORED_TOLERANCE, ROOT, history

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def command(run: Path, data_root: Path, strategy: str, extra=()) -> list[str]:
    return [sys.executable, "-m", "dpcnn", "train", "--config", "tiny", "--run", str(run), "--set",
            f"data.root={data_root}", f"train.strategy={strategy}", "model.dropout=0", "train.stage1_schedule=2:0.1",
            "train.stage2_schedule=1:0.1", "train.negative_pool=8", "train.validate_every=100", *extra]


def start_workers(run: Path, data_root: Path, logs: Path, extra=()) -> list[subprocess.Popen]:
    """Two workers of one cluster; worker i's temporary files (its scratch folder) go to logs/tmp{i}."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        scratch_parent = logs / f"tmp{index}"
        scratch_parent.mkdir(exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", "TMPDIR": str(scratch_parent),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        log = open(logs / f"worker{index}.log", "w")
        procs.append(subprocess.Popen(command(run, data_root, "multiworker", extra), env=env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait(procs, timeout=600) -> list[int]:
    deadline = time.time() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1, deadline - time.time())))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


def losses(run: Path) -> list[dict]:
    return [{k: float(v) for k, v in r.items() if k in MIRRORED_TOLERANCE} | {"stage": r["stage"], "epoch": r["epoch"]}
            for r in history(run)]


def test_two_workers_train_both_stages_like_one_process(tmp_path, data_root, tiny_data):
    single = tmp_path / "single"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(command(single, data_root, "default"), check=True, env=env, cwd=ROOT, capture_output=True)
    run = tmp_path / "two-workers"
    start = time.time()
    codes = wait(start_workers(run, data_root, tmp_path))
    seconds = time.time() - start
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    print(f"two workers: {seconds:.0f} s")
    assert (run / "stage2" / "done.json").is_file() and (run / "stage1" / "done.json").is_file()
    assert "scratch folder" in logs[1] and "scratch folder" not in logs[0]  # only the chief writes the run folder
    a, b = losses(single), losses(run)
    assert [(r["stage"], r["epoch"]) for r in a] == [(r["stage"], r["epoch"]) for r in b]  # one row per epoch
    worst = {key: max(abs(rb[key] - ra[key]) / (abs(ra[key]) or 1.0) for ra, rb in zip(a, b)) for key in MIRRORED_TOLERANCE}
    print("largest relative loss difference, two workers vs one process:",
          {k: f"{v:.2e}" for k, v in worst.items()})
    for ra, rb in zip(a, b):
        for key, tol in MIRRORED_TOLERANCE.items():
            assert rb[key] == pytest.approx(ra[key], rel=tol), (key, ra, rb)
    assert str(tmp_path / "tmp1" / "dpcnn-worker-") in logs[1]  # the scratch folder is under the worker's TMPDIR
    assert not list(tmp_path.glob("tmp*/dpcnn-worker-*"))  # and removed at the end


def test_a_killed_worker_resumes_from_the_last_backup(tmp_path, data_root, tiny_data):
    run = tmp_path / "killed"
    extra = ("train.stage1_schedule=6:0.1", "train.backup_every=2")
    procs = start_workers(run, data_root, tmp_path, extra)
    state_file = run / "backup" / "stage1" / "state.json"
    deadline, state = time.time() + 400, None
    while time.time() < deadline and all(p.poll() is None for p in procs):
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["epoch"] >= 2:
            break
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)  # the non-chief worker dies mid-stage
    codes = wait(procs, timeout=120)  # the chief notices the lost peer (or is stopped here)
    assert state and state["epoch"] >= 2, "the cluster was not caught mid-stage"
    assert codes[1] == -signal.SIGKILL and not (run / "stage1" / "done.json").exists()
    at_kill = json.loads(state_file.read_text())
    codes = wait(start_workers(run, data_root, tmp_path, extra))
    log0 = (tmp_path / "worker0.log").read_text()
    assert codes == [0, 0], log0[-3000:]
    assert f"resuming at epoch {at_kill['epoch'] + 1}, step {at_kill['step']}" in log0
    assert (run / "stage2" / "done.json").is_file()
    rows = losses(run)
    assert [(r["stage"], r["epoch"]) for r in rows] == [("1", str(e)) for e in range(6)] + [("2", "0")]
