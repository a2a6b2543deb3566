"""Tests for dpcnn.report (``dpcnn eval``): metrics.json schema and values, stage I files,
metrics.md beside the paper, the figures, and the helpers behind them.

The trained model is the session's ``tiny_run`` (copied before anything is written into it).
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from dpcnn import report
from dpcnn.cli import main
from dpcnn.config import preset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """A copy of tiny_run after ``dpcnn eval`` then ``dpcnn eval --stage 1``, with every
    Encoders.images / Encoders.texts call recorded (spies that still encode)."""
    from dpcnn.encoders import Encoders

    run = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(tiny_run, run)
    calls = {"images": [], "texts": []}
    original_images, original_texts = Encoders.images, Encoders.texts

    def images(self, paths, sizes, *args, **kwargs):
        calls["images"].append(np.array(paths, dtype=object))
        return original_images(self, paths, sizes, *args, **kwargs)

    def texts(self, tokens, lengths, *args, **kwargs):
        calls["texts"].append(np.array(tokens))
        return original_texts(self, tokens, lengths, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Encoders, "images", images)
        mp.setattr(Encoders, "texts", texts)
        rc2 = main(["eval", "--run", str(run)])
        rc1 = main(["eval", "--run", str(run), "--stage", "1"])
    return {"run": run, "calls": calls, "rc": (rc2, rc1)}


def check_schema(entry: dict) -> None:
    """DESIGN §1: exactly these keys, these types, recalls in 0-100, ranks ≥ 1."""
    assert set(entry) == {"num_images", "num_captions", "i2t", "t2i", "rsum"}
    assert type(entry["num_images"]) is int and entry["num_images"] > 0
    assert type(entry["num_captions"]) is int and entry["num_captions"] > 0
    for d in ("i2t", "t2i"):
        assert set(entry[d]) == {"r1", "r5", "r10", "medr", "meanr"}
        for k in ("r1", "r5", "r10"):
            assert type(entry[d][k]) is float and 0.0 <= entry[d][k] <= 100.0
        assert entry[d]["r1"] <= entry[d]["r5"] <= entry[d]["r10"]
        assert type(entry[d]["medr"]) is float and entry[d]["medr"] >= 1.0
        assert type(entry[d]["meanr"]) is float and entry[d]["meanr"] >= 1.0
    assert type(entry["rsum"]) is float
    assert entry["rsum"] == pytest.approx(sum(entry[d][k] for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")))


# --------------------------------------------------------------------------------------------
# dpcnn eval on the tiny run
# --------------------------------------------------------------------------------------------


def test_eval_writes_metrics_json_in_the_schema(evaluated, tiny_data):
    assert evaluated["rc"] == (0, 0)
    result = json.loads((evaluated["run"] / "metrics.json").read_text())
    assert set(result) == {"full", "meta"}  # the tiny preset's eval.protocols, plus meta
    check_schema(result["full"])
    test = tiny_data.splits["test"]
    assert result["full"]["num_images"] == test.num_images
    assert result["full"]["num_captions"] == test.num_captions
    meta = result["meta"]
    assert meta["stage"] == 2 and meta["split"] == "test" and meta["config"] == "tiny"
    assert meta["dataset"] == "synthetic" and meta["weights"] == "stage2/model.weights.h5"
    assert meta["test_features"] == {"image_mode": "full", "flip": False, "all_shifts": True}


@pytest.mark.parametrize("stage", [1, 2])
def test_eval_numbers_equal_an_independent_recomputation(evaluated, stage):
    from dpcnn.encoders import Encoders
    from dpcnn.metrics import retrieval_metrics
    from dpcnn.training import load_trained

    run = evaluated["run"]
    cfg, model, data = load_trained(run, stage)
    encoders = Encoders(model.image_encoder, model.text_encoder, cfg)
    test = data.splits["test"]
    images = encoders.images(test.paths, test.sizes, progress=False)
    texts = encoders.texts(test.tokens, test.lengths, progress=False)
    expected = retrieval_metrics(images @ texts.T, test.caption_image)
    path = run / "metrics.json" if stage == 2 else run / "stage1" / "metrics.json"
    got = json.loads(path.read_text())["full"]
    assert got["num_images"] == expected["num_images"]
    assert got["num_captions"] == expected["num_captions"]
    for d in ("i2t", "t2i"):
        assert got[d] == pytest.approx(expected[d], abs=1e-6)
    assert got["rsum"] == pytest.approx(expected["rsum"], abs=1e-6)


def test_eval_encodes_only_the_requested_split_once_per_run(evaluated, tiny_data):
    test = tiny_data.splits["test"]
    calls = evaluated["calls"]
    assert len(calls["images"]) == 2 and len(calls["texts"]) == 2  # one eval of stage 2, one of stage 1
    for paths in calls["images"]:
        assert paths.tolist() == test.paths.tolist()
    for tokens in calls["texts"]:
        np.testing.assert_array_equal(tokens, test.tokens)


def test_stage1_eval_writes_under_stage1_and_keeps_stage2_results(evaluated):
    run = evaluated["run"]
    stage1 = json.loads((run / "stage1" / "metrics.json").read_text())
    assert set(stage1) == {"full", "meta"}
    check_schema(stage1["full"])
    assert stage1["meta"]["stage"] == 1 and stage1["meta"]["weights"] == "stage1/model.weights.h5"
    assert json.loads((run / "metrics.json").read_text())["meta"]["stage"] == 2
    assert (run / "stage1" / "metrics.md").is_file()
    assert (run / "stage1" / "examples.png").is_file()
    md1 = (run / "stage1" / "metrics.md").read_text()
    assert "ours, stage I |" in md1 and "stage II" not in md1


def test_metrics_md_shows_both_stages_beside_the_notes(evaluated):
    run = evaluated["run"]
    md = (run / "metrics.md").read_text()
    s1 = json.loads((run / "stage1" / "metrics.json").read_text())["full"]
    s2 = json.loads((run / "metrics.json").read_text())["full"]
    assert "| metric | ours, stage I | ours, stage II |" in md
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ")}
    assert rows["rsum"] == [f"{s1['rsum']:.1f}", f"{s2['rsum']:.1f}"]
    assert rows["image→text R@10"] == [f"{s1['i2t']['r10']:.1f}", f"{s2['i2t']['r10']:.1f}"]
    assert rows["text→image Med r"] == [f"{s1['t2i']['medr']:g}", f"{s2['t2i']['medr']:g}"]
    assert "No paper row: the synthetic shapes dataset" in md
    assert "CPU-sized configuration" in md
    assert "`dpcnn train --config demo-full --run runs/demo-full`" in md
    assert report.SPLIT_CAVEAT in md


def test_report_figures_are_valid_pngs(evaluated):
    run = evaluated["run"]
    for path in (run / "curves.png", run / "examples.png", run / "stage1" / "examples.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 300
    if "matplotlib.pyplot" in sys.modules:  # the report draws on Agg canvases, never through pyplot
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_eval_cli_errors_exit_2(tmp_path, tiny_run, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["eval", "--run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "dpcnn eval: error:" in err and str(missing) in err and "does not exist" in err

    assert main(["eval", "--run", str(tiny_run), "--protocol", "1k"]) == 2  # writes nothing
    err = capsys.readouterr().err
    assert "protocol 1k needs at least 1000 test images, the split has 16" in err
    assert not (tiny_run / "metrics.json").exists()


# --------------------------------------------------------------------------------------------
# Helpers: history, example choice, the paper table, markdown
# --------------------------------------------------------------------------------------------


def test_read_history_puts_both_stages_on_one_axis(tmp_path, tiny_run):
    # Rows out of order and an empty validation cell, as a resumed run can leave them.
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,loss,stage,text_acc,val_rsum\n"
        "0,5.0,2,0.5,100\n"
        "0,9.0,1,0.1,10\n"
        "1,8.0,1,0.2,\n"
        "2,7.0,1,0.3,30\n"
        "1,4.0,2,0.6,120\n"
    )
    h = report.read_history(path)
    np.testing.assert_array_equal(h.x, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(h.stage, [1, 1, 1, 2, 2])
    np.testing.assert_array_equal(h.columns["loss"], [9, 8, 7, 5, 4])
    assert np.isnan(h.columns["val_rsum"][1]) and h.columns["val_rsum"][4] == 120
    assert h.boundary == 3.5
    assert set(h.columns) == {"loss", "text_acc", "val_rsum"}

    # The tiny run: 2 stage-I epochs, then 1 stage-II epoch (the tiny preset's schedules).
    tiny = report.read_history(tiny_run / "history.csv")
    np.testing.assert_array_equal(tiny.stage, [1, 1, 2])
    assert tiny.boundary == 2.5

    only_one = tmp_path / "one.csv"
    only_one.write_text("epoch,loss,stage\n0,1.0,1\n1,0.5,1\n")
    assert report.read_history(only_one).boundary is None


def test_choose_examples_is_deterministic_and_mixes_hits_and_misses():
    ranks = np.array([1, 3, 1, 1, 2, 1, 1, 7, 1, 5])
    # hits at 0,2,3,5,6,8 → 4 spread evenly: linspace(0,5,4) = 0,1.67,3.33,5 → idx 0,2,3,5 → 0,3,5,8
    # misses at 1,4,7,9 → 2 spread: idx 0,3 → 1,9
    assert report.choose_examples(ranks, 4, 2) == [0, 3, 5, 8, 1, 9]
    # only one miss: five hits fill up to six (linspace(0,5,5) = 0,1.25,2.5,3.75,5 → 0,1,2,4,5)
    assert report.choose_examples(np.array([1, 1, 1, 1, 1, 1, 4]), 4, 2) == [0, 1, 2, 4, 5, 6]
    # no hit at all: six misses
    assert report.choose_examples(np.arange(2, 10), 4, 2) == [0, 1, 3, 4, 6, 7]
    # fewer captions than asked for
    assert report.choose_examples(np.array([2, 1]), 4, 2) == [1, 0]


def test_caption_ranks_in_chunks_equal_the_whole_matrix():
    from dpcnn.metrics import ranks_t2i

    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(7, 4)), rng.normal(size=(20, 4))
    owner = rng.integers(0, 7, 20)
    texts[5] = images[owner[5]] * 3  # one sure hit
    ranks = report.caption_ranks(images, texts, owner, chunk=3)
    np.testing.assert_array_equal(ranks, ranks_t2i(images @ texts.T, owner))
    assert ranks[5] == 1 and ranks.shape == (20,)


def test_paper_rows_match_reference_results():
    flickr = report.paper_result("flickr30k", "full")
    assert flickr.i2t == (55.6, 81.9, 89.5) and flickr.t2i == (39.1, 69.2, 80.9) and flickr.rsum == 416.2
    assert "ResNet-152" in flickr.how_sure
    assert report.paper_result("coco", "1k").rsum == 467.9
    assert report.paper_result("coco", "5k").i2t == (41.2, 70.5, 81.1)
    cuhk = report.paper_result("cuhk-pedes", "reid")
    assert cuhk.i2t is None and cuhk.t2i == (44.40, 66.26, 75.07)
    for dataset, protocol in (("synthetic", "full"), ("coco", "full"), ("coco-format", "full"), ("flickr30k", "1k")):
        assert report.paper_result(dataset, protocol) is None
    for row in report.PAPER_RESULTS:  # the rsum column is the sum of the six recalls
        if row.rsum is not None:
            assert row.rsum == pytest.approx(sum(row.i2t) + sum(row.t2i), abs=0.05)
    assert isinstance(report.PAPER_RESULTS, tuple)


def _fake_entry(n_images=1000, n_captions=5000, shift=0.0):
    d = {"r1": 50.0 + shift, "r5": 80.0, "r10": 90.0, "medr": 1.0, "meanr": 4.5}
    return {"num_images": n_images, "num_captions": n_captions, "i2t": dict(d), "t2i": dict(d), "rsum": 440.0 + shift}


def test_markdown_puts_the_paper_beside_ours():
    cfg = preset("flickr30k")
    md = report.render_markdown(cfg, {2: {"full": _fake_entry(), "meta": {"split": "test", "stage": 2}}})
    assert '| metric | ours, stage II | paper: Flickr30k 1K test, "ResNet" |' in md
    assert "| image→text R@1 | 50.0 | 55.6 |" in md
    assert "| text→image R@10 | 90.0 | 80.9 |" in md
    assert "| image→text Med r | 1 | 1 † |" in md
    assert "| rsum | 440.0 | 416.2 |" in md
    assert "how sure: cited verbatim by later papers; backbone may be ResNet-152" in md
    assert report.SPLIT_CAVEAT in md and "demo-full" not in md

    coco = report.render_markdown(preset("coco"), {
        1: {"1k": _fake_entry(), "5k": _fake_entry(5000, 25010), "meta": {"split": "test"}},
        2: {"1k": _fake_entry(shift=1.0), "5k": _fake_entry(5000, 25010), "meta": {"split": "test"}},
    })
    assert "| metric | ours, stage I | ours, stage II | paper: MSCOCO 1K (mean of 5 folds), ResNet-50 |" in coco
    assert "| image→text R@1 | 50.0 | 51.0 | 65.6 |" in coco
    assert "paper: MSCOCO 5K, ResNet-50 |" in coco and "| rsum | 440.0 | 440.0 | 337.9 |" in coco

    val = report.render_markdown(cfg, {2: {"full": _fake_entry(), "meta": {"split": "val"}}})
    assert "paper:" not in val and "No paper row: the paper's numbers are on the test split" in val


def test_reid_entry_and_markdown():
    raw = {"num_queries": 6, "num_gallery": 3,
           "t2i": {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.5, "map": 70.0}}
    entry, extra = report.schema_entry("reid", raw)
    assert entry == {"num_images": 3, "num_captions": 6, "i2t": None, "t2i": raw["t2i"], "rsum": 250.0}
    assert extra == {}
    md = report.render_markdown(preset("cuhk-pedes"), {2: {"reid": entry, "meta": {"split": "test"}}})
    assert "| text→image R@1 | 50.0 | 44.40 |" in md
    assert "| text→image mAP | 70.0 | – |" in md
    assert "image→text" not in md

    folds = [_fake_entry()] * 5
    entry, extra = report.schema_entry("1k", {**_fake_entry(), "folds": folds})
    assert set(entry) == {"num_images", "num_captions", "i2t", "t2i", "rsum"} and extra == {"folds": folds}
