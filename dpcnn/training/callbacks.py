"""Keras callbacks of the training loop: resumable atomic backups, NaN guard, validation R@K.

Order in ``fit``: validation → NaN guard → CSVLogger → TensorBoard → backup, so that a row of
history.csv is written before the backup that follows it (a resumed run trims rows of epochs
it redoes; see :func:`dpcnn.training.trim_history`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np

from dpcnn.utils import atomic_write_json, read_json

log = logging.getLogger(__name__)

META = "state.json"


from dpcnn.errors import DivergedError  # noqa: E402,F401  (re-exported)


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN that also records where it happened (so backups stop and weights are restored)."""

    def __init__(self):
        super().__init__()
        self.diverged_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = (self._epoch, batch)
            log.error("loss is %s at epoch %d, batch %d: stopping", loss, self._epoch, batch)
            self.model.stop_training = True


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore with atomic, step-exact backups.

    Every ``save_freq`` steps and at each epoch end the weights *and* optimiser state go to a new
    ``ckpt-N.weights.h5``, then ``state.json`` (the commit point, written atomically) records
    {epoch, step, file, metric states}: ``step`` steps of ``epoch`` are done. Restoring is done
    by the trainer *before* fit (it needs the position to build the dataset), so
    ``on_train_begin`` does not reload; ``step_offset`` tells the callback that the first epoch
    of this fit starts mid-way.
    """

    def __init__(self, backup_dir: str | Path, save_freq: int, guard: NaNGuard | None = None,
                 step_offset: int = 0, pending_metric_state: list | None = None):
        super().__init__(str(backup_dir), save_freq=int(save_freq), delete_checkpoint=False)
        self.dir = Path(backup_dir)
        self.guard = guard
        self.step_offset = int(step_offset)
        self.pending_metric_state = pending_metric_state
        self._epoch = 0
        self._step = 0
        self._since = 0
        self._serial = 0

    # restoration is the trainer's job (see read_state / restore)
    def on_train_begin(self, logs=None):
        state = read_state(self.dir)
        self._serial = state["serial"] if state else 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.pending_metric_state is not None:
            for metric, values in zip(self.model.metrics, self.pending_metric_state):
                for var, value in zip(metric.variables, values):
                    var.assign(np.asarray(value, dtype=var.dtype))
            self.pending_metric_state = None

    def on_train_batch_end(self, batch, logs=None):
        self._step = self.step_offset + batch + 1
        self._since += 1
        if self._since >= self.save_freq:
            self._since = 0
            self._save(self._epoch, self._step)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        self._since = 0
        self._save(epoch + 1, 0)

    def on_train_end(self, logs=None):
        pass

    def _save(self, epoch: int, step: int) -> None:
        if self.guard is not None and self.guard.diverged_at is not None:
            return  # never back up diverged weights
        self.dir.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        name = f"ckpt-{self._serial}.weights.h5"
        self.model.save_weights(str(self.dir / name))
        metric_state = [[np.asarray(v).tolist() for v in m.variables] for m in self.model.metrics]
        atomic_write_json(self.dir / META, {"epoch": epoch, "step": step, "file": name,
                                            "serial": self._serial, "metric_state": metric_state})
        for old in self.dir.glob("ckpt-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def read_state(backup_dir: str | Path) -> dict | None:
    """The committed backup state, or None. A state whose weights file is missing is ignored."""
    path = Path(backup_dir) / META
    if not path.exists():
        return None
    state = read_json(path)
    if not (Path(backup_dir) / state["file"]).exists():
        log.warning("backup state in %s points to a missing file; starting the stage afresh", backup_dir)
        return None
    return state


def restore(model: keras.Model, backup_dir: str | Path, state: dict) -> None:
    """Load the backed-up weights and optimiser state into a compiled model."""
    if not model.optimizer.built:
        model.optimizer.build(model.train_variables)
    model.load_weights(str(Path(backup_dir) / state["file"]))


class ValidationRetrieval(keras.callbacks.Callback):
    """Adds val R@1/5/10 (both directions) and val rsum to the epoch logs.

    Measured at the first epoch of each ``fit`` call (so CSVLogger, which takes its columns from
    the first row, always has them), every ``every`` epochs and at the stage's last epoch; other
    rows get "NA". Also adds ``stage`` and the global learning rate ``lr`` to every row.
    """

    def __init__(self, encoders, split, stage: int, every: int, reid: bool, last_epoch: int):
        super().__init__()
        self.encoders = encoders
        self.split = split
        self.stage = stage
        self.every = every
        self.reid = reid
        self.last_epoch = last_epoch
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
            values = validation_metrics(self.encoders, self.split, self.reid)
            log.info("stage %d epoch %d validation: %s", self.stage, epoch + 1,
                     ", ".join(f"{k[4:]} {v:.1f}" for k, v in values.items()))
            logs.update(values)
        self._first = False
