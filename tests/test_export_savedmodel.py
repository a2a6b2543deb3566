"""The TensorFlow-only export (``dpcnn export --format savedmodel``, issue #22).

The SavedModel is loaded in a child process in which ``import dpcnn`` fails (``sys.modules["dpcnn"]
= None``, ``python -I`` in an empty folder holding only a copy of the export), and must give what
``dpcnn.load`` gives on the same inputs: images as arrays and as encoded files, raw captions, and
the token ids of the official tokenisation. The run is the tiny run with the pre-resize (shorter
side 40, aspect kept) and the test-time flip switched on, so both are traced into the graph.

Tolerance: 1e-5 (absolute) on the L2-normalised features; the largest differences measured are
printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from helpers import ROOT, decoded
from PIL import Image

from dpcnn.cli import main
from dpcnn.data.vocab import Vocabulary
from dpcnn.errors import RunError
from dpcnn.export_savedmodel import CaptionTokenizer

ATOL = 1e-5

TRICKY = [
    "A man (left) rides a bike-path.", "  multiple   spaces  ", "", "zzz qqq", "Café au lait, CAFÉ",
    "red\tsquare\nblue", "red\x00 square", "ΣΑΣ red", "İstanbul red", "a,b.c(d)e-f", "x\u00a0red", "red?blue",
    "]^\\-red", "Red RED red", "one two three four five six seven eight nine ten red red red red red",
]
WORDS = ["a", "man", "left", "rides", "bike", "path", "red", "square", "blue", "café", "Café", "σας", "i̇stanbul",
         "b", "c", "d", "e", "f", "Red", "RED", "lait", "au", "CAFÉ", "red?blue", "]^\\", "x\u00a0red", "red\x00"]


@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("split_chars", [" -.,()", " ", " -.,()?", "]^\\- ", "-"])
def test_the_graph_tokeniser_gives_the_ids_of_the_vocabulary(split_chars, lowercase):
    """Punctuation, capitals, non-ASCII (and Unicode lower-casing: final sigma, dotted İ), runs of
    spaces, tabs and newlines, a NUL, a no-break space (not a split character), regex characters
    as split characters, an empty and an all-unknown caption, truncation at max_len."""
    words = list(dict.fromkeys(w.lower() if lowercase else w for w in WORDS))
    vocab = Vocabulary(words, split_chars, lowercase)
    for max_len in (1, 4, 16):
        ids, lengths = vocab.encode_many(TRICKY, max_len)
        tokens, num_words = CaptionTokenizer(vocab, max_len)(tf.constant(TRICKY))
        np.testing.assert_array_equal(tokens.numpy(), ids)
        np.testing.assert_array_equal(num_words.numpy(), lengths)
    assert lengths[TRICKY.index("")] == 0 and lengths[TRICKY.index("zzz qqq")] == 0


def test_an_empty_vocabulary_drops_every_word():
    tokens, num_words = CaptionTokenizer(Vocabulary([]), 3)(tf.constant(["", "a b"]))
    assert tokens.numpy().tolist() == [[0, 0, 0], [0, 0, 0]] and num_words.numpy().tolist() == [0, 0]


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the tiny run with the pre-resize and the flip on, and a metrics.json for the card."""
    out = tmp_path_factory.mktemp("savedmodel") / "run"
    shutil.copytree(tiny_run, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["eval"]["flip"], cfg["data"]["resize_shorter"] = True, 40
    (out / "config.json").write_text(json.dumps(cfg))
    side = {"r1": 12.5, "r5": 43.75, "r10": 62.5, "medr": 6.0, "meanr": 7.1}
    (out / "metrics.json").write_text(json.dumps({"full": {"num_images": 16, "num_captions": 80, "i2t": side,
                                                           "t2i": side, "rsum": 237.5}}))
    return out


@pytest.fixture(scope="module")
def export(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("savedmodel") / "model"
    assert main(["export", "--run", str(run), "--out", str(out), "--format", "savedmodel"]) == 0
    return out


@pytest.fixture(scope="module")
def photos(tiny_data, tmp_path_factory):
    """Four test images (JPEG) and a non-square PNG made from one of them (60 × 36)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = [str(p) for p in tiny_data.splits["test"].paths[:4]]
    wide = folder / "wide.png"
    Image.fromarray(decoded(paths[0])).resize((60, 36), Image.BILINEAR).save(wide)
    return [*paths, str(wide)]


NO_DPCNN = textwrap.dedent("""
    import sys
    sys.modules["dpcnn"] = None  # as on a machine without dpcnn: every import of it fails
    try:
        import dpcnn  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("dpcnn could be imported")
""")

CHILD = NO_DPCNN + textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf

    args = json.loads(sys.argv[1])
    model = tf.saved_model.load("model")
    same_size = np.stack([np.load(f) for f in args["same_size"]]).astype(np.float32)  # uint8 → float32
    wide = np.load(args["wide"]).astype(np.float32)[None]
    files = tf.stack([tf.io.read_file(f) for f in args["files"]])
    texts = tf.constant(args["texts"])
    served = model.signatures["encode_texts"](texts=texts)  # the TF Serving signature, by name
    np.savez("out.npz", images=model.encode_images(same_size)["embeddings"].numpy(),
             wide=model.encode_images(wide)["embeddings"].numpy(),
             files=model.encode_image_bytes(files)["embeddings"].numpy(),
             texts=model.encode_texts(texts)["embeddings"].numpy(), served=served["embeddings"].numpy(),
             num_words=model.encode_texts(texts)["num_words"].numpy(), tokens=model.tokenize(texts)["tokens"].numpy())
    signatures = {name: {"inputs": {k: [v.dtype.name, v.shape.as_list()]
                                    for k, v in f.structured_input_signature[1].items()},
                         "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in f.structured_outputs.items()}}
                  for name, f in model.signatures.items()}
    print(json.dumps({"signatures": signatures, "modules": sorted({m.split(".")[0] for m, v in sys.modules.items() if v is not None})}))
""")


def _child(code, work, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-I", "-c", code, *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _elsewhere(tmp_path, export):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copytree(export, work / "model")
    return work


@pytest.mark.slow
def test_the_savedmodel_loads_without_dpcnn_and_matches_dpcnn_load(export, run, photos, tmp_path):
    import dpcnn

    work = _elsewhere(tmp_path, export)
    arrays = [decoded(p) for p in photos]
    for i, a in enumerate(arrays):
        np.save(work / f"image{i}.npy", a)
    texts = ["a big red square above a small blue circle", "A big RED square, (left) of a small-blue circle.",
             "  red   square  ", "Café red", "red\tsquare\nblue", "red " * 20, "zzz qqq", ""]
    args = {"same_size": [f"image{i}.npy" for i in range(4)], "wide": "image4.npy", "files": photos, "texts": texts}
    report = json.loads(_child(CHILD, work, json.dumps(args)).strip().splitlines()[-1])
    assert not [m for m in report["modules"] if m.startswith("dpcnn")]  # so no custom layer was there to load
    got = np.load(work / "out.npz")

    model = dpcnn.load(run)
    ids, lengths = model.vocab.encode_many(texts, model.max_len)
    np.testing.assert_array_equal(got["tokens"], ids)  # the official tokenisation, id by id
    np.testing.assert_array_equal(got["num_words"], lengths)
    known = lengths > 0
    expected = {
        "images": model.encode_images(arrays[:4]),
        "wide": model.encode_images(arrays[4:]),
        "files": model.encode_images(photos),
        "texts": np.concatenate([model.encode_texts([t for t, k in zip(texts, known) if k]),
                                 model.encode_tokens(ids[~known])]),  # no known word: the bias-only feature
    }
    order = np.concatenate([np.flatnonzero(known), np.flatnonzero(~known)])
    differences = {}
    for name, want in expected.items():
        have = got[name][order] if name == "texts" else got[name]
        np.testing.assert_allclose(have, want, atol=ATOL, err_msg=name)
        differences[name] = float(np.abs(have - want).max())
    np.testing.assert_array_equal(got["served"], got["texts"])
    size = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    print(f"\nlargest |SavedModel - dpcnn.load| (atol {ATOL:g}):", differences, f"export {size:,} bytes")

    signatures = report["signatures"]
    assert set(signatures) == {"serving_default", "encode_images", "encode_image_bytes", "encode_texts", "tokenize"}
    info = json.loads((export / "export.json").read_text())
    for name, spec in info["signatures"].items():  # what export.json and the README say is what loads
        assert signatures[name] == spec  # [dtype, shape], None for any size
    assert signatures["serving_default"] == signatures["encode_images"]


@pytest.mark.slow
def test_the_readme_is_a_model_card_and_its_plain_tensorflow_example_runs(export, run, photos, tmp_path):
    import dpcnn

    readme = (export / "README.md").read_text()
    info = json.loads((export / "export.json").read_text())
    assert info["model_format"] == "savedmodel" and info["trained_on"]["splits"]["train"] == {
        "images": 48, "captions": 240}
    for needle in ("train 48 images / 240 captions", "| full | 16 | 80 | 12.5 | 43.8 | 62.5 |", "237.5",
                   "**Intended use**", "does not generate captions", "**A demonstration model.**",
                   "dropped (never guessed)", "generated by dpcnn", "`encode_texts` | `texts` string [-1]",
                   "tensorflow/serving", "`serving_default`", "num_words"):
        assert needle in readme, needle
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) == 6  # import + five lines
    main_readme = ROOT.joinpath("README.md").read_text()
    in_main = main_readme.split("tests/test_export_savedmodel.py checks they agree", 1)[1]
    in_main = in_main.split("```python\n", 1)[1].split("```", 1)[0]
    assert in_main == code.replace("path/to/this/folder", "exports/demo-tf").replace(
        '"photo1.jpg", "photo2.png"', '"my_photos/photo1.jpg", "my_photos/photo2.png"')
    work = _elsewhere(tmp_path, export)
    for i, p in enumerate(photos[:2]):
        shutil.copy(p, work / f"photo{i + 1}.{'jpg' if i == 0 else 'png'}")
    out = _child(NO_DPCNN + code.replace("path/to/this/folder", "model"), work)
    printed = np.array(out.strip().splitlines()[-1].strip("[]").split(), dtype=np.float32)
    model = dpcnn.load(run)
    want = model.encode_images(photos[:2]) @ model.encode_texts(["a big red circle above a blue square"])[0]
    np.testing.assert_allclose(printed, want, atol=1e-5)


@pytest.mark.slow
def test_dpcnn_load_and_search_refuse_a_savedmodel_export_in_one_line(export, run, capsys):
    import dpcnn

    with pytest.raises(RunError, match="TensorFlow-only export .*tf.saved_model.load"):
        dpcnn.load(export)
    capsys.readouterr()
    assert main(["search", "--model", str(export), "--text", "a red square"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorFlow-only export" in err[0]
    # the other format into the same folder is refused: no folder ever mixes the two
    assert main(["export", "--run", str(run), "--out", str(export)]) == 2
    assert "holds a dpcnn export in the savedmodel format" in capsys.readouterr().err
