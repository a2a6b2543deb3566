"""A run folder and everything that reads it (DESIGN §1): layout, config, stages, models, features.

    DIR/config.json  env.json  data_report.json  history.csv  tb/  backup/stage{1,2}/
    DIR/train.lock                          while `dpcnn train` runs (dpcnn.run_lock)
    DIR/vocab.json  inference.json          what inference needs: the run works without its data
    DIR/captions.txt                        the training captions (the default caption corpus)
    DIR/stage1/  stage2/                    model.weights.h5 (the end of the stage) + done.json
    DIR/metrics.json  metrics.md  curves.png  examples.png      (stage II; stage I in stage1/)
    DIR/features/                           cached test-time features of evaluated splits

Training creates it with :meth:`Run.for_training`; eval, search, export, alt text, the demo and
the notebooks start from :meth:`Run.open`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from functools import cached_property
from pathlib import Path

import numpy as np

from dpcnn.config import ENVIRONMENT_KEYS, Config, differences
from dpcnn.errors import RunError
from dpcnn.run_lock import LOCK
from dpcnn.utils import atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger(__name__)

CONFIG, ENV, DATA_REPORT, HISTORY = "config.json", "env.json", "data_report.json", "history.csv"
VOCAB, INFERENCE, CAPTIONS = "vocab.json", "inference.json", "captions.txt"
WEIGHTS, DONE, LAST_GOOD = "model.weights.h5", "done.json", "last_good.weights.h5"
CURVES, TENSORBOARD, FEATURES, BACKUP, TIMINGS = "curves.png", "tb", "features", "backup", "timings.json"
METRICS, EXAMPLES = "metrics", "examples"  # + ".json" / ".md" / ".png", and "-<split>" for another split


class Run:
    """One run folder. Cheap to create; files are read when asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """An existing run folder; RunError if ``path`` is not one."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"run folder {run.path} does not exist: train one with `dpcnn train --config … --run {run.path}`")
        if not run.config_path.is_file():
            raise RunError(f"{run.path} is not a dpcnn run folder (no {CONFIG}): pass the --run folder of `dpcnn train`")
        return run

    @classmethod
    def for_training(cls, path: str | os.PathLike, cfg: Config, stages: tuple[int, ...], overwrite: bool,
                     write: bool = True) -> Run:
        """Create the folder, or check that it holds an unfinished run of ``cfg``.

        A new folder gets ``config.json``. The same run resumes; the run-environment keys
        (``config.ENVIRONMENT_KEYS``: strategy, mixed precision, TPU, backup and validation
        cadence) may change, with a logged note; any other difference, or stages that are all
        finished, is a RunError unless ``overwrite`` (which empties the folder first).
        ``write=False`` (a non-chief worker of a multi-worker cluster) neither checks nor writes:
        the chief does both, and every worker reads the chief's backups (a shared file system).
        """
        run = cls(path)
        if not write:  # a non-chief worker: the chief checks and writes the folder
            run.__dict__["config"] = cfg
            return run
        contents = [c for c in run.path.iterdir() if c.name != LOCK] if run.path.exists() else []
        if contents:
            if overwrite:
                log.warning("--overwrite: deleting the previous contents of %s", run.path)
                for child in contents:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif run.config_path.is_file():
                run._check_resumable(cfg, stages)
            else:
                raise RunError(f"{run.path} exists and is not a dpcnn run folder: choose another --run")
        run.path.mkdir(parents=True, exist_ok=True)
        cfg.save(run.config_path)
        run.__dict__["config"] = cfg
        return run

    def _check_resumable(self, cfg: Config, stages: tuple[int, ...]) -> None:
        previous = Config.load(self.config_path)
        changed = differences(previous, cfg)
        blocking = [c for c in changed if c.split(":", 1)[0] not in ENVIRONMENT_KEYS]
        if blocking:
            raise RunError(f"{self.path} holds a run with a different configuration ({', '.join(blocking[:6])}). "
                           "Use another --run folder, or --overwrite to replace it.")
        if all(self.stage_done(s) for s in stages):
            raise RunError(f"{self.path} has already finished stage(s) {', '.join(map(str, stages))}. "
                           f"Evaluate it with `dpcnn eval --run {self.path}`, or train again with --overwrite.")
        if changed:
            log.info("resuming %s with changed run-environment settings: %s", self.path, "; ".join(changed))
        else:
            log.info("resuming the unfinished run in %s", self.path)

    # -- layout: every file name of a run folder is here ------------------------------------
    config_path = property(lambda self: self.path / CONFIG, doc="config.json: the resolved configuration")
    env_path = property(lambda self: self.path / ENV, doc="env.json: versions, devices, git sha, the command")
    data_report_path = property(lambda self: self.path / DATA_REPORT, doc="data_report.json: counts and exclusions")
    history_path = property(lambda self: self.path / HISTORY, doc="history.csv: one row per epoch (both stages)")
    vocab_path = property(lambda self: self.path / VOCAB, doc="vocab.json: the dictionary and tokenisation")
    inference_path = property(lambda self: self.path / INFERENCE, doc="inference.json: sizes and pixel mean")
    captions_path = property(lambda self: self.path / CAPTIONS, doc="captions.txt: the training captions")
    tensorboard_dir = property(lambda self: self.path / TENSORBOARD, doc="tb/: TensorBoard logs, one folder a stage")
    features_dir = property(lambda self: self.path / FEATURES, doc="features/: cached test-time features")
    curves_path = property(lambda self: self.path / CURVES, doc="curves.png: the training curves")
    timings_path = property(lambda self: self.path / TIMINGS, doc="timings.json: the demo's wall times")
    lock_path = property(lambda self: self.path / LOCK, doc="train.lock: held while `dpcnn train` runs")

    def stage_dir(self, stage: int) -> Path:
        return self.path / f"stage{stage}"

    def weights_path(self, stage: int) -> Path:
        return self.stage_dir(stage) / WEIGHTS

    def done_path(self, stage: int) -> Path:
        return self.stage_dir(stage) / DONE

    def last_good_path(self, stage: int) -> Path:
        """Where a stage that diverged keeps its last good weights."""
        return self.stage_dir(stage) / LAST_GOOD

    def backup_dir(self, stage: int) -> Path:
        return self.path / BACKUP / f"stage{stage}"

    def results_dir(self, stage: int) -> Path:
        """Where a stage's eval files go: the run folder for stage II, ``stage1/`` for stage I."""
        return self.path if stage == 2 else self.stage_dir(stage)

    def result_path(self, stage: int, split: str, name: str, suffix: str) -> Path:
        """``metrics.json``, ``examples.png`` … of a stage; another split than test adds ``-<split>``."""
        return self.results_dir(stage) / f"{name}{'' if split == 'test' else '-' + split}{suffix}"

    def metrics_path(self, stage: int, split: str = "test", suffix: str = ".json") -> Path:
        """``metrics.json`` (``suffix=".md"``: ``metrics.md``) of a stage's evaluation on ``split``."""
        return self.result_path(stage, split, METRICS, suffix)

    def examples_path(self, stage: int, split: str = "test") -> Path:
        """``examples.png``: the retrieval examples of a stage's evaluation."""
        return self.result_path(stage, split, EXAMPLES, ".png")

    # -- state -------------------------------------------------------------------------------
    @cached_property
    def config(self) -> Config:
        return Config.load(self.config_path)

    def stage_done(self, stage: int) -> bool:
        return self.done_path(stage).is_file() and self.weights_path(stage).is_file()

    def resolve_stage(self, stage: int | None = None) -> int:
        """``stage``, or the last finished one; RunError if it is not finished."""
        if stage is None:
            stage = 2 if self.stage_done(2) else 1
        if stage not in (1, 2):
            raise RunError(f"stage must be 1 or 2, got {stage}")
        if not self.stage_done(stage):
            raise RunError(f"{self.path} has no finished stage {stage}: train it first "
                           f"(`dpcnn train --config … --run {self.path}`)")
        return stage

    def mark_done(self, stage: int, info: dict) -> None:
        atomic_write_json(self.done_path(stage), {"stage": stage, **info})

    # -- what inference needs ----------------------------------------------------------------
    def write_inference_info(self, data) -> None:
        """``vocab.json``, ``inference.json`` (the sizes and statistics the model is built from) and
        ``captions.txt`` (the training captions, one a line)."""
        from dpcnn.utils import atomic_write_text

        data.vocab.save(self.vocab_path)
        atomic_write_text(self.captions_path, "".join(" ".join(c.split()) + "\n" for c in data.splits["train"].captions))
        atomic_write_json(self.inference_path, {
            "num_classes": data.num_classes, "vocab_size": len(data.vocab), "word_dim": data.word_dim,
            "pixel_mean": list(data.pixel_mean), "prepared_dir": str(data.directory),
        })

    @cached_property
    def inference_info(self) -> dict:
        path = self.inference_path
        if not path.is_file():
            raise RunError(f"{self.path} has no {INFERENCE} (it was trained by an older dpcnn): "
                           "train it again, or copy the whole prepared data beside it")
        return read_json(path)

    @cached_property
    def vocab(self):
        from dpcnn.data.vocab import Vocabulary

        return Vocabulary.load(self.vocab_path)

    def build_model(self):
        """The run's DualPath, float32, built without the training data and without reading the
        ImageNet (or any) backbone weights: :meth:`model` overwrites every weight anyway."""
        from dpcnn.model.dual_path import ModelSizes, build_dual_path

        info = self.inference_info
        cfg = dataclasses.replace(self.config, model=dataclasses.replace(self.config.model, image_weights="none"))
        return build_dual_path(cfg, ModelSizes(info["num_classes"], info["vocab_size"], info["word_dim"],
                                               tuple(info["pixel_mean"])))

    def model(self, stage: int | None = None):
        """The DualPath with the weights at the end of ``stage`` (default: the last finished one)."""
        stage = self.resolve_stage(stage)
        model = self.build_model()
        model.load_weights(str(self.weights_path(stage)))
        return model

    def embedder(self, stage: int | None = None, model=None):
        """An :class:`dpcnn.embedder.Embedder` with the run's test-time settings."""
        from dpcnn.embedder import Embedder
        from dpcnn.model.features import feature_models

        stage = self.resolve_stage(stage)
        model = model if model is not None else self.model(stage)
        image_model, text_model = feature_models(model.image_encoder, model.text_encoder, self.config)
        st = self.weights_path(stage).stat()
        identity = hashlib.sha256(json.dumps([str(self.path.resolve()), stage, st.st_size, st.st_mtime_ns,
                                              self.config.to_dict()["eval"], self.config.to_dict()["data"]],
                                             sort_keys=True).encode()).hexdigest()[:20]
        captions = self.captions_path
        return Embedder(image_model, text_model, self.vocab, self.config.eval.batch_size, identity=f"run-{identity}",
                        captions_file=captions if captions.is_file() else None)

    # -- features of a split -----------------------------------------------------------------
    def _features_key(self, stage: int, split) -> str:
        st = self.weights_path(stage).stat()
        e, d = self.config.eval, self.config.data
        key = [stage, st.st_size, st.st_mtime_ns, e.image_mode, e.flip, e.all_shifts, d.resize_shorter,
               d.resize_square, d.image_size, [str(p) for p in split.paths], split.tokens.tolist()]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def split_features(self, stage: int, split, name: str, embedder=None, progress: bool = True):
        """Test-time features of a prepared split: (images float32 [N, D], captions float32 [M, D]),
        cached in ``features/`` and reused while the weights, the settings and the split are the same."""
        cache = self.features_dir / f"stage{stage}-{name}-{self._features_key(stage, split)}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                log.info("%s features from the cache %s", name, cache)
                return z["images"], z["texts"]
        embedder = embedder or self.embedder(stage)
        images = embedder.encode_image_files(split.paths, split.sizes, progress=progress, desc=f"{name} images")
        texts = embedder.encode_tokens(split.tokens, progress=progress, desc=f"{name} captions")
        buf = io.BytesIO()
        np.savez(buf, images=images, texts=texts)
        for old in cache.parent.glob(f"stage{stage}-{name}-*.npz"):
            old.unlink(missing_ok=True)
        atomic_write_bytes(cache, buf.getvalue())
        return images, texts

    # -- environment -------------------------------------------------------------------------
    def write_env(self) -> None:
        atomic_write_json(self.env_path, environment())


def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment() -> dict:
    """Versions, devices and the code revision, for env.json and reports."""
    import keras
    import tensorflow as tf

    import dpcnn

    details = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (RuntimeError, ValueError):
            details.append(gpu.name)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "dpcnn": dpcnn.__version__, "git_sha": git_sha(), "python": sys.version.split()[0],
        "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "gpus": details,
        "command": " ".join(sys.argv),
    }
