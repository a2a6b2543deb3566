"""``make compare``: the paper's ablations and VSE++ / InfoNCE side by side (:mod:`dpcnn.compare`).

Trains every (dataset, seed, variant) into ``runs/compare/`` (the emoji preset with its schedule
halved, :data:`BUDGETS`) and writes ``docs/compare.md`` (the
table between its markers) and ``docs/images/compare.png``. About 60-90 min on 2 CPU cores for the
default two datasets and three seeds; not in CI. An interrupted compare continues where it stopped.

    python tools/compare.py                          # demo + emoji, seeds 0 1 2
    python tools/compare.py --datasets demo --seeds 0 --variants paper vsepp
    python tools/compare.py --report-only            # redraw the report from runs/compare/results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpcnn.compare import VARIANTS, run_compare, write_report  # noqa: E402

log = logging.getLogger("compare")

BUDGETS = {"emoji": ["train.stage1_schedule=8:1.0", "train.stage2_schedule=15:1.0,3:0.1"]}
"""Per-dataset overrides used when --set is not given: the emoji preset's schedule halved (its full
schedule takes ~8 min a run here, 100 min for the five variants × three seeds)."""


def _meta(argv: list[str]) -> dict:
    import keras
    import tensorflow as tf

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        git = "unknown"
    return {"date": datetime.date.today().isoformat(), "command": " ".join(["python tools/compare.py", *argv]),
            "git": git, "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
            "tensorflow": tf.__version__, "keras": keras.__version__}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["demo", "emoji"], help="preset names (default: demo emoji)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for every run (e.g. the budget); default: BUDGETS of the dataset")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "compare")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "compare.md")
    p.add_argument("--picture", type=Path, default=ROOT / "docs" / "images" / "compare.png")
    p.add_argument("--report-only", action="store_true", help="redraw the report from <out>/results.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("dpcnn", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("dpcnn.compare").setLevel(logging.INFO)

    store = args.out / "results.json"
    if not args.report_only:
        for dataset in args.datasets:
            run_compare([dataset], args.seeds, args.variants, args.out, args.set or BUDGETS.get(dataset, []))
        saved = json.loads(store.read_text())
        for dataset in args.datasets:
            saved["meta"][dataset] = _meta(argv)
        store.write_text(json.dumps(saved, indent=1))
    if not store.is_file():
        log.error("no results in %s: run without --report-only first", store)
        return 1
    saved = json.loads(store.read_text())
    write_report(saved["results"], saved["meta"], args.report, args.picture)
    log.info("wrote %s and %s", args.report, args.picture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
