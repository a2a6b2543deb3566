"""``dpcnn eval``: encode a split once, compute each protocol, write the run's report files.

The protocols are :mod:`dpcnn.evaluation`; the features and the run folder :class:`dpcnn.run.Run`;
the tables and pictures :mod:`dpcnn.report`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

from dpcnn.errors import ConfigError
from dpcnn.evaluation import compute, plan
from dpcnn.utils import atomic_write_json

log = logging.getLogger(__name__)


def evaluate_run(run_path: str | Path, split: str = "test", protocols: Sequence[str] | None = None,
                 stage: int | None = None, progress: bool = True) -> str:
    """``dpcnn eval``: encode ``split`` once, compute each protocol, write the report files.

    Returns the text the CLI prints (the markdown table and the files written).
    """
    from dpcnn.data.prepare import ensure_prepared
    from dpcnn.report import figures, markdown
    from dpcnn.run import Run

    run = Run.open(run_path)
    stage = run.resolve_stage(stage)
    cfg = run.config
    data = ensure_prepared(cfg, progress=progress, need=(split,))
    arrays = data.splits[split]
    if arrays.num_images == 0:
        raise ConfigError(f"the prepared data of {run.path} has no '{split}' images to evaluate")
    names, skipped = plan(protocols or cfg.eval.protocols, arrays.num_images, explicit=bool(protocols), split=split)
    log.info("evaluating stage %d of %s on %s: %d images, %d captions", stage, run.path, split,
             arrays.num_images, arrays.num_captions)
    images, texts = run.split_features(stage, arrays, split, progress=progress)
    result, folds = compute(names, images, texts, arrays, cfg.eval.ap_rule)
    result["meta"] = {
        "stage": stage, "split": split,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": cfg.name, "dataset": cfg.data.dataset, "weights": run.weights_path(stage).relative_to(run.path).as_posix(),
        "test_features": {"image_mode": cfg.eval.image_mode, "flip": cfg.eval.flip, "all_shifts": cfg.eval.all_shifts},
        **({"skipped": skipped} if skipped else {}), **({"folds": folds} if folds else {}),
    }
    out_json = run.metrics_path(stage, split)
    atomic_write_json(out_json, result)
    written = [out_json, *markdown.write_markdown(run, split)]
    if run.history_path.is_file():
        written.append(figures.plot_history(run))
    else:
        log.warning("%s has no %s: no training curves drawn", run.path, run.history_path.name)
    written.append(figures.plot_examples(run, stage, split, arrays, images, texts, by_identity="class" in names))
    table = run.metrics_path(stage, split, ".md").read_text()
    return table + "\nwrote:\n" + "\n".join(f"  {p}" for p in written)
