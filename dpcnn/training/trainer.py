"""Two-stage training (PAPER_SPEC §3-5) with Keras' ``Model.fit`` and a custom ``train_step``.

Stage I: instance loss on both branches (weights image 1 : text 1); the backbone is frozen in
the paper presets (its BN mode: ``model.backbone_bn``), trained like a new layer in the CPU
presets that start from random weights. Stage II: starts from stage I's final weights, adds
the ranking loss with hard negatives, fine-tunes everything with the stage-II multipliers.

Resume: re-running the same command continues an unfinished stage at the exact step of its last
backup (weights, optimiser state, epoch-mean metrics); the data of each step is a pure function
of (seed, epoch, step), so the continued run matches an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from dpcnn import callbacks as cb
from dpcnn import run_dir as rd
from dpcnn.config import Config
from dpcnn.data import pipeline
from dpcnn.data.prepared import PreparedData
from dpcnn.distribute import make_strategy, precision_policy
from dpcnn.encoders import Encoders
from dpcnn.model.build import build_dual_path
from dpcnn.model.dual_path import DualPath
from dpcnn.model.image_branch import BACKBONE_NAME
from dpcnn.optimizer import make_optimizer, parameter_groups, schedule_epochs
from dpcnn.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

HISTORY = "history.csv"


@dataclass
class StageResult:
    stage: int
    epochs: int
    steps_per_epoch: int
    seconds: float
    final_logs: dict


def by_identity(cfg: Config) -> bool:
    """CUHK-PEDES trains on person IDs: a sample's caption may come from any image of the ID."""
    return cfg.data.dataset == "cuhk-pedes"


def configure_backbone(model: DualPath, cfg: Config, stage: int) -> None:
    """Trainability and BN behaviour of the backbone for a stage (PAPER_SPEC §5)."""
    backbone = model.image_encoder.get_layer(BACKBONE_NAME)
    bn_layers = [layer for layer in _leaves(backbone) if isinstance(layer, keras.layers.BatchNormalization)]
    if stage == 1 and cfg.train.stage1_backbone_lr == 0.0:
        if cfg.model.backbone_bn == "frozen":
            backbone.trainable = False  # Keras: BN runs on its running statistics
            return
        # MatConvNet: frozen weights, BN on batch statistics, running statistics untouched.
        backbone.trainable = True
        for layer in bn_layers:
            layer.momentum = 1.0
        return
    backbone.trainable = True
    momentum = cfg.model.bn_momentum if stage == 1 else cfg.train.stage2_backbone_bn_momentum
    for layer in bn_layers:
        layer.momentum = momentum


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def trim_history(path: Path, stage: int, epoch: int) -> None:
    """Drop rows of ``stage`` with epoch ≥ ``epoch`` (they will be trained again after a resume)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    try:
        i_stage, i_epoch = header.index("stage"), header.index("epoch")
    except ValueError:
        return
    kept = [r for r in body if not (r[i_stage] == str(stage) and int(r[i_epoch]) >= epoch)]
    if len(kept) != len(body):
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(kept)
        atomic_write_text(path, buf.getvalue())


def save_model_weights(model: DualPath, path: Path) -> None:
    """The model's weights without optimiser state, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    optimizer = model.optimizer
    model.optimizer = None
    try:
        model.save_weights(str(tmp))
    finally:
        model.optimizer = optimizer
    tmp.replace(path)


def run_stage(model: DualPath, data: PreparedData, cfg: Config, run: Path, stage: int, verbose: int = 1) -> StageResult:
    """Train one stage to its last epoch (resuming from a backup if there is one)."""
    train = data.splits["train"]
    schedule = cfg.train.stage1_schedule if stage == 1 else cfg.train.stage2_schedule
    epochs = schedule_epochs(schedule)
    steps = pipeline.steps_per_epoch(train.num_images, cfg.train.batch_size, cfg.train.steps_per_epoch)
    configure_backbone(model, cfg, stage)
    groups = parameter_groups(model, stage, cfg.train)
    optimizer = make_optimizer(groups, cfg.train, schedule, steps)
    weights = cfg.train.stage1_loss_weights if stage == 1 else cfg.train.stage2_loss_weights
    model.configure_stage(stage, [g.variable for g in groups], weights, cfg.train.margin,
                          cfg.train.negative_mining)
    model.compile(optimizer=optimizer, jit_compile=False)
    log.info("stage %d: %d epochs × %d steps, %d trainable tensors (%d parameters)", stage, epochs, steps,
             len(groups), sum(int(np.prod(g.variable.shape)) for g in groups))

    backup = rd.backup_dir(run, stage)
    state = cb.read_state(backup)
    first_epoch, skip = 0, 0
    metric_state = None
    if state is not None:
        cb.restore(model, backup, state)
        first_epoch, skip = int(state["epoch"]), int(state["step"])
        metric_state = state["metric_state"] if skip else None
        log.info("stage %d: resuming at epoch %d, step %d", stage, first_epoch + 1, skip)
    trim_history(run / HISTORY, stage, first_epoch)

    make = pipeline.stage1_dataset if stage == 1 else pipeline.stage2_dataset
    val = data.splits["val"].subset(cfg.train.val_images) if data.splits["val"].num_images else None
    encoders = Encoders(model.image_encoder, model.text_encoder, cfg)
    reid = "reid" in cfg.eval.protocols
    guard = cb.NaNGuard()
    start = time.time()
    logs: dict = {}
    history = None
    while first_epoch < epochs:
        # A resumed, partial epoch is its own fit() so that Keras counts its steps right.
        last = first_epoch + 1 if skip else epochs
        dataset = make(train, cfg, first_epoch, last, skip_steps=skip, by_identity=by_identity(cfg))
        callbacks = [
            cb.ValidationRetrieval(encoders, val, stage, cfg.train.validate_every, reid, epochs),
            guard,
            keras.callbacks.CSVLogger(str(run / HISTORY), append=True),
            keras.callbacks.TensorBoard(str(run / "tb" / f"stage{stage}"), write_graph=False, update_freq="epoch"),
            cb.ResumableBackup(backup, cfg.train.backup_every, guard, step_offset=skip,
                               pending_metric_state=metric_state),
        ]
        history = model.fit(dataset, epochs=last, initial_epoch=first_epoch, steps_per_epoch=steps - skip,
                            callbacks=callbacks, verbose=verbose, shuffle=False)
        if guard.diverged_at is not None:
            _handle_divergence(model, run, stage, backup, guard)
        logs = {k: v[-1] for k, v in history.history.items()} if history.history else logs
        first_epoch, skip, metric_state = last, 0, None
    seconds = time.time() - start
    out = rd.stage_dir(run, stage)
    save_model_weights(model, out / rd.WEIGHTS)
    result = StageResult(stage, epochs, steps, seconds, {k: float(v) for k, v in logs.items()})
    atomic_write_json(out / rd.DONE, {"stage": stage, "epochs": epochs, "steps_per_epoch": steps,
                                      "seconds_this_session": round(seconds, 1), "final": result.final_logs})
    shutil.rmtree(backup, ignore_errors=True)
    if backup.parent.exists() and not any(backup.parent.iterdir()):
        backup.parent.rmdir()
    log.info("stage %d finished in %.0f s", stage, seconds)
    return result


