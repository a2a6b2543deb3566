"""Benchmark: our streaming word-vector reader vs gensim on a GoogleNews-sized word2vec binary file.

Generates a word2vec binary file (default 3,000,000 × 300 float32, ~3.6 GB, like GoogleNews)
in a temporary folder, written in chunks so that generation never holds it whole. About 30,000
"common" English-looking words are placed among synthetic GoogleNews-style tokens (phrases
joined by '_'), most of them near the front as in a frequency-ordered file. Then, each in its
own subprocess (so that peak RSS is clean: the child's VmHWM from /proc/self/status):

  (a) ``dpcnn.data.word_vectors.read_word_vectors`` with the 30,000 common words plus 3,000
      absent ones as the wanted set (a caption vocabulary with some OOV tokens);
  (b) gensim ``KeyedVectors.load_word2vec_format(path, binary=True)`` of the whole file;
  (c) gensim's streaming intersection: a ``KeyedVectors`` holding only the 33,000 wanted words,
      filled by ``intersect_word2vec_format(path, binary=True, lockf=1.0)``.

gensim 4.4's ``intersect_word2vec_format(binary=True)`` fails as shipped with numpy 2.4
("The binary mode of fromstring is removed") and needs ``vectors_lockf``, which a bare
``KeyedVectors`` lacks; child (c) supplies both (``np.fromstring`` → ``np.frombuffer(...).copy()``,
the same copy) so that gensim's own algorithm is what is timed.

The file is read once before timing, so all start with it in the page cache. Each child prints
a digest of the found words' vectors in file order (and sorted, as the intersection keeps the
wanted set's order); the benchmark checks they agree.

    python benchmarks/bench_word_vectors.py                      # full size (several minutes)
    python benchmarks/bench_word_vectors.py --words 200000 --dim 50   # quick
    python benchmarks/bench_word_vectors.py --repeat 2 --tmp /tmp/bw --reuse   # keep the file

Goal (issue): peak memory for a 30k vocabulary well under 1.5 GB and ≤ ¼ of gensim's peak,
and no slower than gensim.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SYLLABLES = (
    "a al an ar as at ba be bi bo bu ca ce ci co cu da de di do du el en er es fa fe fi fo "
    "ga ge gi go ha he hi ho in is it ka la le li lo lu ma me mi mo mu na ne ni no nu or "
    "pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu un ur va ve vi vo wa we "
    "wi ya yo za ze zo ing tion ment ness ly er est ed ship ful less able ous ive al ism"
).split()

# Shared tail of every child: digests of (words, vectors) in the given order and sorted by word.
CHILD_REPORT = r"""
def _digest(ws, vs):
    return hashlib.sha256(("\n".join(ws)).encode() + np.ascontiguousarray(vs, np.float32).tobytes()).hexdigest()
order = sorted(range(len(words)), key=words.__getitem__)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "found": len(words), "vmhwm_kb": int(hwm),
                  "digest": _digest(words, vectors) if in_file_order else "",
                  "digest_sorted": _digest([words[i] for i in order], vectors[order])}))
"""

CHILD_OURS = (
    r"""
import hashlib, json, sys, time
import numpy as np
from dpcnn.data.word_vectors import read_word_vectors
path, wanted_file = sys.argv[1], sys.argv[2]
wanted = json.load(open(wanted_file))
t0 = time.perf_counter()
found = read_word_vectors(path, wanted)
seconds = time.perf_counter() - t0
words, vectors, in_file_order = found.words, found.vectors, True
"""
    + CHILD_REPORT
)

CHILD_GENSIM = (
    r"""
import hashlib, json, sys, time
import numpy as np
from gensim.models import KeyedVectors
path, wanted_file = sys.argv[1], sys.argv[2]
wanted = set(json.load(open(wanted_file)))
t0 = time.perf_counter()
kv = KeyedVectors.load_word2vec_format(path, binary=True)
seconds = time.perf_counter() - t0
words = [w for w in kv.index_to_key if w in wanted]
vectors, in_file_order = np.stack([kv[w] for w in words]).astype(np.float32), True
"""
    + CHILD_REPORT
)

CHILD_INTERSECT = (
    r"""
import hashlib, json, sys, time
import numpy as np
from gensim.models import KeyedVectors
np.fromstring = lambda s, dtype=float: np.frombuffer(s, dtype=dtype).copy()  # numpy >= 2.3
path, wanted_file = sys.argv[1], sys.argv[2]
wanted = json.load(open(wanted_file))
t0 = time.perf_counter()
with open(path, "rb") as f:
    dim = int(f.readline().split()[1])
