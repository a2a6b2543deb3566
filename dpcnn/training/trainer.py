"""``dpcnn train``: the two stages of PAPER_SPEC §3-5 with Keras' ``fit``, resumable at the step.

Stage I trains with the instance loss, stage II starts from stage I's final weights and adds the
ranking loss with mined negatives (:mod:`dpcnn.training.stages` holds the steps). Re-running the
same command continues an unfinished stage at the exact step of its last backup (weights,
optimiser state, epoch-mean metrics); the data of each step is a pure function of (seed, epoch,
step), so the continued run matches an uninterrupted one. With ``train.strategy=multiworker``
only the chief writes the run folder; the other workers write their backups to scratch folders.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import shutil
import tempfile
import time
from pathlib import Path

import keras

from dpcnn.config import Config
from dpcnn.data import pipeline
from dpcnn.errors import DivergedError, RunError
from dpcnn.run import DATA_REPORT, Run
from dpcnn.run_lock import RunLock
from dpcnn.training import backups, callbacks
from dpcnn.training.distribute import is_chief, make_strategy, precision_policy
from dpcnn.training.optimizer import schedule_epochs
from dpcnn.training.stages import compile_stage
from dpcnn.utils import atomic_save, atomic_write_text

log = logging.getLogger(__name__)


def trim_history(path: Path, stage: int, epoch: int) -> None:
    """Drop rows of ``stage`` with epoch ≥ ``epoch`` (they will be trained again after a resume)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "stage" not in rows[0] or "epoch" not in rows[0]:
        return
    i_stage, i_epoch = rows[0].index("stage"), rows[0].index("epoch")
    kept = [r for r in rows[1:] if not (r[i_stage] == str(stage) and int(r[i_epoch]) >= epoch)]
    if len(kept) != len(rows) - 1:
        buf = io.StringIO()
        csv.writer(buf).writerows([rows[0], *kept])
        atomic_write_text(path, buf.getvalue())


def save_model_weights(model, path: Path) -> None:
    """A DualPath's weights (no optimiser state), written atomically."""
    atomic_save(path, model.save_weights)


def run_stage(model, data, cfg: Config, run: Run, stage: int, verbose: int = 1, chief: bool = True) -> dict:
    """Train one stage of ``model`` (a DualPath) to its last epoch, resuming from a backup if there is one."""
    from dpcnn.embedder import Embedder
    from dpcnn.model.features import feature_models

    train = data.splits["train"]
    schedule = cfg.train.stage1_schedule if stage == 1 else cfg.train.stage2_schedule
    epochs = schedule_epochs(schedule)
    steps = pipeline.steps_per_epoch(train.num_images, cfg.train.batch_size, cfg.train.steps_per_epoch)
    task = compile_stage(model, cfg, stage, steps)
    log.info("stage %d: %d epochs × %d steps", stage, epochs, steps)

    backup = run.backup_dir(stage)
    state = _resume(task, backup)
    first_epoch, skip, metric_state = 0, 0, None
    if state is not None:
        first_epoch, skip = int(state["epoch"]), int(state["step"])
        metric_state = state["metric_state"] if skip else None
        log.info("stage %d: resuming at epoch %d, step %d", stage, first_epoch + 1, skip)
    scratch = None if chief else Path(tempfile.mkdtemp(prefix=f"dpcnn-worker-stage{stage}-"))
    if scratch is not None:
        log.info("stage %d: this worker is not the chief: its backups go to the scratch folder %s", stage, scratch)
    if chief:
        trim_history(run.history_path, stage, first_epoch)

    make = pipeline.stage1_dataset if stage == 1 else pipeline.stage2_dataset
    val = data.splits["val"].subset(cfg.train.val_images) if data.splits["val"].num_images else None
    embedder = Embedder(*feature_models(model.image_encoder, model.text_encoder, cfg), data.vocab, cfg.eval.batch_size)
    by_identity = data.by_identity
    guard = callbacks.NaNGuard()
    start, logs, hook = time.time(), {}, None
    while first_epoch < epochs:
        last = first_epoch + 1 if skip else epochs  # a resumed, partial epoch is its own fit()
        dataset = make(train, cfg, first_epoch, last, skip_steps=skip, by_identity=by_identity)
        hooks = [callbacks.ValidationRetrieval(embedder, val, stage, cfg.train.validate_every,
                                               "reid" in cfg.eval.protocols, epochs), guard]
        if chief:
            hooks += [keras.callbacks.CSVLogger(str(run.history_path), append=True),
                      keras.callbacks.TensorBoard(str(run.tensorboard_dir / f"stage{stage}"), write_graph=False)]
        previous, hook = hook, callbacks.Backup(scratch or backup, cfg.train.backup_every, cfg.train.backup_minutes, guard,
                                                step_offset=skip, pending_metric_state=metric_state, keep=state)
        if previous is not None:  # one clock for the whole stage: a partial epoch's fit does not restart it
            hook.newest, hook._serial, hook._last = previous.newest, previous._serial, previous._last
        hooks.append(hook)
        history = task.fit(dataset, epochs=last, initial_epoch=first_epoch, steps_per_epoch=steps - skip,
                           callbacks=hooks, verbose=verbose if chief else 0, shuffle=False)
        if guard.diverged_at is not None:
            _stop_diverged(task, model, run, stage, backup, guard)
        logs = {k: float(v[-1]) for k, v in history.history.items()} or logs
        first_epoch, skip, metric_state = last, 0, None
    seconds = time.time() - start
    if chief:
        save_model_weights(model, run.weights_path(stage))
        run.mark_done(stage, {"epochs": epochs, "steps_per_epoch": steps, "seconds_this_session": round(seconds, 1),
                              "final": logs})
        backups.discard(backup)
        if backup.parent.is_dir() and not any(backup.parent.iterdir()):
            backup.parent.rmdir()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("stage %d finished in %.0f s", stage, seconds)
    return logs


