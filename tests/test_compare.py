"""dpcnn.compare (``make compare``): the variants' settings, the shared stage I, equal budgets, the
mean ± std table (values worked out by hand) and the picture."""

from __future__ import annotations

import filecmp

import pytest

from dpcnn import compare
from dpcnn.presets import resolve


def test_variant_overrides_spell_out_each_ablation():
    base = resolve("demo")  # stage I 150 × 1.0; stage II 50 × 1.0 + 10 × 0.1; weights 2 : 1 : 0.1
    assert compare.variant_overrides("paper", base) == []
    assert compare.variant_overrides("instance-alone", base) == ["train.stage2_loss_weights=0,1.0,0.1"]
    assert compare.variant_overrides("ranking-alone", base) == [
        "train.with_stage1=false", "train.stage2_loss_weights=2.0,0,0", "train.stage2_schedule=200:1.0,10:0.1"]
    assert compare.variant_overrides("vsepp", base) == ["train.stage2_objective=vsepp"]
    with pytest.raises(ValueError, match="unknown variant"):
        compare.variant_overrides("clip", base)
    for name in compare.VARIANTS:  # every variant is a valid config
        resolve("demo", compare.variant_overrides(name, base))


def test_summary_is_mean_and_sample_std_and_the_table_shows_it():
    rows = [{"dataset": "d", "seed": s, "variant": "paper", "rsum": r, "i2t_r1": 10.0, "t2i_r1": t, "steps": 40,
             "train_seconds": 1.0} for s, r, t in ((0, 100.0, 5.0), (1, 110.0, 7.0), (2, 120.0, 9.0))]
    summary = compare.summarise(rows)
    mean, std, n = summary[("d", "paper")]["rsum"]
    assert (mean, n) == (110.0, 3) and std == pytest.approx(10.0)  # sqrt((100 + 0 + 100) / 2)
    assert summary[("d", "paper")]["t2i_r1"][:2] == pytest.approx((7.0, 2.0))
    table = compare.markdown_tables(summary, ["d"], {})
    assert "| paper |" in table and "110.0 ± 10.0" in table and "| 10.0 |" in table and "| 40 |" in table


def test_tiny_compare_shares_stage_one_and_gives_every_variant_the_same_steps(tmp_path, data_root, tiny_data):
    results = compare.run_compare(["tiny"], [0], ["instance-alone", "ranking-alone"], tmp_path,
                                  [f"data.root={data_root}"])
    by = {r["variant"]: r for r in results}
    assert set(by) == {"paper", compare.STAGE1_ROW, "instance-alone", "ranking-alone"}
    assert by["paper"]["steps"] == by["instance-alone"]["steps"] == by["ranking-alone"]["steps"] > \
        by[compare.STAGE1_ROW]["steps"] > 0
    seed = tmp_path / "tiny" / "seed0"
    assert filecmp.cmp(seed / "paper" / "stage1" / "model.weights.h5", seed / "instance-alone" / "stage1" / "model.weights.h5",
                       shallow=False)
    assert not (seed / "ranking-alone" / "stage1").exists()
    assert all(0 <= r["rsum"] <= 600 for r in results)
    again = compare.run_compare(["tiny"], [0], ["instance-alone"], tmp_path, [f"data.root={data_root}"])
    assert [r["rsum"] for r in again if r["variant"] == "paper"] == [by["paper"]["rsum"]]  # found, not retrained
    picture = compare.draw(compare.summarise(results), ["tiny"], tmp_path / "c.png")
    assert picture.stat().st_size > 5000
