"""Every paper preset's method settings train: its tiny variant (``<preset>:tiny``) runs one step of each
stage through the same code path as the real preset (big_vision's "runlocal" idea)."""

from __future__ import annotations

import numpy as np
import pytest

from dpcnn.presets import PAPER_PRESETS, resolve


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_tiny_variant_of_each_paper_preset_trains_a_step_of_each_stage(name, data_root):
    import keras

    from dpcnn.data import pipeline
    from dpcnn.data.prepare import ensure_prepared
    from dpcnn.model.dual_path import build_dual_path
    from dpcnn.training.stages import compile_stage

    cfg = resolve(f"{name}:tiny", [f"data.root={data_root}"])
    data = ensure_prepared(cfg, progress=False)
    keras.utils.set_random_seed(0)
    model = build_dual_path(cfg, data)
    train = data.splits["train"]
    for stage, make in ((1, pipeline.stage1_dataset), (2, pipeline.stage2_dataset)):
        task = compile_stage(model, cfg, stage, steps_per_epoch=1)
        logs = task.fit(make(train, cfg, 0, 1, by_identity=data.by_identity), steps_per_epoch=1, epochs=1,
                        verbose=0).history
        assert all(np.isfinite(v[0]) for v in logs.values()), (name, stage, logs)
        assert (logs["rank_loss"][0] > 0) == (stage == 2)
