"""``dpcnn eval``: metrics.json (schema and values), the protocols and their size rule, the features
cache, metrics.md beside the paper, and the figures."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from helpers import PNG_SIGNATURE, check_schema, reference_run_features
from PIL import Image

from dpcnn.cli import main
from dpcnn.errors import ConfigError
from dpcnn.evaluation import plan, reid_entry
from dpcnn.presets import preset
from dpcnn.report import figures, markdown


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """A copy of tiny_run after ``dpcnn eval`` then ``dpcnn eval --stage 1``, with the image files each
    encoding call received recorded."""
    from dpcnn.embedder import Embedder

    run = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(tiny_run, run)
    calls = []
    original = Embedder.encode_image_files

    def spy(self, paths, *args, **kwargs):
        calls.append([str(p) for p in paths])
        return original(self, paths, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Embedder, "encode_image_files", spy)
        rc = (main(["eval", "--run", str(run)]), main(["eval", "--run", str(run), "--stage", "1"]))
        again = main(["eval", "--run", str(run)])  # the features come from the cache now
    return {"run": run, "calls": calls, "rc": (*rc, again)}


def test_eval_writes_metrics_json_in_the_schema(evaluated, tiny_data):
    assert evaluated["rc"] == (0, 0, 0)
    result = json.loads((evaluated["run"] / "metrics.json").read_text())
    assert set(result) == {"full", "meta"}
    check_schema(result["full"])
    test = tiny_data.splits["test"]
    assert (result["full"]["num_images"], result["full"]["num_captions"]) == (test.num_images, test.num_captions)
    meta = result["meta"]
    assert meta["stage"] == 2 and meta["split"] == "test" and meta["config"] == "tiny"
    assert meta["dataset"] == "synthetic" and meta["weights"] == "stage2/model.weights.h5"
    assert meta["test_features"] == {"image_mode": "full", "flip": False, "all_shifts": True}


@pytest.mark.parametrize("stage", [1, 2])
def test_eval_numbers_equal_a_recomputation_from_the_raw_encoders(evaluated, tiny_data, stage):
    from dpcnn.metrics import retrieval_metrics

    test = tiny_data.splits["test"]
    images, texts = reference_run_features(evaluated["run"], [str(p) for p in test.paths], test.captions, stage)
    expected = retrieval_metrics(images @ texts.T, test.caption_image)
    path = evaluated["run"] / ("metrics.json" if stage == 2 else "stage1/metrics.json")
    got = json.loads(path.read_text())["full"]
    assert (got["num_images"], got["num_captions"]) == (expected["num_images"], expected["num_captions"])
    for d in ("i2t", "t2i"):
        assert got[d] == pytest.approx(expected[d], abs=1e-6)


def test_eval_encodes_only_the_test_split_once_per_stage_and_then_reuses_it(evaluated, tiny_data):
    test = [str(p) for p in tiny_data.splits["test"].paths]
    assert evaluated["calls"] == [test, test]  # stage 2, stage 1; the third eval read the cache
    assert len(list((evaluated["run"] / "features").glob("stage2-test-*.npz"))) == 1


def test_stage1_eval_writes_under_stage1_and_keeps_stage2_results(evaluated):
    run = evaluated["run"]
    stage1 = json.loads((run / "stage1" / "metrics.json").read_text())
    check_schema(stage1["full"])
    assert stage1["meta"]["stage"] == 1 and json.loads((run / "metrics.json").read_text())["meta"]["stage"] == 2
    md1 = (run / "stage1" / "metrics.md").read_text()
    assert "ours, stage I |" in md1 and "stage II" not in md1


def test_metrics_md_shows_both_stages_beside_the_notes(evaluated):
    run = evaluated["run"]
    md = (run / "metrics.md").read_text()
    s1 = json.loads((run / "stage1" / "metrics.json").read_text())["full"]
    s2 = json.loads((run / "metrics.json").read_text())["full"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ")}
    assert rows["metric"] == ["ours, stage I", "ours, stage II"]
    assert rows["rsum"] == [f"{s1['rsum']:.1f}", f"{s2['rsum']:.1f}"]
    assert rows["image→text R@10"] == [f"{s1['i2t']['r10']:.1f}", f"{s2['i2t']['r10']:.1f}"]
    assert "No paper row: the synthetic shapes dataset" in md and "CPU-sized configuration" in md
    assert markdown.SPLIT_CAVEAT in md


def test_figures_are_pictures_drawn_without_pyplot_state(evaluated):
    run = evaluated["run"]
    for path in (run / "curves.png", run / "examples.png", run / "stage1" / "examples.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as im:
            assert im.width > 300 and im.height > 300
            assert len(set(np.asarray(im.convert("L").resize((64, 64))).ravel())) > 20  # not a blank canvas
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_protocols_that_do_not_fit_are_skipped_when_defaults_and_refused_when_asked():
    assert plan(("1k", "5k"), 1200, explicit=False) == (["full", "1k"], {"5k": "needs at least 5000 test images, the split has 1200"})
    assert plan(("1k", "5k"), 100, explicit=False)[0] == ["full"]
    assert plan(("reid",), 10, explicit=False) == (["reid"], {})
    with pytest.raises(ConfigError, match="protocol 5k needs at least 5000 test images, the split has 1200"):
        plan(("5k",), 1200, explicit=True)


def test_eval_of_a_coco_preset_on_a_small_split_notes_the_skipped_protocols(evaluated, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["eval"]["protocols"] = ["1k", "5k"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["eval", "--run", str(run)]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert set(result) == {"full", "meta"} and set(result["meta"]["skipped"]) == {"1k", "5k"}
    assert "Skipped protocols" in (run / "metrics.md").read_text()


def test_eval_cli_errors_exit_2_with_one_line(tmp_path, tiny_run, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["eval", "--run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpcnn eval: error:") and "does not exist" in err and err.count("\n") == 1
    assert main(["eval", "--run", str(tiny_run), "--protocol", "1k"]) == 2
    assert "protocol 1k needs at least 1000 test images, the split has 16" in capsys.readouterr().err


def test_read_history_puts_both_stages_on_one_axis(tmp_path, tiny_run):
    path = tmp_path / "history.csv"  # rows out of order and an empty validation cell, as a resume leaves them
    path.write_text("epoch,loss,stage,text_acc,val_rsum\n0,5.0,2,0.5,100\n0,9.0,1,0.1,10\n1,8.0,1,0.2,\n"
                    "2,7.0,1,0.3,30\n1,4.0,2,0.6,120\n")
    h = figures.read_history(path)
    np.testing.assert_array_equal(h.x, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(h.stage, [1, 1, 1, 2, 2])
    np.testing.assert_array_equal(h.columns["loss"], [9, 8, 7, 5, 4])
    assert np.isnan(h.columns["val_rsum"][1]) and h.boundary == 3.5
    assert figures.read_history(tiny_run / "history.csv").boundary == 2.5


def test_choose_examples_is_deterministic_and_mixes_hits_and_misses():
    ranks = np.array([1, 3, 1, 1, 2, 1, 1, 7, 1, 5])
    # hits at 0,2,3,5,6,8 → 4 spread evenly (linspace(0,5,4) → 0,2,3,5) → 0,3,5,8; misses 1,4,7,9 → 1,9
    assert figures.choose_examples(ranks, 4, 2) == [0, 3, 5, 8, 1, 9]
    assert figures.choose_examples(np.array([1, 1, 1, 1, 1, 1, 4]), 4, 2) == [0, 1, 2, 4, 5, 6]
    assert figures.choose_examples(np.arange(2, 10), 4, 2) == [0, 1, 3, 4, 6, 7]
    assert figures.choose_examples(np.array([2, 1]), 4, 2) == [1, 0]


def _entry(n_images=1000, n_captions=5000, shift=0.0):
    d = {"r1": 50.0 + shift, "r5": 80.0, "r10": 90.0, "medr": 1.0, "meanr": 4.5}
    return {"num_images": n_images, "num_captions": n_captions, "i2t": dict(d), "t2i": dict(d), "rsum": 440.0 + shift}


def test_markdown_puts_the_dataset_s_paper_rows_beside_ours():
    coco = markdown.render_markdown(preset("coco"), {
        1: {"1k": _entry(), "5k": _entry(5000, 25010), "full": _entry(5000, 25010), "meta": {"split": "test"}},
        2: {"1k": _entry(shift=1.0), "5k": _entry(5000, 25010), "full": _entry(5000, 25010), "meta": {"split": "test"}},
    })
    sections = coco.split("## Protocol ")[1:]
    assert [s.split(" ", 1)[0] for s in sections] == ["`1k`", "`5k`", "`full`"]
    assert "paper:" in sections[0] and "paper:" in sections[1] and "paper:" not in sections[2]
    assert "| image→text R@1 | 50.0 | 51.0 |" in sections[0]
    val = markdown.render_markdown(preset("flickr30k"), {2: {"full": _entry(), "meta": {"split": "val"}}})
    assert "paper:" not in val and "the paper's numbers are on the test split" in val


def test_reid_entry_and_its_markdown():
    raw = {"num_queries": 6, "num_gallery": 3,
           "t2i": {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 1.5, "map": 70.0}}
    entry = reid_entry(raw)
    assert entry == {"num_images": 3, "num_captions": 6, "i2t": None, "t2i": raw["t2i"], "rsum": 250.0}
    md = markdown.render_markdown(preset("cuhk-pedes"), {2: {"reid": entry, "meta": {"split": "test"}}})
    assert "| text→image R@1 | 50.0 |" in md and "| text→image mAP | 70.0 | – |" in md and "image→text" not in md
