"""Run every benchmark in sequence, each in its own subprocess, then print all ratios (``make bench``).

    .venv/bin/python benchmarks/run_all.py [--root /tmp/bench_data] [--full] [--only NAME ...]

Each benchmark's output streams through as it runs; at the end a summary lists every ratio line
(and the benchmark's wall time). Nothing is asserted about time: a benchmark that fails
(non-zero exit) is reported and the others still run; the exit status is 1 if any failed.

Sizes: by default the word-vector benchmark uses a 1,000,000 × 300 file (1.1 GiB, about a
minute) so that the whole run stays around 10 minutes on 2 cores; ``--full`` uses the
GoogleNews size (3,000,000 × 300, 3.4 GiB of disk, about 5 minutes more). ``device_check``
(the GPU check, under 8 minutes on a GPU) runs only where TensorFlow sees a GPU and prints
``SKIPPED`` elsewhere (its CPU ``--smoke`` mode is run by the test suite instead, and writes its
files under ``--root``/device_check). Generated data goes under ``--root``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Lines of each benchmark's output that carry its verdict.
SUMMARY = re.compile(
    r"^(RATIO|SLOWEST|SKIPPED|FIRST STEP)|speed-up vs|extra peak memory \d|\*\*ratio ours / gensim\*\*|"
    r"same words and vectors|first batch identical|max \|difference\||\[device_check\] wrote"
)


def benchmarks(root: str, full: bool) -> list[tuple[str, list[str]]]:
    """(name, arguments) of every benchmark, cheapest first."""
    words = ["--words", "3000000", "--dim", "300"] if full else ["--words", "1000000", "--dim", "300"]
    return [
        ("bench_metrics", []),
        ("bench_word_vectors", [*words, "--tmp", root]),
        ("bench_step_breakdown", ["--root", root]),
        ("bench_eval_encoding", ["--root", root]),
        ("bench_pipeline", ["--root", root]),
        ("device_check", ["--skip-without-gpu", "--out", str(Path(root) / "device_check")]),
    ]


def run_one(name: str, args: list[str]) -> tuple[int, float, list[str]]:
    """Run ``benchmarks/<name>.py`` and stream its output; (exit status, seconds, summary lines)."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    print(f"\n{'=' * 100}\n$ {' '.join(cmd)}\n{'=' * 100}", flush=True)
    t0 = time.perf_counter()
    kept: list[str] = []
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if SUMMARY.search(line.strip()):
                kept.append(line.rstrip())
        status = proc.wait()
    return status, time.perf_counter() - t0, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/bench_data", help="data root for generated data")
    ap.add_argument("--full", action="store_true", help="full-size word-vector file (3,000,000 × 300)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these benchmarks (names without .py)")
    args = ap.parse_args()

    Path(args.root).mkdir(parents=True, exist_ok=True)
    todo = benchmarks(args.root, args.full)
    if args.only:
        unknown = set(args.only) - {n for n, _ in todo}
        if unknown:
            ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {[n for n, _ in todo]}")
        todo = [(n, a) for n, a in todo if n in args.only]
    start = time.perf_counter()
    results = []
    for name, bench_args in todo:
        results.append((name, *run_one(name, bench_args)))
    total = time.perf_counter() - start

    print(f"\n{'=' * 100}\nSUMMARY ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"total {total / 60:.1f} min)\n{'=' * 100}")
    failed = []
    for name, status, seconds, lines in results:
        state = "ok" if status == 0 else f"FAILED (exit status {status})"
        print(f"\n{name}: {state}, {seconds:.0f} s")
        for line in lines:
            print(f"  {line}")
        if status != 0:
            failed.append(name)
    print(f"\ntotal wall time: {total:.0f} s ({total / 60:.1f} min)")
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
