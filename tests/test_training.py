"""Two-stage training: the run folder, resume (SIGKILL, changed run-environment keys), NaN, overfitting,
mirrored on two logical CPUs, mixed precision, XLA."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import MIRRORED_TOLERANCE, ROOT, history

from dpcnn.config import apply_overrides
from dpcnn.errors import DivergedError, RunError


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_finished_run_folder_has_everything_inference_needs(tiny_run, tiny_cfg, tiny_data):
    for name in ("config.json", "env.json", "data_report.json", "history.csv", "vocab.json", "inference.json",
                 "captions.txt", "stage1/model.weights.h5", "stage1/done.json", "stage2/model.weights.h5",
                 "stage2/done.json"):
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "tb").is_dir() and not (tiny_run / "backup").exists()
    assert json.loads((tiny_run / "config.json").read_text()) == json.loads(tiny_cfg.to_json())
    info = json.loads((tiny_run / "inference.json").read_text())
    assert info["num_classes"] == tiny_data.num_classes and info["vocab_size"] == len(tiny_data.vocab)
    assert len((tiny_run / "captions.txt").read_text().splitlines()) == tiny_data.splits["train"].num_captions
    rows = history(tiny_run)
    assert [(r["stage"], r["epoch"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0")]
    assert float(rows[0]["rank_loss"]) == 0 and float(rows[-1]["rank_loss"]) > 0
    # validation is measured at the first and last epoch of each stage; its rsum is the sum of its recalls
    for row in rows:
        recalls = [float(row[f"val_{d}_r{k}"]) for d in ("i2t", "t2i") for k in (1, 5, 10)]
        assert float(row["val_rsum"]) == pytest.approx(sum(recalls)) and all(0 <= r <= 100 for r in recalls)


def _recalls_by_hand(images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent, both directions, straight from the cosine matrix (no dpcnn metric code)."""
    scores = images @ texts.T  # [N, M]
    out = {}
    for k in (1, 5, 10):
        hits = [np.isin(np.argsort(-scores[i], kind="stable")[:k], np.flatnonzero(caption_image == i)).any()
                for i in range(len(images))]
        out[f"val_i2t_r{k}"] = 100.0 * np.mean(hits)
        out[f"val_t2i_r{k}"] = 100.0 * np.mean([caption_image[j] in np.argsort(-scores[:, j], kind="stable")[:k]
                                                 for j in range(texts.shape[0])])
    return out


def test_logged_validation_recalls_are_those_of_the_saved_weights(tiny_run, tiny_cfg, tiny_data):
    # The history's last validation row of each stage must be the R@K of that stage's saved weights on
    # the first train.val_images validation images, recomputed here from the run's features by hand.
    from dpcnn.run import Run

    run, val = Run.open(tiny_run), tiny_data.splits["val"].subset(tiny_cfg.train.val_images)
    rows = history(tiny_run)
    for stage in (1, 2):
        row = [r for r in rows if r["stage"] == str(stage)][-1]
        embedder = run.embedder(stage)
        images = embedder.encode_image_files(val.paths, val.sizes, progress=False)
        texts = embedder.encode_tokens(val.tokens, progress=False)
        expected = _recalls_by_hand(images, texts, val.caption_image)
        assert {k: float(row[k]) for k in expected} == pytest.approx(expected, abs=1e-3), stage


def test_finished_or_foreign_run_folders_are_not_overwritten(tiny_run, tiny_cfg, tiny_data):
    from dpcnn.training.trainer import train

    with pytest.raises(RunError, match="already finished"):
        train(tiny_cfg, tiny_run, data=tiny_data, verbose=0)
    with pytest.raises(RunError, match="different configuration.*train.seed"):
        train(apply_overrides(tiny_cfg, ["train.seed=9"]), tiny_run, data=tiny_data, verbose=0)


def test_training_is_reproducible_run_to_run(tiny_run, data_root, tmp_path):
    """The same config on the same machine gives the same weights, bit for bit, in a fresh process
    (the demo's figures are reproducible; other machines or thread counts may differ: README)."""
    run = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "dpcnn", "train", "--config", "tiny", "--run", str(run),
                    "--set", f"data.root={data_root}"], check=True, capture_output=True, cwd=tmp_path)
    first, second = h5_arrays(tiny_run / "stage2" / "model.weights.h5"), h5_arrays(run / "stage2" / "model.weights.h5")
    assert first.keys() == second.keys() and len(first) > 20
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)


def test_stage2_alone_needs_stage1(tmp_path, tiny_cfg, tiny_data):
    from dpcnn.training.trainer import train

    with pytest.raises(RunError, match="stage 1"):
        train(tiny_cfg, tmp_path / "run", stage="2", data=tiny_data, verbose=0)