def _resume(task, backup: Path) -> dict | None:
    """Load the newest usable backup of a stage into ``task``; its record, or None (start afresh).

    Damaged backups are skipped with a warning (:func:`dpcnn.training.backups.usable_backups`).
    A file that passed the check but still fails to load stops with a RunError (the model may
    hold part of it, so starting afresh in this process would be wrong).
    """
    record = callbacks.read_state(backup)
    if record is None:
        return None
    try:
        callbacks.restore(task, backup, record)
    except (OSError, ValueError, KeyError) as err:
        raise RunError(f"the backup {backup / record['file']} passed its check but does not load into this "
                       f"model ({str(err).splitlines()[0][:120]}): delete {backup} to restart the stage") from err
    return record


def _stop_diverged(task, model, run: Run, stage: int, backup: Path, guard: callbacks.NaNGuard) -> None:
    where = f"stage {stage}, epoch {guard.diverged_at[0] + 1}, batch {guard.diverged_at[1] + 1}"
    state = _resume(task, backup)
    if state is None:
        raise DivergedError(f"the loss became NaN at {where} before any backup was written: lower the learning "
                            f"rate (train.stage{stage}_schedule) and train again with --overwrite")
    keep = run.last_good_path(stage)
    save_model_weights(model, keep)
    raise DivergedError(f"the loss became NaN at {where}. The last good weights (epoch {state['epoch'] + 1}, "
                        f"step {state['step']}) are kept in {keep} and in {backup}. Lower the learning rate or "
                        "check the data, then train again.")


def stages_to_train(cfg: Config, stage: str) -> tuple[int, ...]:
    """The stages ``--stage`` asks for: all → (1, 2), or (2,) under ``train.with_stage1=false``."""
    if stage == "all":
        return (1, 2) if cfg.train.with_stage1 else (2,)
    if int(stage) == 1 and not cfg.train.with_stage1:
        raise RunError("--stage 1 asks for stage I, which this config leaves out (train.with_stage1=false)")
    return (int(stage),)


def train(cfg: Config, run: str | Path, stage: str = "all", overwrite: bool = False, verbose: int = 1, data=None):
    """``dpcnn train``: prepare if needed, then train the requested stage(s) into ``run``; returns the DualPath."""
    from dpcnn.data.prepare import ensure_prepared

    stages = stages_to_train(cfg, stage)
    strategy = make_strategy(cfg.train)  # first: multi-worker collectives must be set up before other TF ops
    chief = is_chief(strategy)
    if data is None:  # before the run folder exists: missing data must not leave a half-made run
        data = ensure_prepared(cfg)
    with RunLock(run) if chief else contextlib.nullcontext():  # one writer per run folder
        return _train_locked(cfg, Run.for_training(run, cfg, stages, overwrite, write=chief), data, stages, verbose,
                             chief, strategy)


def _train_locked(cfg: Config, run: Run, data, stages: tuple[int, ...], verbose: int, chief: bool, strategy):
    """:func:`train` once the run folder is this process's."""
    from dpcnn.model.dual_path import build_dual_path

    if chief:
        run.write_env()
        run.write_inference_info(data)
        shutil.copyfile(data.directory / DATA_REPORT, run.data_report_path)
    keras.utils.set_random_seed(cfg.train.seed)
    trained = set()
    with precision_policy(cfg.train.mixed_precision), strategy.scope():
        model = build_dual_path(cfg, data)
        for s in stages:  # ``trained``: the stages whose weights the model holds now
            if run.stage_done(s):
                log.info("stage %d already finished in %s", s, run.path)
                model.load_weights(str(run.weights_path(s)))
                trained.add(s)
                continue
            if s == 2 and 1 not in trained and not cfg.train.with_stage1:
                log.info("stage 2 starts from the initial weights (train.with_stage1=false: no stage I)")
            elif s == 2 and 1 not in trained:
                if not run.stage_done(1):
                    raise RunError(f"stage 2 starts from stage 1's weights, which {run.path} does not have: "
                                   "run --stage 1 (or --stage all) first")
                model.load_weights(str(run.weights_path(1)))
            run_stage(model, data, cfg, run, s, verbose=verbose, chief=chief)
            trained.add(s)
    return model
