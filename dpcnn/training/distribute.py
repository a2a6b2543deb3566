"""tf.distribute strategies and mixed precision for training.

Semantics (documented in README "Scale out"):
- ``train.batch_size`` and ``train.negative_pool`` are *global*. Each of the N replicas gets
  batch/N images (its first half anchors, second half negatives) and pool/N candidates, and
  mines its anchors' negatives among its own candidates; BN statistics are per replica.
- Losses are batch means per replica, divided by N; gradients are summed across replicas, so a
  step equals the single-device step on the whole global batch (up to per-replica BN and mining).
- The learning rate is not scaled: the paper's rates are for batch 32. Scale it yourself with
  ``--set train.stage1_schedule=…`` if you raise the global batch.
- ``train.mixed_precision``: float16 compute on GPU with dynamic loss scaling; the classifier's
  logits, the losses and all variables stay float32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import keras
import tensorflow as tf

from dpcnn.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)


def make_strategy(cfg: TrainConfig) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by ``train.strategy``."""
    if cfg.strategy == "default":
        return tf.distribute.get_strategy()
    if cfg.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif cfg.strategy == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif cfg.strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:  # validated in config; kept for safety
        raise ConfigError(f"unknown train.strategy '{cfg.strategy}'")
    replicas = strategy.num_replicas_in_sync
    half = cfg.batch_size // 2
    if half % replicas:
        raise ConfigError(
            f"train.batch_size={cfg.batch_size}: each half ({half}) must split evenly over {replicas} replicas"
        )
    if cfg.negative_mining == "hard" and cfg.negative_pool % replicas:
        raise ConfigError(f"train.negative_pool={cfg.negative_pool} must split evenly over {replicas} replicas")
    log.info("strategy %s with %d replica(s)", cfg.strategy, replicas)
    return strategy


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Use mixed_float16 inside the block when asked (GPU only); restore the previous policy after."""
    previous = keras.config.dtype_policy()
    if mixed:
        if not tf.config.list_physical_devices("GPU"):
            log.warning("train.mixed_precision=true without a GPU: float16 on a CPU is slow; continuing")
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
