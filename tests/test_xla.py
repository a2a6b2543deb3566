"""``train.jit_compile=true`` (XLA) trains the same steps as without it.

Two tiny DualPaths with the same weights take one stage-I step and, from those same starting
weights, one stage-II step through ``compile_stage(...).fit`` on the same batch, one with XLA and
one without; the logged losses must agree.

Tolerance, from measurements (2026-12-01, 2-core CPU, the tiny preset at 28 px, dropout 0): with
the batches this test drew then, the largest differences of the logged values were 4.8e-7 absolute / 7.5e-8
relative in stage I (loss 6.3519268 vs 6.3519273; image_loss and text_loss 2.4e-7 apart) and
2.4e-7 / 7.4e-8 in stage II (image_loss; loss, rank_loss and text_loss identical) on TF 2.20.0;
with other random batches on TF 2.21.0, at most 9.5e-7 absolute / 1.6e-7 relative (stage-II loss
6.1536999 vs 6.1536989). The check uses rtol = 1e-5 (about 60 × the largest relative difference
seen) and atol = 1e-6 for values near zero: float32 re-association by XLA's fusions, not a
different computation.

Dropout is 0 in the compared steps: under XLA ``tf.random.stateless_uniform`` (Philox or the
default algorithm alike) draws other numbers than TensorFlow's own kernel, so
``dpcnn.model.dual_path.stateless_dropout`` gives another mask (measured: 37 % of a [8, 32] mask's
entries differ) and the instance losses of a step with dropout differ by about 0.4 % (relative,
measured at the tiny preset's dropout 0.25): another random draw, not rounding. The last test
pins that as a known difference (strict xfail: it fails loudly once the masks agree).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import dual_path, random_batches

from dpcnn.config import apply_overrides
from dpcnn.presets import preset

pytestmark = pytest.mark.slow  # XLA compiles each step: about 20-40 s on 2 CPU cores

V, DIM, C = 30, 16, 24
RTOL, ATOL = 1e-5, 1e-6
LOGGED = ("loss", "rank_loss", "image_loss", "text_loss", "image_acc", "text_acc")


def xla_cfg(jit: str):
    return apply_overrides(preset("tiny"), [f"train.jit_compile={jit}", "model.dropout=0"])


def batches(cfg, seed: int = 0) -> tuple[dict, dict]:
    """One stage-I and one stage-II batch of random data at the config's sizes."""
    return random_batches(seed, cfg.train.batch_size // 2, cfg.train.negative_pool, cfg.data.image_size,
                          cfg.data.max_len, V, min_words=2)


@pytest.fixture(scope="module")
def logged() -> dict:
    """{(jit, stage): the logged values of one step} for jit false/true, stages 1 and 2."""
    from dpcnn.training.stages import compile_stage

    out, first_weights = {}, None
    for jit in ("false", "true"):
        cfg = xla_cfg(jit)
        stage_batches = dict(zip((1, 2), batches(cfg)))
        model = dual_path(cfg, C, V, DIM, seed=0)
        if first_weights is None:
            first_weights = model.get_weights()
        for stage in (1, 2):
            model.set_weights(first_weights)  # both stages, both settings: the same starting weights
            task = compile_stage(model, cfg, stage, steps_per_epoch=1)
            history = task.fit(tf.data.Dataset.from_tensors(stage_batches[stage]), epochs=1, steps_per_epoch=1,
                               verbose=0, shuffle=False)
            out[(jit, stage)] = {k: float(history.history[k][-1]) for k in LOGGED}
    return out


@pytest.mark.parametrize("stage", [1, 2])
def test_one_step_with_xla_logs_the_same_losses_as_without(logged, stage):
    plain, xla = logged[("false", stage)], logged[("true", stage)]
    assert plain["loss"] > 0 and (stage == 1) == (plain["rank_loss"] == 0.0)
    for key in LOGGED:
        np.testing.assert_allclose(xla[key], plain[key], rtol=RTOL, atol=ATOL, err_msg=f"stage {stage} {key}")


@pytest.mark.xfail(strict=True, reason="known: XLA's stateless RNG draws other dropout masks than TensorFlow's "
                                       "kernel (37 % of the entries differ); see the module docstring")
def test_dropout_masks_are_the_same_with_xla():
    from dpcnn.model.dual_path import stateless_dropout

    x, seed = tf.ones([8, 32]), tf.constant([3001, 5], tf.int32)
    plain = stateless_dropout(x, 0.25, seed).numpy()
    xla = tf.function(lambda: stateless_dropout(x, 0.25, seed), jit_compile=True)().numpy()
    np.testing.assert_array_equal(xla != 0, plain != 0)