def _handle_divergence(model: DualPath, run: Path, stage: int, backup: Path, guard: cb.NaNGuard) -> None:
    state = cb.read_state(backup)
    where = f"stage {stage}, epoch {guard.diverged_at[0] + 1}, batch {guard.diverged_at[1] + 1}"
    if state is None:
        raise cb.DivergedError(f"the loss became NaN at {where} before any backup was written: "
                               "lower the learning rate (train.stage{stage}_schedule) and train again with --overwrite")
    cb.restore(model, backup, state)
    keep = rd.stage_dir(run, stage) / "last_good.weights.h5"
    save_model_weights(model, keep)
    raise cb.DivergedError(
        f"the loss became NaN at {where}. The last good weights (epoch {state['epoch'] + 1}, step {state['step']}) "
        f"are kept in {keep} and in {backup}. Lower the learning rate or check the data, then train again."
    )


def build_for(cfg: Config, data: PreparedData) -> DualPath:
    return build_dual_path(cfg, data.num_classes, len(data.vocab), data.word_dim, data.pixel_mean, data.embeddings)


def train(cfg: Config, run: str | Path, stage: str = "all", overwrite: bool = False, verbose: int = 1,
          data: PreparedData | None = None) -> DualPath:
    """``dpcnn train``: prepare if needed, then train the requested stage(s) into ``run``."""
    from dpcnn.prepare import ensure_prepared

    run = Path(run)
    stages = (1, 2) if stage == "all" else (int(stage),)
    if data is None:  # before the run folder exists: missing data must not leave a half-made run
        data = ensure_prepared(cfg)
    rd.open_run(run, cfg, stages, overwrite)
    rd.write_env(run)
    shutil.copyfile(data.directory / "data_report.json", run / "data_report.json")
    strategy = make_strategy(cfg.train)
    keras.utils.set_random_seed(cfg.train.seed)
    with precision_policy(cfg.train.mixed_precision), strategy.scope():
        model = build_for(cfg, data)
        for s in stages:
            if rd.stage_done(run, s):
                log.info("stage %d already finished in %s", s, run)
                model.load_weights(str(rd.stage_dir(run, s) / rd.WEIGHTS))
                continue
            if s == 2 and not rd.stage_done(run, 1):
                raise rd.RunDirError(f"stage 2 starts from stage 1's weights, which {run} does not have: "
                                     "run --stage 1 (or --stage all) first")
            if s == 2 and stages == (2,):
                model.load_weights(str(rd.stage_dir(run, 1) / rd.WEIGHTS))
            run_stage(model, data, cfg, run, s, verbose=verbose)
    return model


def load_trained(run: str | Path, stage: int | None = None, data: PreparedData | None = None) -> tuple[Config, DualPath, PreparedData]:
    """The config, model (weights of the last finished stage, or ``stage``) and data of a run folder."""
    from dpcnn.prepare import ensure_prepared

    run = Path(run)
    cfg = Config.load(run / "config.json")
    if stage is None:
        stage = 2 if rd.stage_done(run, 2) else 1
    if not rd.stage_done(run, stage):
        raise rd.RunDirError(f"{run} has no finished stage {stage}: train it first (`dpcnn train --run {run}`)")
    if data is None:
        data = ensure_prepared(cfg)
    model = build_for(cfg, data)
    model.load_weights(str(rd.stage_dir(run, stage) / rd.WEIGHTS))
    return cfg, model, data
