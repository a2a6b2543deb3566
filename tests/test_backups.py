"""Mid-stage backups: the wall-clock cadence (a fake clock), two slots written in turn, damaged
backups skipped on resume, and a truncated newest backup resumed from the previous one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from dpcnn.config import apply_overrides
from dpcnn.training import backups
from dpcnn.training.callbacks import Backup


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def drive(cb: Backup, clock: FakeClock, epochs: int, steps: int, seconds_per_step: float) -> list[tuple[int, int]]:
    """Play ``epochs`` × ``steps`` batches through the callback; the (epoch, step) of each backup written."""
    written = []
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.t += seconds_per_step
            before = cb.written
            cb.on_train_batch_end(batch)
            if cb.written > before:
                written.append((cb.newest["epoch"], cb.newest["step"]))
        before = cb.written
        cb.on_epoch_end(epoch)
        if cb.written > before:
            written.append((cb.newest["epoch"], cb.newest["step"]))
    return written


def test_the_clock_decides_when_a_backup_is_written(tmp_path, small_model):
    # 1-minute cadence, 25 s a step, 5 steps an epoch: due at t = 75 s (epoch 1 step 3), then 60 s after that
    # at t = 150 s (epoch 2 step 1), t = 225 s (epoch 2 step 4). An epoch end is a backup only when the clock is due:
    # neither epoch end is (50 s and 25 s since the last backup).
    clock = FakeClock()
    cb = Backup(tmp_path, every_steps=0, every_minutes=1.0, clock=clock)
    cb.set_model(small_model)
    assert drive(cb, clock, epochs=2, steps=5, seconds_per_step=25.0) == [(0, 3), (1, 1), (1, 4)]


def test_without_a_clock_steps_and_every_epoch_end_decide(tmp_path, small_model):
    # every 4 steps and at each epoch end; 5 steps an epoch: step 4, then the end (→ epoch 1, step 0), then
    # 4 steps later (epoch 2, step 4 — the counter restarts at each backup), then the end.
    clock = FakeClock()
    cb = Backup(tmp_path, every_steps=4, every_minutes=0.0, clock=clock)
    cb.set_model(small_model)
    assert drive(cb, clock, epochs=2, steps=5, seconds_per_step=1000.0) == [(0, 4), (1, 0), (1, 4), (2, 0)]


def test_two_slots_written_in_turn_with_their_records(tmp_path, small_model):
    clock = FakeClock()
    cb = Backup(tmp_path, every_steps=1, clock=clock)
    cb.set_model(small_model)
    for step in range(3):
        cb.on_train_batch_end(step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup-a.weights.h5", "backup-b.weights.h5", "state.json"]
    a, b = backups.read_record(tmp_path / "backup-a.weights.h5"), backups.read_record(tmp_path / "backup-b.weights.h5")
    assert (a["serial"], a["step"]) == (3, 3) and (b["serial"], b["step"]) == (2, 2)  # 1 → a, 2 → b, 3 → a
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["serial"], state["file"]) == (3, "backup-a.weights.h5")
    assert (state["previous"]["serial"], state["previous"]["file"]) == (2, "backup-b.weights.h5")
    assert state["bytes"] == (tmp_path / "backup-a.weights.h5").stat().st_size
    # a new callback on the same folder (a resumed run) continues the serials and writes the older slot
    cb2 = Backup(tmp_path, every_steps=1, clock=clock)
    cb2.set_model(small_model)
    cb2.on_train_batch_end(0)
    assert backups.read_record(tmp_path / "backup-b.weights.h5")["serial"] == 4


def _three_backups(folder: Path, model) -> None:
    cb = Backup(folder, every_steps=1, clock=FakeClock())
    cb.set_model(model)
    for step in range(3):
        cb.on_train_batch_end(step)


@pytest.mark.parametrize("damage", ["truncate", "empty", "zeros"])
def test_a_damaged_newest_backup_falls_back_to_the_previous(tmp_path, small_model, caplog, damage):
    _three_backups(tmp_path, small_model)
    newest = tmp_path / "backup-a.weights.h5"  # serial 3
    size = newest.stat().st_size
    with open(newest, "r+b") as f:
        if damage == "truncate":
            f.truncate(size // 2)
        elif damage == "empty":
            f.truncate(0)
        else:  # the end of the file overwritten with zeros: the arrays no longer read
            f.seek(size // 2)
            f.write(b"\0" * (size - size // 2))
    with caplog.at_level(logging.WARNING):
        usable = backups.usable_backups(tmp_path)
    if damage == "zeros" and usable and usable[0]["serial"] == 3:
        pytest.fail("zeros over the second half of the file were not noticed")
    assert [r["serial"] for r in usable] == [2]
    assert "cannot be used" in caplog.text or "never finished" in caplog.text


def test_no_usable_backup_restarts_the_stage_with_one_warning(tmp_path, small_model, caplog):
    _three_backups(tmp_path, small_model)
    for slot in backups.SLOTS:
        (tmp_path / slot).write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert backups.usable_backups(tmp_path) == []
    assert "restarts from its first step" in caplog.text
    assert "Traceback" not in caplog.text


def test_discard_empties_each_file_before_removing_it(tmp_path, small_model):
    folder = tmp_path / "backup"
    _three_backups(folder, small_model)
    keeper = tmp_path / "second-name.h5"
    keeper.hardlink_to(folder / "backup-a.weights.h5")  # a second name sees what the trash would keep
    assert keeper.stat().st_size > 0
    backups.discard(folder)
    assert not folder.exists() and keeper.stat().st_size == 0


@pytest.mark.slow
def test_a_truncated_latest_backup_resumes_from_the_previous_one(tmp_path, tiny_cfg, tiny_data, caplog):
    """Two backups written, the session dies, the newest file is cut short (an upload that never
    finished): the next `train` resumes from the one before, and the stage finishes."""
    from dpcnn.training.trainer import train

    cfg = apply_overrides(tiny_cfg, ["train.backup_every=2", "train.validate_every=100"])
    original = Backup.save
    calls = {"n": 0}

    def dies_at_the_third(self, epoch, step):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the session ends before the third backup
        return original(self, epoch, step)

    run = tmp_path / "run"
    Backup.save = dies_at_the_third
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run, stage="1", data=tiny_data, verbose=0)
    finally:
        Backup.save = original
    folder = run / "backup" / "stage1"
    newest = backups.newest_record(folder)
    assert (newest["serial"], newest["epoch"], newest["step"]) == (2, 0, 4)  # 6 steps an epoch, every 2
    path = folder / newest["file"]
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 3)
    assert not (run / "train.lock").exists()  # released although the run died
    with caplog.at_level(logging.INFO):
        train(cfg, run, stage="1", data=tiny_data, verbose=0)
    assert "cannot be used" in caplog.text and "resuming at epoch 1, step 2" in caplog.text
    assert (run / "stage1" / "done.json").is_file() and not (run / "backup").exists()
    assert np.isfinite(json.loads((run / "stage1" / "done.json").read_text())["final"]["loss"])
