"""tf.distribute strategies and mixed precision for training.

Semantics (README "Scale out", docs/fidelity.md #21):
- ``train.batch_size`` and ``train.negative_pool`` are *global*. Each of the N replicas gets
  batch/N images (its first half anchors, second half negatives) and pool/N candidates, and
  mines its anchors' negatives among its own candidates; BN statistics are per replica.
- Losses are batch means per replica, divided by N; gradients are summed across replicas, so a
  step equals the single-device step on the whole global batch (up to per-replica BN and mining).
- The learning rate is not scaled: the paper's rates are for batch 32.
- ``train.mixed_precision``: float16 compute with dynamic loss scaling; the classifier's logits,
  the losses and all variables stay float32. ``auto``: on when a GPU is present.
- ``multiworker``: every worker runs the same command with its own ``TF_CONFIG``; the chief
  (``chief`` task, else ``worker`` 0) writes the run folder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import keras
import tensorflow as tf

from dpcnn.config import TrainConfig
from dpcnn.errors import ConfigError

log = logging.getLogger(__name__)


def _tpu_resolver(address: str):
    """The TPU at ``address``; with none given, a TPU VM's own ('local', Colab / Cloud) then the default."""
    resolve = tf.distribute.cluster_resolver.TPUClusterResolver
    if address:
        return resolve(tpu=address)
    try:
        return resolve(tpu="local")
    except (ValueError, RuntimeError, tf.errors.OpError):
        return resolve()


def make_strategy(cfg: TrainConfig) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by ``train.strategy``."""
    if cfg.strategy == "default":
        return tf.distribute.get_strategy()
    if cfg.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif cfg.strategy == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        try:
            resolver = _tpu_resolver(cfg.tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ConfigError(f"train.strategy=tpu: no TPU found ({e}); on a TPU VM install a TensorFlow with "
                              "TPU support (README, Colab) or set train.tpu=ADDRESS") from e
        strategy = tf.distribute.TPUStrategy(resolver)
    replicas = strategy.num_replicas_in_sync
    half = cfg.batch_size // 2
    if half % replicas:
        raise ConfigError(f"train.batch_size={cfg.batch_size}: each half ({half}) must split evenly over {replicas} replicas")
    if cfg.negative_mining == "hard" and cfg.negative_pool % replicas:
        raise ConfigError(f"train.negative_pool={cfg.negative_pool} must split evenly over {replicas} replicas")
    log.info("strategy %s with %d replica(s)", cfg.strategy, replicas)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def use_mixed_precision(setting: str) -> bool:
    """``train.mixed_precision``: true | false | auto (on when a GPU is present)."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting == "true"


@contextlib.contextmanager
def precision_policy(setting: str) -> Iterator[None]:
    """Use mixed_float16 inside the block when ``setting`` asks for it; restore the previous policy after."""
    previous = keras.config.dtype_policy()
    if use_mixed_precision(setting):
        if not tf.config.list_physical_devices("GPU"):
            log.warning("train.mixed_precision=true without a GPU: float16 on a CPU is slow; continuing")
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
