"""Shared fixtures: one tiny synthetic dataset, prepared once, and one tiny trained run per session.

Building and training even the tiny model costs seconds on a 2-core CPU, so tests that only
need *a* trained run share ``tiny_run`` instead of training their own.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root shared by the session (the synthetic dataset is generated there once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_cfg(data_root):
    from dpcnn.presets import resolve

    return resolve("tiny", [f"data.root={data_root}"])


@pytest.fixture(scope="session")
def tiny_data(tiny_cfg):
    from dpcnn.data.prepare import ensure_prepared

    return ensure_prepared(tiny_cfg, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tiny_cfg, tiny_data, tmp_path_factory) -> Path:
    """A finished two-stage run of the tiny preset (do not modify it in tests: copy it)."""
    from dpcnn.training.trainer import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_cfg, run, verbose=0, data=tiny_data)
    return run