def test_ranking_alone_ablation_trains_stage2_from_the_initial_weights(tmp_path, tiny_cfg, tiny_data):
    """train.with_stage1=false: no stage I (and --stage 1 is refused); stage II starts from the built weights."""
    from dpcnn.training.trainer import train

    cfg = apply_overrides(tiny_cfg, ["train.with_stage1=false", "train.stage2_loss_weights=2,0,0"])
    with pytest.raises(RunError, match="train.with_stage1=false"):
        train(cfg, tmp_path / "refused", stage="1", data=tiny_data, verbose=0)
    run = tmp_path / "run"
    train(cfg, run, data=tiny_data, verbose=0)
    assert (run / "stage2" / "done.json").is_file() and not (run / "stage1").exists()
    rows = history(run)
    assert {r["stage"] for r in rows} == {"2"} and all(float(r["image_loss"]) > 0 for r in rows)
    final = json.loads((run / "stage2" / "done.json").read_text())["final"]
    assert final["loss"] == pytest.approx(2 * final["rank_loss"], rel=1e-4)  # the instance losses weigh 0


def test_resume_accepts_changed_run_environment_keys_but_not_model_keys(tmp_path, tiny_cfg, tiny_data, caplog):
    from dpcnn.training.trainer import train

    run = tmp_path / "run"
    train(tiny_cfg, run, stage="1", data=tiny_data, verbose=0)
    moved = apply_overrides(tiny_cfg, ["train.mixed_precision=false", "train.backup_every=7"])
    with pytest.raises(RunError, match="different configuration.*model.embed_dim"):
        train(apply_overrides(moved, ["model.embed_dim=16"]), run, stage="all", data=tiny_data, verbose=0)
    with caplog.at_level("INFO", logger="dpcnn"):
        train(moved, run, stage="all", data=tiny_data, verbose=0)
    assert "changed run-environment settings" in caplog.text and "train.backup_every: 3 → 7" in caplog.text
    assert (run / "stage2" / "done.json").is_file()
    assert json.loads((run / "config.json").read_text())["train"]["backup_every"] == 7


def test_overfits_a_handful_of_pairs(tiny_cfg, tiny_data):
    import tensorflow as tf

    from dpcnn.model.dual_path import build_dual_path
    from dpcnn.model.layers import pre_resize_image
    from dpcnn.training.stages import compile_stage

    cfg = apply_overrides(tiny_cfg, ["model.dropout=0", "train.stage1_schedule=1:1.0"])
    model = build_dual_path(cfg, tiny_data)
    split, n = tiny_data.splits["train"], 8
    from dpcnn.data.images import decode_image

    images = tf.stack([pre_resize_image(decode_image(str(p)), 0, False, 28) for p in split.paths[:n]])
    first_caption = np.array([np.flatnonzero(split.caption_image == i)[0] for i in range(n)])
    batch = {"images": images, "tokens": tf.constant(split.tokens[first_caption]), "labels": tf.constant(split.labels[:n])}
    task = compile_stage(model, cfg, 1, steps_per_epoch=150)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    first = task.fit(ds, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0]
    task.fit(ds, steps_per_epoch=150, epochs=1, verbose=0)
    last = task.fit(ds, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0]
    assert last < first / 10, (first, last)
    x = model.ranking_features(model.image_embedding(images)).numpy()
    y = model.ranking_features(model.text_embedding(batch["tokens"])).numpy()
    sims = x @ y.T
    assert (sims.argmax(axis=1) == np.arange(n)).all() and (sims.argmax(axis=0) == np.arange(n)).all()