kv = KeyedVectors(dim)
kv.add_vectors(wanted, np.full((len(wanted), dim), np.nan, dtype=np.float32))
kv.vectors_lockf = np.ones(len(wanted), dtype=np.float32)  # a bare KeyedVectors has none
kv.intersect_word2vec_format(path, binary=True, lockf=1.0)
seconds = time.perf_counter() - t0
hit = ~np.isnan(kv.vectors).any(axis=1)  # rows the file overwrote
words = [w for w, h in zip(kv.index_to_key, hit) if h]
vectors, in_file_order = kv.vectors[hit], False
"""
    + CHILD_REPORT
)

CHILD_BASELINE = r"""
import json
import numpy as np
import dpcnn.data.word_vectors
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": 0.0, "found": 0, "digest": "", "digest_sorted": "", "vmhwm_kb": int(hwm)}))
"""


def english_like_words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable words (1-4 syllables; some capitalised, some plural)."""
    out: set[str] = set()
    syl = np.array(SYLLABLES)
    while len(out) < n:
        k = rng.integers(1, 5)
        w = "".join(syl[rng.integers(0, len(syl), size=k)])
        r = rng.random()
        if r < 0.15:
            w = w.capitalize()
        elif r < 0.25:
            w += "s"
        out.add(w)
    words = sorted(out)
    rng.shuffle(words)
    return words


def synthetic_token(i: int, rng: np.random.Generator) -> str:
    """A GoogleNews-style token: phrases joined by '_', mixed case, numbers; unique via ``i``."""
    parts = [
        "".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(rng.integers(1, 3))
    ]
    if rng.random() < 0.4:
        parts = [p.capitalize() for p in parts]
    return "_".join(parts) + f"_{i:x}"


