"""Every use of a Keras or TensorFlow private API, in one place, with why and the upstream link.

Each entry names the installed-version facts it relies on; ``tests/test_compat.py`` checks them
against the installed Keras and TensorFlow and fails with a message that says what to do when a
workaround is no longer needed (the upstream code changed) or no longer possible (the private name
is gone). Tested on Keras 3.13 (Colab's stack) to 3.15 (the development stack).

1. :func:`skip_symbolic_build` — ``keras.Model._maybe_symbolic_build`` overridden to do nothing.
   Before the first step, Keras' TensorFlow trainer draws one batch and ``strategy.reduce``-s it,
   which fails for dict batches under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20329,
   open). A training stage needs no symbolic build: :func:`dpcnn.training.stages.compile_stage`
   builds the optimiser, and a stage has no compiled losses or metrics.
2. :func:`multi_worker_collective` — ``strategy.extended._in_multi_worker_mode()``. Keras reduces a
   step's logs with ``strategy.reduce("MEAN", v, axis=0)`` exactly when this is true
   (``keras/src/backend/tensorflow/trainer.py``: ``_collective_all_reduce_multi_worker``), which
   needs a batch axis that scalar logs lack; the stage then gives them one. No upstream issue was
   found; the check follows Keras' own test of the same condition.
"""

from __future__ import annotations

import inspect

SYMBOLIC_BUILD = "_maybe_symbolic_build"
"""The Keras trainer method that :func:`skip_symbolic_build` replaces."""
SYMBOLIC_BUILD_REDUCES = "distribute_strategy.reduce("
"""What Keras' method does that fails for dict batches (its source still holds it: still needed)."""
LOGS_REDUCE = 'strategy.reduce("MEAN", v, axis=0)'
"""How Keras reduces a multi-worker step's logs (in ``reduce_per_replica``)."""


def skip_symbolic_build(self, iterator=None, data_batch=None) -> None:
    """A ``_maybe_symbolic_build`` that builds nothing (entry 1 of the module docstring)."""
    return


def multi_worker_collective(strategy) -> bool:
    """True when Keras reduces step logs across workers with ``axis=0`` (entry 2)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def facts() -> dict[str, bool]:
    """What the workarounds rely on, read from the installed Keras and TensorFlow (for the test)."""
    from keras.src.backend.tensorflow import trainer
    from tensorflow.python.distribute.collective_all_reduce_strategy import (
        CollectiveAllReduceExtended,
    )

    keras_build = getattr(trainer.TensorFlowTrainer, SYMBOLIC_BUILD, None)
    extended = CollectiveAllReduceExtended  # the class: creating a strategy would set up collectives
    return {
        "keras has _maybe_symbolic_build": keras_build is not None,
        "keras' _maybe_symbolic_build reduces the batch": keras_build is not None
        and SYMBOLIC_BUILD_REDUCES in inspect.getsource(keras_build),
        "tf has extended._in_multi_worker_mode": callable(getattr(extended, "_in_multi_worker_mode", None)),
        "keras reduces multi-worker logs with axis=0": LOGS_REDUCE in inspect.getsource(trainer.reduce_per_replica),
    }
