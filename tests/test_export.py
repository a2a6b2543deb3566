"""Tests for dpcnn.export (``dpcnn export``): the files, and ``load_exported`` in a fresh process
without the training code giving the same features as :class:`dpcnn.encoders.Encoders`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dpcnn.cli import main
from dpcnn.export import ExportedModel, load_exported

# The run's config is edited in the "variant" copy to exercise every test-time option that the
# tiny preset leaves off: pre-resize, flip, and one shift instead of all.
VARIANT = {"data": {"resize_shorter": 40}, "eval": {"flip": True, "all_shifts": False}}

ALLOWED_DPCNN_MODULES = {"dpcnn", "dpcnn.export", "dpcnn.utils", "dpcnn.model", "dpcnn.model.layers",
                         "dpcnn.data", "dpcnn.data.vocab"}

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from dpcnn.export import load_exported

    spec = json.load(open(sys.argv[1]))
    for job in spec:
        model = load_exported(job["export"])
        images = np.load(job["images"], allow_pickle=False)
        np.savez(job["out"], images=model.encode_images(images), texts=model.encode_texts(job["captions"]))
    print(json.dumps(sorted(m for m in sys.modules if m == "dpcnn" or m.startswith("dpcnn."))))
""")


def _variant_run(tiny_run, path):
    shutil.copytree(tiny_run, path)
    cfg = json.loads((path / "config.json").read_text())
    for section, values in VARIANT.items():
        cfg[section].update(values)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def _reference(run):
    """Encoders' test-time features of the run's test split (stage 2) and the decoded pixels."""
    from dpcnn.data.pipeline import decode_image
    from dpcnn.encoders import Encoders
    from dpcnn.training import load_trained

    cfg, model, data = load_trained(run, 2)
    enc = Encoders(model.image_encoder, model.text_encoder, cfg)
    test = data.splits["test"]
    pixels = np.stack([decode_image(str(p)).numpy() for p in test.paths]).astype(np.float32)
    return {"images": enc.images(test.paths, test.sizes, progress=False),
            "texts": enc.texts(test.tokens, test.lengths, progress=False),
            "pixels": pixels, "captions": list(test.captions), "cfg": cfg}


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    """{name: (export folder, reference features)} for the tiny run and its variant."""
    root = tmp_path_factory.mktemp("export")
    runs = {"tiny": root / "tiny-run", "variant": _variant_run(tiny_run, root / "variant-run")}
    shutil.copytree(tiny_run, runs["tiny"])
    out = {}
    for name, run in runs.items():
        folder = root / f"{name}-export"
        assert main(["export", "--run", str(run), "--out", str(folder)]) == 0
        out[name] = (folder, _reference(run))
    return out


def test_export_writes_the_five_files(exports, tiny_run, tiny_cfg):
    from dpcnn.config import Config
    from dpcnn.data.vocab import Vocabulary

    folder, ref = exports["tiny"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "image_encoder.keras", "text_encoder.keras", "vocab.json"]
    assert Config.from_dict(json.loads((folder / "config.json").read_text())) == Config.load(tiny_run / "config.json")
    assert len(Vocabulary.load(folder / "vocab.json")) > 0
    readme = (folder / "README.md").read_text()
    for needle in ('keras.saving.load_model("image_encoder.keras", safe_mode=True)',
                   "import dpcnn.model.layers", "from dpcnn.export import load_exported",
                   "RGB 0-255", f"tokens int32 [B, {tiny_cfg.data.max_len}]", "sum over positions"):
        assert needle in readme, needle
    assert "start 0 … L − length" in readme and "horizontal flip" not in readme
    variant = json.loads((exports["variant"][0] / "config.json").read_text())
    assert variant["data"]["resize_shorter"] == 40 and variant["eval"]["flip"] is True
    variant_readme = (exports["variant"][0] / "README.md").read_text()
    for needle in ("resized so its shorter side is 40 px", "plus the same for its horizontal flip",
                   "start 0 (left-aligned)"):
        assert needle in variant_readme, needle


