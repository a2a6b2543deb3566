"""Keras callbacks of the training loop: step-exact atomic backups, the NaN guard, validation R@K.

Order in ``fit``: validation → NaN guard → CSVLogger → TensorBoard → backup, so that a row of
history.csv is written before the backup that follows it (a resumed run trims the rows of the
epochs it redoes).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np

from dpcnn.errors import DivergedError  # noqa: F401  (raised by the trainer; re-exported)
from dpcnn.utils import atomic_write_json, read_json

log = logging.getLogger(__name__)

STATE = "state.json"


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
    """Step-exact, atomic backups of a stage: weights, optimiser state and the epoch-mean metrics.

    Every ``every`` steps and at each epoch end a new ``ckpt-N.weights.h5`` is written, then
    ``state.json`` (the commit point, written atomically) records {epoch, step, file, metric
    states}: ``step`` steps of ``epoch`` are done; then the older checkpoint is deleted. A failure
    while writing (a full disk) leaves the previous checkpoint and state intact. ``write=False``
    (a non-chief worker) saves to its own scratch folder, as tf.distribute requires every worker
    to take part in saving.
    """

    def __init__(self, folder: str | Path, every: int, guard: NaNGuard | None = None, step_offset: int = 0,
                 pending_metric_state: list | None = None):
        super().__init__()
        self.dir = Path(folder)
        self.every = int(every)
        self.guard = guard
        self.step_offset = int(step_offset)
        self.pending_metric_state = pending_metric_state
        state = read_state(self.dir)
        self._serial = state["serial"] if state else 0
        self._epoch = self._since = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.pending_metric_state is not None:  # the partial epoch's means so far
            for metric, values in zip(self.model.metrics, self.pending_metric_state):
                for var, value in zip(metric.variables, values):
                    var.assign(np.asarray(value, dtype=var.dtype))
            self.pending_metric_state = None

    def on_train_batch_end(self, batch, logs=None):
        self._since += 1
        if self._since >= self.every:
            self._since = 0
            self.save(self._epoch, self.step_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = self._since = 0
        self.save(epoch + 1, 0)

    def save(self, epoch: int, step: int) -> None:
        if self.guard is not None and self.guard.diverged_at is not None:
            return  # never back up diverged weights
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{self._serial + 1}.weights.h5"
        try:
            self.model.save_weights(str(self.dir / name))
            metric_state = [[np.asarray(v).tolist() for v in m.variables] for m in self.model.metrics]
            atomic_write_json(self.dir / STATE, {"epoch": epoch, "step": step, "file": name,
                                                 "serial": self._serial + 1, "metric_state": metric_state})
        except BaseException:
            (self.dir / name).unlink(missing_ok=True)  # the previous checkpoint and state stay valid
            raise
        self._serial += 1
        for old in self.dir.glob("ckpt-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def read_state(folder: str | Path) -> dict | None:
    """The committed backup state, or None. A state whose weights file is missing is ignored."""
    path = Path(folder) / STATE
    if not path.exists():
        return None
    state = read_json(path)
    if not (Path(folder) / state["file"]).exists():
        log.warning("backup state in %s points to a missing file; starting the stage afresh", folder)
        return None
    return state


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
        if self.split is not None and (self._first or due) and not diverged:
            values = validation_metrics(self.embedder, self.split, self.reid)
            log.info("stage %d epoch %d validation: %s", self.stage, epoch + 1,
                     ", ".join(f"{k[4:]} {v:.1f}" for k, v in values.items()))
            logs.update(values)
        self._first = False
