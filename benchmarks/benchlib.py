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
    from dpcnn.presets import resolve

    return resolve("demo", [f"data.root={root}", *overrides])


def prepared(cfg):
    """Prepare (once; cached under ``data.root``) and load the data of ``cfg``."""
    from dpcnn.data.prepare import ensure_prepared

    return ensure_prepared(cfg, progress=False)


def demo_setup(root: str, overrides: Sequence[str] = ()):
    """Print the versions and the load average, then (demo config, its prepared data)."""
    print(versions())
    print(f"load average at start: {load_average()}")
    cfg = demo_config(root, overrides)
    return cfg, prepared(cfg)


def with_overrides(cfg, overrides: Sequence[str]):
    """``cfg`` with ``--set``-style overrides applied (validated as the CLI does)."""
    from dpcnn.config import apply_overrides

    return apply_overrides(cfg, list(overrides))


def build_model(cfg, data, seed: int | None = None):
    """A freshly built DualPath for ``cfg`` on the prepared ``data``, as ``dpcnn train`` builds it
    (seeded, word vectors loaded); call it inside :func:`precision` for a mixed-precision model."""
    import keras

    from dpcnn.model.dual_path import build_dual_path

    keras.utils.set_random_seed(cfg.train.seed if seed is None else seed)
    return build_dual_path(cfg, data)


def precision(cfg):
    """The precision-policy context ``dpcnn train`` builds and compiles its model in."""
    from dpcnn.training.distribute import precision_policy

    return precision_policy(cfg.train.mixed_precision)


def steps_of(cfg, split) -> int:
    """Steps per epoch of ``split`` under ``cfg`` (``pipeline.steps_per_epoch``)."""
    from dpcnn.data import pipeline

    return pipeline.steps_per_epoch(split.num_images, cfg.train.batch_size, cfg.train.steps_per_epoch)


def compile_for_stage(model, cfg, stage: int, steps_per_epoch: int):
    """``compile_stage``: the stage object (a compiled keras.Model whose ``fit`` trains ``model``),
    set up exactly as ``run_stage`` does (backbone mode, multiplier table, optimiser, step, XLA)."""
    from dpcnn.training.stages import compile_stage

    return compile_stage(model, cfg, stage, steps_per_epoch)


def stage_model(cfg, data, stage: int, model=None):
    """The compiled stage ``stage`` of a freshly built DualPath (or of ``model``), as ``run_stage``
    sets it up; the DualPath is ``task.dual_path``."""
    with precision(cfg):
        if model is None:
            model = build_model(cfg, data)
        return compile_for_stage(model, cfg, stage, steps_of(cfg, data.splits["train"]))


def cached_batches(dataset, count: int) -> list:
    """The first ``count`` elements of a dataset, materialised (dicts of eager tensors)."""
    out = []
    for batch in dataset.take(count):
        out.append(batch)
    return out


