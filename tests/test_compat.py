"""The Keras/TensorFlow workarounds of dpcnn.compat still match the installed versions.

A failure here is a message for a maintainer: the upstream code changed, so a workaround is no
longer needed (remove it) or no longer possible (find another way) — see dpcnn/compat.py.
"""

from __future__ import annotations

import keras

from dpcnn import compat


def test_the_private_names_the_workarounds_use_still_exist():
    facts = compat.facts()
    assert facts["keras has _maybe_symbolic_build"], (
        f"Keras {keras.__version__} has no _maybe_symbolic_build: Stage's override does nothing now — "
        "remove it from dpcnn/compat.py and dpcnn/training/stages.py, and check multi-worker training")
    assert facts["tf has extended._in_multi_worker_mode"], (
        "TensorFlow's CollectiveAllReduceExtended lost _in_multi_worker_mode: rewrite compat.multi_worker_collective")


def test_the_workarounds_are_still_needed():
    facts = compat.facts()
    assert facts["keras' _maybe_symbolic_build reduces the batch"], (
        f"Keras {keras.__version__}'s _maybe_symbolic_build no longer reduces the batch (keras-team/keras#20329 "
        "fixed?): try multi-worker training without compat.skip_symbolic_build and remove it")
    assert facts["keras reduces multi-worker logs with axis=0"], (
        f"Keras {keras.__version__} reduces multi-worker logs another way: check whether Stage.update still "
        "needs to reshape its logs (compat.multi_worker_collective)")


def test_a_stage_uses_them_and_its_train_variables_are_a_plain_property(tiny_cfg, tiny_data):
    from dpcnn.model.dual_path import build_dual_path
    from dpcnn.training.stages import Stage, compile_stage

    assert Stage._maybe_symbolic_build is compat.skip_symbolic_build
    assert isinstance(Stage.__dict__["train_variables"], property)
    task = compile_stage(build_dual_path(tiny_cfg, tiny_data), tiny_cfg, 1, steps_per_epoch=2)
    trained = {id(v) for v in task.train_variables}
    assert trained and trained <= {id(v) for v in task.dual_path.trainable_variables}
