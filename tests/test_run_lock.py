"""One run folder, one writer: the training lock (dpcnn.run_lock)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from dpcnn.errors import RunError
from dpcnn.run_lock import LOCK, RunLock


def write_lock(folder, host: str, pid: int, age_s: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "since": "2026-12-07T08:00:00+00:00", "token": "other"}))
    then = time.time() - age_s
    os.utime(path, (then, then))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_second_train_of_a_locked_run_folder_exits_2_with_one_line(tmp_path, tiny_cfg, tiny_data, live_pid, capsys):
    from dpcnn.cli import main

    run = tmp_path / "run"
    write_lock(run, socket.gethostname(), live_pid)
    assert main(["train", "--config", "tiny", "--run", str(run), "--set", f"data.root={tiny_cfg.data.root}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line.lower() and not re.match(r"^\d\d:\d\d:\d\d ", line)]
    assert len(lines) == 1 and lines[0].startswith("dpcnn train: error: "), err
    assert f"PID {live_pid}" in lines[0] and socket.gethostname() in lines[0] and "since 2026-12-07T08:00:00" in lines[0]
    assert json.loads((run / LOCK).read_text())["pid"] == live_pid  # the holder's lock is left alone
    assert not (run / "config.json").exists()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, dead_pid, caplog):
    write_lock(tmp_path, socket.gethostname(), dead_pid)  # fresh heartbeat, but the process is gone
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"process {dead_pid} on this host no longer exists" in caplog.text
    assert not (tmp_path / LOCK).exists()


def test_another_hosts_lock_is_stale_only_without_a_heartbeat(tmp_path, caplog):
    write_lock(tmp_path, "colab-vm-that-died", 1234, age_s=60)
    with pytest.raises(RunError, match="colab-vm-that-died, PID 1234"):
        RunLock(tmp_path, stale_after_s=600).acquire()
    write_lock(tmp_path, "colab-vm-that-died", 1234, age_s=601)
    with caplog.at_level(logging.WARNING), RunLock(tmp_path, stale_after_s=600):
        assert json.loads((tmp_path / LOCK).read_text())["host"] == socket.gethostname()
    assert "no sign of life for 10 min" in caplog.text


def test_the_heartbeat_moves_the_locks_mtime(tmp_path):
    with RunLock(tmp_path, heartbeat_s=0.05):
        path = tmp_path / LOCK
        os.utime(path, (1000.0, 1000.0))
        deadline = time.time() + 10
        while path.stat().st_mtime == 1000.0 and time.time() < deadline:
            time.sleep(0.05)
        assert path.stat().st_mtime > time.time() - 60


def test_a_new_folder_that_never_became_a_run_is_removed(tmp_path):
    folder = tmp_path / "new" / "run"
    with RunLock(folder):
        assert folder.is_dir()
    assert not folder.exists()


def test_eval_and_load_work_while_a_run_trains(tiny_run, tmp_path, live_pid):
    import dpcnn

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    write_lock(run, socket.gethostname(), live_pid)
    features = dpcnn.load(run).encode_texts(["a red circle"])
    assert features.shape[0] == 1
    assert (run / LOCK).exists()
