"""Shared helpers of the training benchmarks (not a benchmark itself).

The benchmarks run on a machine shared with other people, so every timing is repeated and the
best (smallest) figure is reported: interference only ever adds time. Timings are wall clock
(``time.perf_counter``) with the process CPU time (``time.process_time``, all threads) beside
them; the CPU time is what the input pipeline takes away from the model on a 2-core machine.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = "/tmp/bench_data"


def versions() -> str:
    """One line: Python, TensorFlow, Keras, numpy, CPU count, machine."""
    import keras
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (f"Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"numpy {np.__version__}; {os.cpu_count()} CPUs ({platform.machine()}), "
            f"{len(gpus)} GPU(s)")


def demo_config(root: str, overrides: Sequence[str] = ()):
    """The ``demo`` preset on the data root ``root`` (plus ``--set``-style overrides)."""
    from dpcnn.config import resolve

    return resolve("demo", [f"data.root={root}", *overrides])


def prepared(cfg):
    """Prepare (once; cached under ``data.root``) and load the data of ``cfg``."""
    from dpcnn.prepare import ensure_prepared

    return ensure_prepared(cfg, progress=False)


def stage_model(cfg, data, stage: int):
    """A freshly built DualPath set up and compiled for ``stage`` exactly as ``run_stage`` does."""
    import keras

    from dpcnn.data import pipeline
    from dpcnn.optimizer import make_optimizer, parameter_groups
    from dpcnn.training import build_for, configure_backbone

    keras.utils.set_random_seed(cfg.train.seed)
    train = data.splits["train"]
    steps = pipeline.steps_per_epoch(train.num_images, cfg.train.batch_size, cfg.train.steps_per_epoch)
    model = build_for(cfg, data)
    configure_backbone(model, cfg, stage)
    groups = parameter_groups(model, stage, cfg.train)
    schedule = cfg.train.stage1_schedule if stage == 1 else cfg.train.stage2_schedule
    optimizer = make_optimizer(groups, cfg.train, schedule, steps)
    weights = cfg.train.stage1_loss_weights if stage == 1 else cfg.train.stage2_loss_weights
    model.configure_stage(stage, [g.variable for g in groups], weights, cfg.train.margin,
                          cfg.train.negative_mining)
    model.compile(optimizer=optimizer, jit_compile=False)
    return model


@dataclass
class EpochTimes:
    """Per-epoch wall and CPU seconds of one ``fit`` call (warm-up epochs dropped)."""

    wall: list[float]
    cpu: list[float]


def fit_epochs(model, dataset, epochs: int, steps: int, warmup: int = 1) -> EpochTimes:
    """``model.fit`` for ``epochs`` × ``steps`` and the wall/CPU seconds of each epoch after ``warmup``."""
    import keras

    class _Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.wall.append(time.perf_counter() - self._w)
            self.cpu.append(time.process_time() - self._c)

    clock = _Clock()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
    return EpochTimes(clock.wall[warmup:], clock.cpu[warmup:])


def best_of(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    """Call ``fn`` ``repeats`` times; (smallest result, all results)."""
    results = [fn() for _ in range(repeats)]
    return min(results), results


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_list(values: Sequence[float], scale: float = 1000.0) -> str:
    return ", ".join(f"{v * scale:.1f}" for v in values)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