def _train_cmd(run: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "dpcnn", "train", "--config", "tiny", "--run", str(run), "--set", *overrides]


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_losses(tmp_path, data_root, tiny_data):
    overrides = [f"data.root={data_root}", "train.stage1_schedule=12:0.1", "train.stage2_schedule=2:0.1",
                 "train.backup_every=2", "train.validate_every=100"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(straight, overrides), check=True, env=env, capture_output=True, cwd=ROOT)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, overrides), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    state_file = killed / "backup" / "stage1" / "state.json"
    deadline, state = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["epoch"] >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state and state["epoch"] >= 4, "the run was not caught mid-stage"
    assert not (killed / "stage1" / "done.json").exists()
    at_kill = json.loads(state_file.read_text())
    resumed = subprocess.run(_train_cmd(killed, overrides), env=env, capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at epoch {at_kill['epoch'] + 1}, step {at_kill['step']}" in resumed.stderr

    a, b = history(straight), history(killed)
    assert [(r["stage"], r["epoch"]) for r in a] == [(r["stage"], r["epoch"]) for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "image_loss", "text_loss", "rank_loss", "image_acc", "text_acc", "lr"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5, abs=1e-6), (ra["stage"], ra["epoch"], key)
    wa, wb = h5_arrays(straight / "stage2" / "model.weights.h5"), h5_arrays(killed / "stage2" / "model.weights.h5")
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_nan_loss_stops_and_keeps_the_last_good_weights(tmp_path, tiny_cfg, tiny_data):
    from dpcnn.training.trainer import train

    cfg = apply_overrides(tiny_cfg, ["train.stage1_schedule=1:0.1,1:1e30", "train.backup_every=100"])
    run = tmp_path / "run"
    with pytest.raises(DivergedError, match="last good weights"):
        train(cfg, run, stage="1", data=tiny_data, verbose=0)
    good = h5_arrays(run / "stage1" / "last_good.weights.h5")
    assert good and all(np.isfinite(v).all() for v in good.values() if v.dtype.kind == "f")
    assert not (run / "stage1" / "done.json").exists()
    assert (run / "backup" / "stage1" / "state.json").exists()


def test_a_failed_backup_write_keeps_the_previous_backup(tmp_path, tiny_cfg, tiny_data, monkeypatch):
    """A full disk while writing a checkpoint: the error reaches the user, the last backup still loads."""
    import keras

    from dpcnn.training import backups, callbacks
    from dpcnn.training.trainer import train

    cfg = apply_overrides(tiny_cfg, ["train.backup_every=2"])
    calls = {"n": 0}
    original = keras.Model.save_weights

    def full_disk(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device", str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_disk)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        train(cfg, run, stage="1", data=tiny_data, verbose=0)
    folder = run / "backup" / "stage1"
    state = callbacks.read_state(folder)
    assert state is not None and state["serial"] == 2 and (folder / state["file"]).is_file()
    assert (folder / backups.next_slot(state["file"])).read_bytes() == b"partial"  # the failed write: the other slot
    monkeypatch.setattr(keras.Model, "save_weights", original)
    train(cfg, run, stage="1", data=tiny_data, verbose=0)  # resumes from the intact backup
    assert (run / "stage1" / "done.json").is_file()


MIRRORED = textwrap.dedent("""
    import csv, json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dpcnn.presets import resolve
    from dpcnn.training.trainer import train
    out = {}
    for strategy in ("default", "mirrored"):
        cfg = resolve("tiny", [f"data.root={sys.argv[1]}", f"train.strategy={strategy}", "model.dropout=0",
                               "train.stage1_schedule=2:0.1", "train.stage2_schedule=1:0.1",
                               "train.negative_pool=8", "train.validate_every=100"])
        run = f"{sys.argv[2]}/{strategy}"
        train(cfg, run, verbose=0)
        out[strategy] = [{k: float(v) for k, v in r.items() if k in ("loss", "rank_loss", "image_loss", "text_loss")}
                         for r in csv.DictReader(open(run + "/history.csv"))]
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(tmp_path, data_root, tiny_data):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(data_root), str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    single, mirrored = result["default"], result["mirrored"]
    assert len(single) == len(mirrored) == 3
    # Same global batch and gradients summed over replicas; BN statistics are per replica (4 images
    # instead of 8) and each replica mines in its half of the pool, so the losses agree only closely
    # (MIRRORED_TOLERANCE: measured, in helpers.py).
    for a, b in zip(single, mirrored):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=MIRRORED_TOLERANCE[key]), (key, a, b)


def test_mixed_precision_computes_in_float16_with_float32_logits_and_loss_scaling(tmp_path, tiny_cfg, tiny_data,
                                                                                   monkeypatch):
    import keras
    import tensorflow as tf

    from dpcnn.training import trainer

    tasks, compile_stage = [], trainer.compile_stage

    def recorded(*args, **kwargs):  # the stage object train() fits
        tasks.append(compile_stage(*args, **kwargs))
        return tasks[-1]

    monkeypatch.setattr(trainer, "compile_stage", recorded)
    cfg = apply_overrides(tiny_cfg, ["train.mixed_precision=true", "train.validate_every=100"])
    model = trainer.train(cfg, tmp_path / "run", stage="1", data=tiny_data, verbose=0)
    (task,) = tasks
    assert isinstance(task.optimizer, keras.optimizers.LossScaleOptimizer)  # dynamic loss scaling
    scale = float(task.optimizer.dynamic_scale)  # 2^15 at the start, halved at each overflow
    assert scale >= 2 and math.log2(scale).is_integer()
    assert float(task.scaled(tf.constant(3.0))) == 3.0 * scale  # the step differentiates the scaled loss
    assert model.image_encoder.get_layer("fc1").compute_dtype == "float16"
    assert model.text_encoder.get_layer("fc5_2").compute_dtype == "float16"
    assert model.classifier.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert np.isfinite(float(history(tmp_path / "run")[-1]["loss"]))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored afterwards
