"""Keras callbacks of the training loop: step-exact verified backups, the NaN guard, validation R@K.

Order in ``fit``: validation → NaN guard → CSVLogger → TensorBoard → backup, so that a row of
history.csv is written before the backup that follows it (a resumed run trims the rows of the
epochs it redoes).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import keras
import numpy as np

from dpcnn.errors import DivergedError  # noqa: F401  (raised by the trainer; re-exported)
from dpcnn.training import backups

log = logging.getLogger(__name__)

STATE = backups.STATE


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss and remember where (the trainer restores the last backup)."""

    def __init__(self):
        super().__init__()
        self.diverged_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = (self._epoch, batch)
            log.error("loss is %s at epoch %d, batch %d: stopping", loss, self._epoch + 1, batch + 1)
            self.model.stop_training = True


class Backup(keras.callbacks.Callback):
    """Step-exact, verified backups of a stage: weights, optimiser state and the epoch-mean metrics.

    A backup is written when ``every_minutes`` of wall-clock time have passed since the last one
    (or since the stage (re)started), after every ``every_steps`` steps, and at each epoch end
    when no clock is set (``every_minutes=0``) or the clock is due: 0 turns either cadence off.
    Each backup goes into the slot that does not hold the newest one (:mod:`dpcnn.training.backups`),
    so a failure while writing never damages the last good backup. ``clock`` (seconds, monotonic)
    is replaceable for tests. ``keep``: the slot the stage resumed from (written over last).
    ``write=False`` is not needed: a non-chief worker passes its own scratch folder, as
    tf.distribute requires every worker to take part in saving.
    """

    def __init__(self, folder: str | Path, every_steps: int, every_minutes: float = 0.0, guard: NaNGuard | None = None,
                 step_offset: int = 0, pending_metric_state: list | None = None, keep: dict | None = None,
                 clock=time.monotonic):
        super().__init__()
        self.dir = Path(folder)
        self.every_steps, self.every_seconds = int(every_steps), 60.0 * float(every_minutes)
        self.guard = guard
        self.step_offset = int(step_offset)
        self.pending_metric_state = pending_metric_state
        self.clock = clock
        self.newest = keep if keep is not None else backups.newest_record(self.dir)
        self._serial = max(self.newest["serial"] if self.newest else 0,
                           (backups.newest_record(self.dir) or {"serial": 0})["serial"])
        self._epoch = self._since = 0
        self._last = clock()
        self.written = 0

    def _clock_due(self) -> bool:
        return self.every_seconds > 0 and self.clock() - self._last >= self.every_seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.pending_metric_state is not None:  # the partial epoch's means so far
            for metric, values in zip(self.model.metrics, self.pending_metric_state):
                for var, value in zip(metric.variables, values):
                    var.assign(np.asarray(value, dtype=var.dtype))
            self.pending_metric_state = None

    def on_train_batch_end(self, batch, logs=None):
        self._since += 1
        if (self.every_steps and self._since >= self.every_steps) or self._clock_due():
            self.save(self._epoch, self.step_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        if self.every_seconds == 0 or self._clock_due():
            self.save(epoch + 1, 0)

    def save(self, epoch: int, step: int) -> None:
        self._since, self._last = 0, self.clock()
        if self.guard is not None and self.guard.diverged_at is not None:
            return  # never back up diverged weights
        metric_state = [[np.asarray(v).tolist() for v in m.variables] for m in self.model.metrics]
        record = {"serial": self._serial + 1, "epoch": epoch, "step": step,
                  "file": backups.next_slot(self.newest["file"] if self.newest else None), "metric_state": metric_state}
        previous = {k: v for k, v in self.newest.items() if k != "metric_state"} if self.newest else None
        started = self.clock()
        self.newest = backups.write(self.dir, self.model.save_weights, record, previous)
        self._serial += 1
        self.written += 1
        self._last = self.clock()
        seconds = self._last - started
        (log.info if seconds >= 1.0 else log.debug)(
            "backup %d (epoch %d, step %d): %.2f GB written in %.1f s to %s", self._serial, epoch + 1, step,
            self.newest["bytes"] / 1e9, seconds, self.dir / self.newest["file"])


def read_state(folder: str | Path) -> dict | None:
    """The newest usable backup of a stage (verified; damaged ones skipped with a warning), or None."""
    usable = backups.usable_backups(folder)
    return usable[0] if usable else None


def restore(task: keras.Model, folder: str | Path, state: dict) -> None:
    """Load the backed-up weights and optimiser state into a compiled stage."""
    task.load_weights(str(Path(folder) / state["file"]))


class ValidationRetrieval(keras.callbacks.Callback):
    """Adds val R@1/5/10 (both directions) and val rsum to the epoch logs (validation only, never test).

    Measured at the first epoch of each ``fit`` call (CSVLogger takes its columns from the first
    row), every ``every`` epochs and at the stage's last epoch; other rows get "NA". Adds
    ``stage`` and the global learning rate ``lr`` to every row.
    """

    def __init__(self, embedder, split, stage: int, every: int, reid: bool, last_epoch: int):
        super().__init__()
        self.embedder, self.split, self.stage = embedder, split, stage
        self.every, self.reid, self.last_epoch = every, reid, last_epoch
        self._first = True

    def on_epoch_end(self, epoch, logs=None):
        from dpcnn.evaluation import validation_metrics

        if logs is None:
            return
        logs["stage"] = self.stage
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        due = self.every > 0 and ((epoch + 1) % self.every == 0 or epoch + 1 == self.last_epoch)
        diverged = not math.isfinite(float(logs.get("loss", 0.0)))
        if self.split is not None and self.every > 0 and (self._first or due) and not diverged:
            values = validation_metrics(self.embedder, self.split, self.reid)
            log.info("stage %d epoch %d validation: %s", self.stage, epoch + 1,
                     ", ".join(f"{k[4:]} {v:.1f}" for k, v in values.items()))
            logs.update(values)
        self._first = False