def generate(path: Path, n_words: int, dim: int, common: list[str], seed: int) -> None:
    """Write an ``n_words`` × ``dim`` word2vec binary file in chunks of 100,000 records."""
    rng = np.random.default_rng(seed)
    # Common words: half in the first 5% of the file, the rest spread uniformly (frequency order).
    n_common = len(common)
    front = rng.choice(max(n_words // 20, n_common), size=n_common // 2, replace=False)
    rest = rng.choice(n_words, size=n_common - len(front), replace=False)
    positions: dict[int, str] = {}
    for p, w in zip(np.concatenate([front, rest]).tolist(), common):
        while p in positions:
            p = (p + 1) % n_words
        positions[p] = w
    chunk = 100_000
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(f"{n_words} {dim}\n".encode())
        for start in range(0, n_words, chunk):
            stop = min(start + chunk, n_words)
            vecs = (rng.random((stop - start, dim), dtype=np.float32) - 0.5) * 0.2
            pieces = []
            for j, i in enumerate(range(start, stop)):
                w = positions.get(i) or synthetic_token(i, rng)
                pieces.append(w.encode() + b" ")
                pieces.append(vecs[j].tobytes())
            f.write(b"".join(pieces))
            if (start // chunk) % 5 == 0:
                print(
                    f"  generated {stop:,}/{n_words:,} words ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 * 1024 * 1024):
            pass


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON line plus wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=env, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall"] = wall
    # The child's own VmHWM (peak resident set of its address space, reset by exec). wait4's
    # ru_maxrss would also count the parent's pages the child held between fork and exec.
    result["maxrss_kb"] = result["vmhwm_kb"]
    result["rusage_maxrss_kb"] = usage.ru_maxrss
    return result


LOADERS = (
    ("ours", "ours: `read_word_vectors` (wanted words only)", CHILD_OURS),
    ("load", "gensim `load_word2vec_format(binary=True)`", CHILD_GENSIM),
    (
        "intersect",
        "gensim `intersect_word2vec_format` (KeyedVectors of the wanted words)",
        CHILD_INTERSECT,
    ),
)


def measure(path: Path, wanted_file: Path, repeat: int) -> dict[str, dict]:
    """Each loader ``repeat`` times, interleaved; the fastest run of each."""
    best: dict[str, dict] = {}
    for r in range(repeat):
        for key, label, code in LOADERS:
            print(f"run {r + 1}/{repeat}: {label} …", flush=True)
            res = run_child(code, str(path), str(wanted_file))
            print(
                f"  {res['seconds']:.1f} s, peak RSS {res['maxrss_kb'] / 1024:.0f} MiB", flush=True
            )
            if key not in best or res["seconds"] < best[key]["seconds"]:
                best[key] = res
    return best


def print_table(best: dict[str, dict], baseline: dict) -> None:
    """The Markdown table: each loader, then ours / each gensim loader."""
    mib = 1024.0
    print("| loader | load call (s) | process wall (s) | peak RSS, VmHWM (MiB) |")
    print("|---|---:|---:|---:|")
    print(
        f"| interpreter + numpy + dpcnn import only | – | {baseline['wall']:.1f} | "
        f"{baseline['maxrss_kb'] / mib:.0f} |"
    )
    for key, label, _ in LOADERS:
        r = best[key]
        print(f"| {label} | {r['seconds']:.1f} | {r['wall']:.1f} | {r['maxrss_kb'] / mib:.0f} |")
    ours = best["ours"]
    # "**ratio ours / gensim**" is what run_all.py picks up for its summary.
    for key, name in (("load", "load"), ("intersect", "intersect")):
        g = best[key]
        print(
            f"| **ratio ours / gensim** ({name}) | **{ours['seconds'] / g['seconds']:.3f}** | "
            f"{ours['wall'] / g['wall']:.3f} | **{ours['maxrss_kb'] / g['maxrss_kb']:.3f}** |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--words", type=int, default=3_000_000, help="words in the generated file")
    ap.add_argument("--dim", type=int, default=300, help="vector dimension")
    ap.add_argument("--wanted", type=int, default=30_000, help="wanted words present in the file")
    ap.add_argument(
        "--absent", type=int, default=3_000, help="wanted words absent from the file (OOV)"
    )
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the generated file")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep the generated file under --tmp by a fixed name and reuse it when it is there",
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each loader (the fastest is reported)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.wanted > args.words:
        ap.error("--wanted cannot exceed --words")
    if args.reuse and args.tmp is None:
        ap.error("--reuse needs --tmp")
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)

    name = f"vectors_{args.words}x{args.dim}_w{args.wanted}_s{args.seed}"
    workdir = (
        args.tmp / name if args.reuse else Path(tempfile.mkdtemp(prefix="bench_w2v_", dir=args.tmp))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.bin"
    try:
        rng = np.random.default_rng(args.seed)
        vocab = english_like_words(args.wanted + args.absent, rng)
        common, absent = vocab[: args.wanted], vocab[args.wanted :]
        if args.reuse and path.exists():
            print(f"reusing {path}", flush=True)
        else:
            print(f"generating {path} ({args.words:,} × {args.dim}) …", flush=True)
            t0 = time.perf_counter()
            generate(path.with_suffix(".part"), args.words, args.dim, common, args.seed + 1)
            path.with_suffix(".part").rename(path)
            print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
        size = path.stat().st_size
        wanted_file = workdir / "wanted.json"
        wanted_file.write_text(json.dumps(common + absent))
        warm_page_cache(path)

        baseline = run_child(CHILD_BASELINE)
        best = measure(path, wanted_file, args.repeat)
        ours, load, inter = best["ours"], best["load"], best["intersect"]
        agree = ours["digest"] == load["digest"] and ours["found"] == load["found"] == args.wanted
        agree_inter = (
            ours["digest_sorted"] == inter["digest_sorted"] and inter["found"] == args.wanted
        )
        print()
        print(
            f"word2vec binary {args.words:,} × {args.dim} ({size / 2**30:.2f} GiB), wanted "
            f"{args.wanted:,} present + {args.absent:,} absent words; page cache warm; "
            f"fastest of {args.repeat}; Python {sys.version.split()[0]}, numpy {np.__version__}, "
            f"gensim {gensim_version()}, {os.cpu_count()} CPUs"
        )
        print()
        print_table(best, baseline)
        print()
        print(f"same words and vectors as gensim (file order, sha256): {'yes' if agree else 'NO'}")
        print(
            "same words and vectors as gensim's intersection (sorted, sha256): "
            f"{'yes' if agree_inter else 'NO'}"
        )
        if not (agree and agree_inter):
            raise SystemExit("MISMATCH between our reader and gensim")
    finally:
        if args.keep or args.reuse:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def gensim_version() -> str:
    """gensim's version, read without importing it here."""
    from importlib.metadata import version

    return version("gensim")


if __name__ == "__main__":
    main()