def repeat_batches(batches: Sequence) -> object:
    """A tf.data dataset that cycles through ``batches`` (in memory) forever."""
    import tensorflow as tf

    stacked = tf.nest.map_structure(lambda *xs: tf.stack(xs), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(2)


def _busy_ticks() -> tuple[int, int]:
    """(busy clock ticks of the whole machine, clock ticks of this process) from /proc; (0, 0) elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return user + nice + system + irq + softirq + steal, int(mine[11]) + int(mine[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


class ForeignLoad:
    """CPU used by *other* processes over an interval, in cores (from /proc/stat; 0 where unavailable).

    ``start()`` then ``stop()`` → average number of cores other processes kept busy meanwhile. A
    benchmark can use it to tell the measurements taken on a quiet machine from the others.
    """

    def start(self) -> None:
        self._t = time.perf_counter()
        self._busy, self._mine = _busy_ticks()

    def stop(self) -> float:
        busy, mine = _busy_ticks()
        seconds = time.perf_counter() - self._t
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        foreign = max(0, (busy - self._busy) - (mine - self._mine)) / ticks
        return foreign / seconds if seconds > 0 else 0.0


@dataclass
class EpochTimes:
    """Per-epoch wall and CPU seconds of one ``fit`` call (warm-up epochs dropped), and the
    average number of cores other processes used during each epoch."""

    wall: list[float]
    cpu: list[float]
    foreign: list[float]


def fit_epochs(model, dataset, epochs: int, steps: int, warmup: int = 1) -> EpochTimes:
    """``model.fit`` for ``epochs`` × ``steps`` and the wall/CPU seconds of each epoch after ``warmup``."""
    import keras

    class _Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []
            self.foreign: list[float] = []
            self._load = ForeignLoad()

        def on_epoch_begin(self, epoch, logs=None):
            self._load.start()
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.wall.append(time.perf_counter() - self._w)
            self.cpu.append(time.process_time() - self._c)
            self.foreign.append(self._load.stop())

    clock = _Clock()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
    return EpochTimes(clock.wall[warmup:], clock.cpu[warmup:], clock.foreign[warmup:])


def fit_batches(model, dataset, steps: int) -> list[float]:
    """``model.fit`` for one epoch of ``steps`` and the wall seconds of each step, in order.

    A callback with ``on_train_batch_end`` makes Keras hand it the step's logs as Python numbers,
    so every step is finished (synchronised) before the next starts and each duration is the
    step's own: the first one includes tracing and graph building.
    """
    import keras

    class _Steps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.wall.append(time.perf_counter() - self._t)

    clock = _Steps()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
    return clock.wall


def best_of(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    """Call ``fn`` ``repeats`` times; (smallest result, all results)."""
    results = [fn() for _ in range(repeats)]
    return min(results), results


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_list(values: Sequence[float], scale: float = 1000.0, digits: int = 1) -> str:
    return ", ".join(f"{v * scale:.{digits}f}" for v in values)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def paper_size_split(folder: str | Path, n: int = 128, height: int = 375, width: int = 500,
                     max_len: int = 32, vocab: int = 1000, seed: int = 0):
    """``n`` Flickr/COCO-sized JPEG files (``height`` × ``width``, quality 90; written once into
    ``folder``) and a training :class:`~dpcnn.data.prepare.SplitArrays` over them: one random
    left-aligned caption of 8-20 words per image, every image its own class."""
    import numpy as np
    from PIL import Image

    from dpcnn.data.prepare import SplitArrays

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{height}x{width}_{i:05d}.jpg"
        if not path.exists():
            # Smooth colour fields plus fine noise: decodes like a photograph, not like a flat image.
            base = Image.fromarray(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8))
            pixels = np.asarray(base.resize((width, height), Image.BICUBIC), dtype=np.float32)
            pixels += rng.normal(0, 12, pixels.shape)
            tmp = path.with_suffix(".tmp")
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
            tmp.replace(path)
        paths.append(str(path))
    lengths = rng.integers(8, 21, n).astype(np.int32)
    tokens = np.zeros((n, max_len), np.int32)
    for i, length in enumerate(lengths):
        tokens[i, :length] = rng.integers(1, vocab, length)
    index = np.arange(n, dtype=np.int32)
    return SplitArrays(
        paths=np.asarray(paths, dtype=object), image_ids=np.asarray([str(i) for i in range(n)], dtype=object),
        labels=index.copy(), identities=index.copy(), sizes=np.tile([height, width], (n, 1)).astype(np.int32),
        tokens=tokens, lengths=lengths, caption_image=index.copy(),
    )


def pipeline_images_per_second(make, split, cfg, batches: int, repeats: int) -> tuple[float, float]:
    """Best images/s of a training dataset alone (no model) and the CPU seconds per image then.

    ``make`` is ``pipeline.stage1_dataset`` or ``stage2_dataset``; both load ``train.batch_size``
    images per batch. A fresh iterator per repeat; its first 3 batches are not timed.
    """
    import gc

    best_rate, cpu_per_image = 0.0, float("nan")
    per_batch = cfg.train.batch_size
    for _ in range(repeats):
        it = iter(make(split, cfg, 0, 10**4))
        for _ in range(3):
            next(it)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(it)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        if batches * per_batch / wall > best_rate:
            best_rate, cpu_per_image = batches * per_batch / wall, cpu / (batches * per_batch)
        del it
        gc.collect()
    return best_rate, cpu_per_image