def test_readme_code_runs_in_the_export_folder(exports, monkeypatch):
    folder, _ = exports["tiny"]
    blocks = (folder / "README.md").read_text().split("```python\n")[1:]
    by_hand = blocks[1].split("```")[0]
    monkeypatch.chdir(folder)
    scope: dict = {}
    exec(compile(by_hand, "README.md", "exec"), scope)
    assert scope["scores"].shape == (1, 1)
    assert scope["img"].shape == (1, 32) and scope["txt"].shape == (1, 32)


def test_load_exported_in_a_fresh_process_matches_encoders(exports, tmp_path):
    spec = []
    for name, (folder, ref) in exports.items():
        np.save(tmp_path / f"{name}-pixels.npy", ref["pixels"])
        spec.append({"export": str(folder), "images": str(tmp_path / f"{name}-pixels.npy"),
                     "captions": ref["captions"], "out": str(tmp_path / f"{name}-features.npz")})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "dpcnn.training" not in loaded and "dpcnn.model.dual_path" not in loaded
    assert loaded <= ALLOWED_DPCNN_MODULES, loaded - ALLOWED_DPCNN_MODULES
    for name, (_, ref) in exports.items():
        with np.load(tmp_path / f"{name}-features.npz", allow_pickle=False) as got:
            np.testing.assert_allclose(got["images"], ref["images"], atol=1e-5, err_msg=name)
            np.testing.assert_allclose(got["texts"], ref["texts"], atol=1e-5, err_msg=name)
    # The variant's options change the features (so the comparison above is not vacuous).
    assert np.abs(exports["tiny"][1]["images"] - exports["variant"][1]["images"]).max() > 1e-3
    assert np.abs(exports["tiny"][1]["texts"] - exports["variant"][1]["texts"]).max() > 1e-3


def test_encode_images_accepts_a_list_of_sizes_and_one_image(exports):
    folder, ref = exports["variant"]
    model = load_exported(folder)
    pixels = ref["pixels"]
    wide = np.concatenate([pixels[0], pixels[0][:, :16]], axis=1)  # [32, 48, 3]
    feats = model.encode_images([pixels[1], wide, pixels[2]])
    np.testing.assert_allclose(feats[[0, 2]], ref["images"][[1, 2]], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.encode_images(pixels[2]), ref["images"][[2]], atol=1e-5)


def test_encode_texts_rejects_a_caption_without_vocabulary_words(exports):
    model = load_exported(exports["tiny"][0])
    with pytest.raises(ValueError, match=r"1 caption\(s\) have no word in the vocabulary.*'zebra Quux!'"):
        model.encode_texts(["a red square", "zebra Quux!"])
    with pytest.raises(TypeError, match="list of captions"):
        model.encode_texts("a red square")


@pytest.mark.parametrize("mode,shorter,square", [("full", 0, False), ("full", 40, False), ("full", 40, True),
                                                 ("center", 36, False), ("center", 0, False)])
def test_image_preprocessing_equals_the_evaluation_pipeline(tmp_path, mode, shorter, square):
    import dataclasses

    import tensorflow as tf
    from PIL import Image

    from dpcnn.config import DataConfig
    from dpcnn.data.pipeline import decode_image, eval_image, eval_size

    data = DataConfig(image_size=28, resize_shorter=shorter, resize_square=square)
    config = {"data": dataclasses.asdict(data), "eval": {"image_mode": mode}}
    model = ExportedModel(None, None, None, config)
    rng = np.random.default_rng(1)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(path)
    pixels = decode_image(str(path)).numpy().astype(np.float32)
    size = eval_size(30, 45, data, mode)
    want = eval_image(tf.constant(str(path)), tf.constant(size), data, mode).numpy()
    got = model._preprocess(pixels).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_load_exported_names_missing_files(tmp_path):
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing image_encoder.keras, text_encoder.keras, config.json"):
        load_exported(tmp_path)
