"""A rehearsal of the real run, as one command: the path of a multi-hour ``dpcnn`` run at its real
size, on generated data, every step in its own process and measured (``make rehearse``).

    .venv/bin/python benchmarks/rehearse.py [--preset coco|flickr30k|cuhk-pedes] [--out DIR]   # full size
    .venv/bin/python benchmarks/rehearse.py --smoke --out /tmp/rehearsal-smoke                # CPU size, < 2 min

Full size (default ``--preset coco``, ``--out /tmp/dpcnn-rehearsal``; meant for the machine of the
real run): the dataset's real layout and counts under OUT/data, written by ``rehearse_data.py``
(COCO: 123,287 JPEG files, Karpathy's ``dataset_coco.json`` 113,287 / 5,000 / 5,000, the 2014
captions files, 5 captions each from 10,000 generated words; Flickr30k: 31,783 images, paper
split; CUHK-PEDES: 40,206 images of 13,003 ids, 2 captions each) and a GoogleNews-size word2vec
binary (3,000,000 × 300, 3.6 GB), reused while their marker files say they are complete. Then,
each with ``--set data.root=OUT/data model.image_weights=none`` (no ImageNet download: ResNet-50
from random weights) and the preset's real model and image size (224 px):

1. ``dpcnn prepare``; 2. the DualPath built as ``dpcnn train`` builds it (parameter count);
3. ``dpcnn train --stage 1`` (``--steps`` steps × 2 epochs, a backup every step, no validation
   cadence) killed with SIGKILL once the epoch-1 backup is committed; 4. the same command again,
   whose stderr must say "resuming at"; 5. ``--stage 2`` (``--steps`` steps); 6. the test-time
   features of ``--eval-images`` test images and their captions with the run's Embedder, timed
   after a one-batch warm-up and extrapolated to COCO 5K: ``time_5k = t_images × 5000 / n +
   t_captions × 25000 / m`` (other presets: their test split's counts); 7. ``dpcnn export``;
   8. ``dpcnn search --model`` over 20 generated test images.

``train.validate_every=0``: no validation R@K during training (the rehearsal measures the
training path; validation's cost is the evaluation step's per-image rate). ``--smoke``: the same steps and CLI path on 60 images (40 / 10 / 10) and a 2,000 × 300
word2vec file, with the preset shrunk to CPU size by ``--set`` overrides (``SMOKE_SET``).

Reading OUT/rehearsal.md (printed at the end; OUT/rehearsal.json has every figure, the exact
commands, the date and the machine; both are rewritten after each step, and OUT/logs/ holds each
step's stdout and stderr): one row per step. *wall s*: the step's process from start to exit (the
killed step: to the kill). *peak RSS GB*: ``ru_maxrss`` of that process (``os.wait4``; 1 GB = 10⁹
bytes). *disk written*: the size of the folders the step writes (OUT/data, OUT/data/prepared, the
run, the export, the gallery) after the step minus before (``os.walk``); negative where a step
deletes more than it writes (a finished stage deletes its backups). The backup files' sizes are
the largest seen while the step ran. Generated images are 32 × 32 (COCO's are ~640 × 480), so
decoding in ``prepare`` and in the training pipeline costs less than on the real files; the
model, its backups and the word-vector scan are the real sizes.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import rehearse_data as D

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = Path(__file__).resolve()
GB = 1e9
SMOKE_SET = ["model.image_backbone=small", "model.small_widths=8,16", "model.small_blocks=1,1",
             "model.image_head_dim=32", "model.embed_dim=32", "model.text_blocks=1,1", "model.text_widths=32,64",
             "model.text_first_mid=16,32", "model.text_mid=8,16", "model.text_strides=1,2", "data.image_size=32",
             "data.resize_shorter=36", "train.batch_size=8", "train.val_images=10", "eval.batch_size=16"]


# --------------------------------------------------------------------------------------------
# The other child processes: build the model, encode a fraction of the test split
# --------------------------------------------------------------------------------------------


def build(preset: str, overrides: list[str]) -> dict:
    """The DualPath as ``dpcnn train`` builds it (seeded, word vectors loaded) on the prepared data."""
    import benchlib as B
    import tensorflow as tf

    from dpcnn.presets import resolve

    cfg = resolve(preset, overrides)
    data = B.prepared(cfg)
    with B.precision(cfg):
        model = B.build_model(cfg, data)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return {"params": int(model.count_params()), "trainable_params": trainable, "classes": data.num_classes,
            "vocab": len(data.vocab), "gpus": len(tf.config.list_physical_devices("GPU"))}


def encode(run_dir: str, n: int) -> dict:
    """Features of the first ``n`` test images and their captions, timed after a one-batch warm-up."""
    from dpcnn.data.prepare import load_prepared
    from dpcnn.run import Run

    run = Run.open(run_dir)
    emb = run.embedder(2)
    test = load_prepared(run.inference_info["prepared_dir"], run.config.data.max_len).splits["test"]
    sub, b = test.subset(n), emb.batch_size
    t0 = time.perf_counter()
    emb.encode_image_files(sub.paths[:b], sub.sizes[:b])
    emb.encode_tokens(sub.tokens[:b])
    t1 = time.perf_counter()
    emb.encode_image_files(sub.paths, sub.sizes)
    t2 = time.perf_counter()
    emb.encode_tokens(sub.tokens)
    t3 = time.perf_counter()
    coco = run.config.data.dataset == "coco"
    n_all, m_all = (5_000, 25_000) if coco else (test.num_images, test.num_captions)
    out = {"n": sub.num_images, "m": sub.num_captions, "warmup_s": t1 - t0, "t_images": t2 - t1,
           "t_captions": t3 - t2, "target": "COCO 5K" if coco else "test split", "n_all": n_all, "m_all": m_all}
    out["formula"] = f"time = t_images × {n_all} / n + t_captions × {m_all} / m"
    out["extrapolated_s"] = out["t_images"] * n_all / out["n"] + out["t_captions"] * m_all / out["m"]
    return out


# --------------------------------------------------------------------------------------------
# Measuring a step
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    command: list[str]
    wall_s: float = 0.0
    peak_rss_gb: float = 0.0
    disk_written: int = 0
    returncode: int | None = None
    killed: bool = False
    error: str = ""  # why a step that exited 0 still failed the rehearsal
    notes: str = ""
    result: dict = field(default_factory=dict)  # the JSON line a child of this script prints
    stderr_log: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 or self.killed) and not self.error


def json_output(stdout: str) -> dict:
    """The JSON object a process printed: its whole stdout, else its last line; {} if neither."""
    for text in (stdout, stdout.strip().rsplit("\n", 1)[-1]):
        try:
            got = json.loads(text)
            return got if isinstance(got, dict) else {}
        except ValueError:
            pass
    return {}


def folder_bytes(path: Path) -> int:
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def run_step(name: str, command: list[str], watch: list[Path], logs: Path,
             kill_when: Callable[[], bool] | None = None, observe: Callable[[], None] | None = None) -> Step:
    """Run ``command`` in its own process: wall time, its peak RSS (``os.wait4``), disk written under ``watch``."""
    step = Step(name, [str(c) for c in command])
    print(f"[rehearse] {name}: {shlex.join(step.command)}", flush=True)
    before = sum(folder_bytes(p) for p in watch)
    slug = name.split(" (")[0].replace(" ", "_")
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(logs / f"{slug}.out", "wb") as out, open(logs / f"{slug}.err", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(step.command, stdout=out, stderr=err, cwd=REPO, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if observe:
                observe()
            if kill_when and not step.killed and kill_when():
                os.kill(proc.pid, signal.SIGKILL)
                step.killed = True
            time.sleep(0.02 if kill_when else 0.2)
        step.wall_s = time.perf_counter() - t0
    proc.returncode = step.returncode = os.waitstatus_to_exitcode(status)
    step.peak_rss_gb = usage.ru_maxrss * 1024 / GB
    step.disk_written = sum(folder_bytes(p) for p in watch) - before
    step.result = json_output((logs / f"{slug}.out").read_text(errors="replace"))
    if isinstance(observe, BackupWatch):
        step.result["backup_files"] = observe.seen
    step.stderr_log = str(logs / f"{slug}.err")
    step.stderr_tail = Path(step.stderr_log).read_text(errors="replace")[-3000:]
    print(f"[rehearse]   {'ok' if step.ok else 'FAILED'} (exit {step.returncode}{', killed' if step.killed else ''}) "
          f"{step.wall_s:.1f} s, peak RSS {step.peak_rss_gb:.2f} GB, {human(step.disk_written)} written", flush=True)
    return step


class BackupWatch:
    """The largest size seen of every ``*.h5`` under RUN/backup/stage*/ during one step (a stage's
    backups are deleted at its end), and the last committed state.json."""

    def __init__(self, run: Path):
        self.run, self.seen, self.state = run, {}, {}

    def __call__(self) -> None:
        for f in self.run.glob("backup/stage*/*.h5"):
            try:
                size = f.stat().st_size
            except OSError:
                continue
            key = str(f.relative_to(self.run))
            self.seen[key] = max(self.seen.get(key, 0), size)
        for f in self.run.glob("backup/stage*/state.json"):
            try:
                self.state = {k: v for k, v in json.loads(f.read_text()).items() if k in ("epoch", "step", "file")}
            except (OSError, ValueError):
                pass


def epoch_backed_up(state: Path) -> Callable[[], bool]:
    def done() -> bool:
        try:
            return json.loads(state.read_text()).get("epoch", 0) >= 1
        except (OSError, ValueError):
            return False
    return done


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


# --------------------------------------------------------------------------------------------
# The rehearsal
# --------------------------------------------------------------------------------------------


def overrides(args, data: Path) -> list[str]:
    """The ``--set`` pairs of every dpcnn command (one set, so that stage II resumes the same run)."""
    from dataclasses import fields

    from dpcnn.config import TrainConfig

    sets = [f"data.root={data}", "model.image_weights=none", f"train.steps_per_epoch={args.steps}",
            "train.stage1_schedule=2:0.1", "train.stage2_schedule=1:0.1", "train.validate_every=0",
            "train.backup_every=1"]
    if "backup_minutes" in {f.name for f in fields(TrainConfig)}:
        sets.append("train.backup_minutes=0")
    if args.smoke:  # cuhk-pedes mines random negatives: no pool to size
        sets += SMOKE_SET + ([] if args.preset == "cuhk-pedes" else ["train.negative_pool=8"])
    return sets


def step_notes(step: Step, run: Path, data: Path, export: Path) -> str:
    """The notes column: what the step made (from its output and the files it wrote)."""
    try:
        return _notes(step, step.result, run, data, export)
    except (KeyError, IndexError, OSError, StopIteration, TypeError, ValueError) as e:  # never lose the figures
        return f"(no notes: {type(e).__name__}: {e})"


def _notes(step: Step, r: dict, run: Path, data: Path, export: Path) -> str:
    if step.name == "generate data":
        sizes = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v[0]:,} images of {v[1]:,} ids"
                          for k, v in r["spec"]["sizes"].items())
        words, n_words, dim = r["spec"]["word2vec"]
        return (f"reused ({', '.join(r['reused'])})" if r.get("reused") else "generated") + \
            f": {sizes}; word2vec {n_words:,} × {dim} ({words:,} caption words)"
    if step.name == "prepare":
        report = json.loads(next((data / "prepared").glob("*/data_report.json")).read_text())
        counts = " / ".join(f"{c['images']:,}" for c in report["counts"].values())
        return (f"images {counts}, vocabulary {report['vocabulary']['in_vocabulary_words']:,} words, "
                f"{sum(report['excluded_counts'].values())} exclusions")
    if step.name == "search":
        top = r.get("results", [{}])[0]
        gallery = r.get("gallery", "?").rsplit(" (", 1)[-1].rstrip(")")
        return f"gallery of {gallery}; top hit {Path(top.get('image', '?')).name} (cosine {top.get('score', 0):.3f})"
    if step.name == "build model":
        return f"{r['params']:,} parameters ({r['trainable_params']:,} trainable), {r['classes']:,} classes, vocab {r['vocab']:,}"
    if step.name.startswith("stage"):
        stage = 1 if step.name.startswith("stage I ") else 2
        seen = r.get("backup_files", {})
        weights = run / f"stage{stage}" / "model.weights.h5"
        note = f"backup .h5 {human(max(seen.values(), default=0))} ({len(seen)} files seen)"
        note += f"; weights {human(weights.stat().st_size)}" if weights.is_file() and not step.killed else ""
        if step.killed:
            state = r.get("backup_state", {})
            note = (f"SIGKILL once state.json said epoch {state.get('epoch')}, step {state.get('step')} "
                    f"({state.get('file')}); ") + note
        if "resum" in step.name:
            note = f"stderr: {step.result.get('resumed_line', 'NO resuming line')!r}; " + note
        return note
    if step.name.startswith("evaluation"):
        return (f"{r['n']} images {r['t_images']:.1f} s + {r['m']} captions {r['t_captions']:.1f} s (warm-up "
                f"{r['warmup_s']:.1f} s) → {r['target']} ≈ {r['extrapolated_s']:.1f} s ({r['formula']})")
    if step.name == "export":
        return f"{human(folder_bytes(export))} in {sum(1 for p in export.rglob('*') if p.is_file())} files"
    return ""


def rehearse(args) -> dict:
    """Run every step in order (stopping at the first that fails); OUT/rehearsal.{json,md} after each."""
    out = Path(args.out).resolve()
    data, run, export, gallery, logs = (out / n for n in ("data", "run", "export", "gallery", "logs"))
    for folder in (run, export, gallery, logs, data / "prepared"):
        shutil.rmtree(folder, ignore_errors=True)
    dpcnn = [str(Path(sys.executable).parent / "dpcnn")] if (Path(sys.executable).parent / "dpcnn").exists() \
        else [sys.executable, "-m", "dpcnn"]
    child = [sys.executable, str(SCRIPT), "--child"]
    sets = overrides(args, data)
    train = [*dpcnn, "train", "--config", args.preset, "--run", run, "--set", *sets, "--stage"]
    plan = [
        ("generate data", [*child, "generate", "--preset", args.preset, "--data", data] + (["--smoke"] * args.smoke),
         [data], {}),
        ("prepare", [*dpcnn, "prepare", "--config", args.preset, "--set", *sets], [data / "prepared"], {}),
        ("build model", [*child, "build", "--preset", args.preset, "--set", *sets], [], {}),
        ("stage I to first backup", [*train, "1"], [run],
         {"kill_when": epoch_backed_up(run / "backup" / "stage1" / "state.json"), "observe": BackupWatch(run)}),
        ("stage I resumed to the end", [*train, "1"], [run], {"observe": BackupWatch(run)}),
        ("stage II", [*train, "2"], [run], {"observe": BackupWatch(run)}),
        ("evaluation (COCO 5K, extrapolated)" if args.preset == "coco" else "evaluation (test split, extrapolated)",
         [*child, "encode", "--run", run, "--eval-images", str(args.eval_images)], [run], {}),
        ("export", [*dpcnn, "export", "--run", run, "--out", export], [export], {}),
        ("search", [*dpcnn, "search", "--model", export, "--text", "{caption}", "--gallery", gallery, "--k", "5",
                    "--json"], [gallery], {}),
    ]
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "preset": args.preset,
              "smoke": args.smoke, "steps_per_epoch": args.steps, "out": str(out), "machine": machine(),
              "overrides": sets}
    steps, caption, started = [], "", time.perf_counter()
    for name, command, folders, hooks in plan:
        if name == "search":
            gallery.mkdir(parents=True)
            for p in steps[0].result["test_images"][:D.GALLERY]:
                shutil.copy(p, gallery / Path(p).name)
        step = run_step(name, [caption if c == "{caption}" else c for c in command], folders, logs, **hooks)
        if name == "generate data" and step.ok:
            caption = step.result["caption"]
        if "resumed" in name:
            stderr = Path(step.stderr_log).read_text(errors="replace").splitlines()
            step.result["resumed_line"] = next((x.strip() for x in stderr if "resuming at" in x), None)
            step.error = "" if step.result["resumed_line"] else "no 'resuming at' in its stderr"
        if step.killed:  # the process is gone: the state and the files as the resumed run finds them
            hooks["observe"]()
            step.result["backup_state"] = hooks["observe"].state
        elif name.startswith("stage I to"):
            step.error = "the stage ended before its epoch-1 backup was seen: nothing was killed"
        step.notes = step_notes(step, run, data, export) if step.ok else f"**FAILED**: {step.error or 'see stderr'}"
        steps.append(step)
        result.update(summary(steps, run, export), total_s=round(time.perf_counter() - started, 1),
                      ok=len(steps) == len(plan) and all(s.ok for s in steps))
        write(out, result)
        if not step.ok:
            print(f"[rehearse] {name} FAILED ({step.error or 'exit ' + str(step.returncode)}); stderr:\n"
                  f"{step.stderr_tail}", flush=True)
            break
    return result


def summary(steps: list[Step], run: Path, export: Path) -> dict:
    """The steps, the notable files and the evaluation figures, as JSON values."""
    files = {"backup": {k: v for s in steps for k, v in s.result.get("backup_files", {}).items()},
             "stage_weights": {str(p.relative_to(run)): p.stat().st_size for p in sorted(run.glob("stage*/*.h5"))},
             "export": {str(p.relative_to(export)): p.stat().st_size for p in sorted(export.rglob("*")) if p.is_file()}}
    return {"steps": [{**asdict(s), "command_line": shlex.join(s.command)} for s in steps], "files": files,
            "evaluation": next((s.result for s in steps if s.name.startswith("evaluation")), {})}


def write(out: Path, result: dict) -> None:
    (out / "rehearsal.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "rehearsal.md").write_text(markdown(result) + "\n")


def machine() -> dict:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "absent"
    return {"cpu_count": os.cpu_count(), "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB, 1),
            "python": platform.python_version(), "tensorflow": version("tensorflow"), "keras": version("keras"),
            "numpy": version("numpy"), "platform": platform.platform(), "load_average": os.getloadavg()}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"### Rehearsal of the `{result['preset']}` run{' (--smoke: CPU size)' if result['smoke'] else ''} "
             f"— {result['date']}", "",
             f"{m['cpu_count']} CPUs, {m['ram_gb']} GB RAM, Python {m['python']}, TensorFlow {m['tensorflow']}, "
             f"Keras {m['keras']}; {result['steps_per_epoch']} steps per epoch; {result['total_s']:.0f} s in all"
             f"{'' if result['ok'] else '; **FAILED**'}.", "",
             "| step | wall s | peak RSS GB | disk written | notes |", "|---|---:|---:|---:|---|"]
    for s in result["steps"]:
        status = "" if s["returncode"] == 0 or s["killed"] else f"exit {s['returncode']}: "
        lines.append(f"| {s['name']} | {s['wall_s']:.1f} | {s['peak_rss_gb']:.2f} | {human(s['disk_written'])} | "
                     f"{status}{s['notes']} |")
    f = result["files"]
    backups: dict[str, int] = {}
    for path, size in f["backup"].items():
        folder = path.rsplit("/", 1)[0]
        backups[folder] = max(backups.get(folder, 0), size)
    notable = {**{f"{k}/*.h5 (largest)": v for k, v in backups.items()}, **f["stage_weights"]}
    lines += ["", "Files: " + "; ".join(f"`{k}` {human(v)}" for k, v in notable.items())
              + f"; export folder {human(sum(f['export'].values()))} ({len(f['export'])} files).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="coco", choices=list(D.SIZES))
    ap.add_argument("--out", default="/tmp/dpcnn-rehearsal", help="output folder (never inside the repository)")
    ap.add_argument("--smoke", action="store_true", help="a small dataset and the CPU-sized model (< 2 min)")
    ap.add_argument("--steps", type=int, default=3, help="steps per epoch of each stage")
    ap.add_argument("--eval-images", type=int, default=200, help="test images encoded for the extrapolation")
    ap.add_argument("--child", choices=("generate", "build", "encode"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--set", nargs="+", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        got = {"generate": lambda: D.generate(args.preset, Path(args.data), args.smoke),
               "build": lambda: build(args.preset, args.set),
               "encode": lambda: encode(args.run, args.eval_images)}[args.child]()
        print(json.dumps(got))
        return
    if Path(args.out).resolve().is_relative_to(REPO):
        ap.error(f"--out {args.out} is inside the repository: choose a folder outside it")
    result = rehearse(args)
    print("\n" + markdown(result))
    print(f"[rehearse] wrote {Path(args.out) / 'rehearsal.json'} and {Path(args.out) / 'rehearsal.md'}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
