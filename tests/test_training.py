"""Two-stage training: run folder, overfitting a handful of pairs, kill-and-resume, NaN, mirrored."""

import csv
import json
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

from dpcnn.config import apply_overrides
from dpcnn.run_dir import RunDirError

ROOT = Path(__file__).resolve().parents[1]


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_finished_run_folder_has_everything(tiny_run, tiny_cfg):
    for name in ("config.json", "env.json", "data_report.json", "history.csv", "stage1/model.weights.h5",
                 "stage1/done.json", "stage2/model.weights.h5", "stage2/done.json"):
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "tb").is_dir() and not (tiny_run / "backup").exists()
    assert json.loads((tiny_run / "config.json").read_text()) == json.loads(tiny_cfg.to_json())
    env = json.loads((tiny_run / "env.json").read_text())
    assert {"tensorflow", "keras", "git_sha", "gpus", "python"} <= set(env)
    rows = history(tiny_run)
    assert [(r["stage"], r["epoch"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0")]
    assert float(rows[0]["rank_loss"]) == 0 and float(rows[-1]["rank_loss"]) > 0
    assert all(float(r["val_rsum"]) >= 0 for r in rows)  # validated at the first and the last epoch


def test_finished_or_foreign_run_folders_are_not_overwritten(tiny_run, tiny_cfg, tiny_data):
    from dpcnn.training import train

    with pytest.raises(RunDirError, match="already finished"):
        train(tiny_cfg, tiny_run, data=tiny_data, verbose=0)
    with pytest.raises(RunDirError, match="different configuration.*train.seed"):
        train(apply_overrides(tiny_cfg, ["train.seed=9"]), tiny_run, data=tiny_data, verbose=0)


def test_stage2_alone_needs_stage1(tmp_path, tiny_cfg, tiny_data):
    from dpcnn.training import train

    with pytest.raises(RunDirError, match="stage 1"):
        train(tiny_cfg, tmp_path / "run", stage="2", data=tiny_data, verbose=0)


def test_overfits_a_handful_of_pairs(tiny_cfg, tiny_data):
    import tensorflow as tf

    from dpcnn.model.layers import l2_normalize
    from dpcnn.optimizer import MultiplierSGD, parameter_groups
    from dpcnn.training import build_for

    cfg = apply_overrides(tiny_cfg, ["model.dropout=0"])
    model = build_for(cfg, tiny_data)
    split = tiny_data.splits["train"]
    n = 8
    from dpcnn.data.pipeline import eval_image

    images = tf.stack([eval_image(tf.constant(p), tf.constant([32, 32]), cfg.data, "center") for p in split.paths[:n]])
    first_caption = np.array([np.flatnonzero(split.caption_image == i)[0] for i in range(n)])
    batch = {"images": images, "tokens": tf.constant(split.tokens[first_caption]),
             "labels": tf.constant(split.labels[:n])}
    groups = parameter_groups(model, 1, cfg.train)
    model.configure_stage(1, [g.variable for g in groups], (0, 1, 1), 1.0, "hard")
    model.compile(optimizer=MultiplierSGD(1.0, multipliers={g.variable.path: (g.lr_mult, 1.0) for g in groups}),
                  jit_compile=False)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    first = model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0]
    last = model.fit(ds, steps_per_epoch=150, epochs=1, verbose=0).history["loss"][-1]
    assert last < first / 10, (first, last)
    x = l2_normalize(tf.nn.relu(model.image_features(batch["images"], training=False))).numpy()
    y = l2_normalize(tf.nn.relu(model.text_features(batch["tokens"], training=False))).numpy()
    sims = x @ y.T
    assert (sims.argmax(axis=1) == np.arange(n)).all()  # image → its own caption
    assert (sims.argmax(axis=0) == np.arange(n)).all()  # caption → its own image


def _train_cmd(run: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "dpcnn", "train", "--config", "tiny", "--run", str(run), "--set", *overrides]


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
    deadline = time.time() + 300
    state = None
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
    from dpcnn.callbacks import DivergedError
    from dpcnn.training import train

    cfg = apply_overrides(tiny_cfg, ["train.stage1_schedule=1:0.1,1:1e30", "train.backup_every=100"])
    run = tmp_path / "run"
    with pytest.raises(DivergedError, match="last good weights"):
        train(cfg, run, stage="1", data=tiny_data, verbose=0)
    good = h5_arrays(run / "stage1" / "last_good.weights.h5")
    assert good and all(np.isfinite(v).all() for v in good.values() if v.dtype.kind == "f")
    assert not (run / "stage1" / "done.json").exists()
    assert (run / "backup" / "stage1" / "state.json").exists()


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dpcnn.config import resolve
    from dpcnn.training import train
    import csv
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


def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(tmp_path, data_root, tiny_data):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(data_root), str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    single, mirrored = result["default"], result["mirrored"]
    assert len(single) == len(mirrored) == 3
    # Same global batch and gradients summed over replicas; BN statistics are per replica (4 images
    # instead of 8) and each replica mines in its half of the pool, so the losses agree only closely.
    for a, b in zip(single, mirrored):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=0.03, abs=0.02), (key, a, b)


def test_mixed_precision_computes_in_float16_with_float32_logits_and_loss_scaling(tmp_path, tiny_cfg, tiny_data):
    import keras

    from dpcnn.training import train

    cfg = apply_overrides(tiny_cfg, ["train.mixed_precision=true", "train.validate_every=100"])
    model = train(cfg, tmp_path / "run", stage="1", data=tiny_data, verbose=0)
    assert model.image_encoder.get_layer("fc1").compute_dtype == "float16"
    assert model.text_encoder.get_layer("fc5_2").compute_dtype == "float16"
    assert model.classifier.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(float(history(tmp_path / "run")[-1]["loss"]))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored afterwards
