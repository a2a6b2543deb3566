"""Config: presets, --set parsing by type, validation, keys without effect, JSON round trip."""

import json

import pytest

from dpcnn import config as C
from dpcnn.presets import PAPER_PRESETS, PRESET_NAMES, preset, resolve


@pytest.mark.parametrize("name", PRESET_NAMES + tuple(f"{p}:tiny" for p in PAPER_PRESETS))
def test_every_preset_is_valid_and_round_trips(name):
    cfg = preset(name)
    assert C.Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_tiny_variants_keep_the_paper_method_and_shrink_the_rest():
    for name in PAPER_PRESETS:
        full, tiny = preset(name), preset(f"{name}:tiny")
        assert tiny.data.dataset == "synthetic" and tiny.model.image_backbone == "small"
        for key in ("train.stage1_multipliers", "train.stage2_multipliers", "train.stage2_loss_weights",
                    "train.negative_mining", "train.margin", "model.dropout", "model.classifier_bias",
                    "data.max_len", "data.resize_square", "eval.protocols", "eval.ap_rule", "eval.flip"):
            assert tiny.get(key) == full.get(key), (name, key)


def test_set_parses_each_type():
    cfg = resolve("tiny", [
        "train.batch_size=16", "train.margin=0.5", "data.flip=yes", "train.stage2_schedule=4:0.1,2:0.01",
        "model.text_blocks=[2,2]", "data.pixel_mean=1,2,3", "data.vocab_splits=train,val", "data.split_chars= -",
        "train.mixed_precision=true",
    ])
    assert cfg.train.batch_size == 16 and cfg.train.margin == 0.5 and cfg.data.flip is True
    assert cfg.train.stage2_schedule == ((4, 0.1), (2, 0.01))
    assert cfg.model.text_blocks == (2, 2) and cfg.data.pixel_mean == (1.0, 2.0, 3.0)
    assert cfg.data.vocab_splits == ("train", "val") and cfg.data.split_chars == " -"
    assert cfg.train.mixed_precision == "true"


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(C.ConfigError) as e:
        resolve("tiny", ["train.batchsize=1"])
    assert "'train.batchsize'" in str(e.value) and "did you mean train.batch_size" in str(e.value)
    assert len(str(e.value)) < 200  # one short line, not every key
    with pytest.raises(C.ConfigError, match="did you mean data.max_len"):
        resolve("tiny", ["dat.max_len=3"])


@pytest.mark.parametrize("pair, message", [
    ("train.batch_size=abc", "expects an integer"),
    ("train.batch_size=7", "even"),
    ("data.flip=maybe", "true/false"),
    ("data.vocab_splits=train,test", "test captions"),
    ("model.text_widths=[1,2,3]", "one value per text stage"),
    ("train.strategy=gpu", "train.strategy"),
    ("train.jit_compile=sometimes", "train.jit_compile"),
    ("model.dropout=1.0", "drop probability"),
    ("train.stage1_loss_weights=1,1,1", "rank weight must be 0"),
    ("noequals", "section.key=value"),
])
def test_bad_values_are_rejected_with_a_reason(pair, message):
    with pytest.raises(C.ConfigError, match=message):
        resolve("tiny", [pair])


@pytest.mark.parametrize("preset_name, pairs, decides", [
    ("demo", ["data.images=/x"], "data.dataset=coco-format"),
    ("demo", ["data.val_annotations=/x.json"], "data.dataset=coco-format"),
    ("coco", ["synthetic.num_train=5"], "data.dataset=coco"),
    ("coco", ["train.tpu=local"], "train.strategy=tpu"),
    ("cuhk-pedes", ["train.negative_pool=64"], "train.negative_mining=hard"),
    ("coco", ["model.small_blocks=1"], "model.image_backbone=small"),
    ("coco", ["eval.ap_rule=standard"], "reid"),
    ("demo", ["train.infonce_temperature=0.1"], "train.stage2_objective=infonce"),
    ("demo", ["train.stage2_loss_weights=0,1,0.1", "train.stage2_objective=vsepp"], "stage2_loss_weights, is 0"),
    ("demo", ["data.dataset=coco-format", "data.val_annotations=/v.json", "data.test_annotations=/t.json",
              "data.holdout_images=10"], "single COCO-format file"),
])
def test_a_key_without_effect_is_an_error_naming_the_key_that_decides(preset_name, pairs, decides):
    with pytest.raises(C.ConfigError, match="has no effect") as e:
        resolve(preset_name, pairs)
    assert decides in str(e.value)


def test_captions_given_to_the_demo_mean_your_own_data(caplog):
    with caplog.at_level("INFO", logger="dpcnn"):
        cfg = resolve("demo", ["data.annotations=/my/captions.json", "data.images=/my/images"])
    assert cfg.data.dataset == "coco-format" and "coco-format" in caplog.text


def test_unknown_preset_and_bad_json_file(tmp_path):
    with pytest.raises(C.ConfigError, match="unknown preset"):
        resolve("imagenet")
    with pytest.raises(C.ConfigError, match="unknown preset"):
        resolve("demo:tiny")  # tiny variants exist for the paper presets
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(C.ConfigError, match="not valid JSON"):
        resolve(str(bad))
    bad.write_text(json.dumps({"train": {"bogus": 1}}))
    with pytest.raises(C.ConfigError, match="train.bogus"):
        resolve(str(bad))


def test_saved_config_loads_back(tmp_path):
    cfg = resolve("demo", ["train.seed=3"])
    cfg.save(tmp_path / "config.json")
    assert resolve(str(tmp_path / "config.json")) == cfg


OFFICIAL_STAGE2 = {
    # PAPER_SPEC §5 "Schedules": the official stage-II script's global LR, epoch by epoch, and the
    # epoch its test script loads (net-epoch-N).
    "flickr30k": ([0.1] * 40 + [0.01] * 20, 60),
    # train_coco_Rankloss_shift_hard.m trains 15 x 0.1, 5 x 0.01, 1 x 0.001;
    # test_coco/extract_pic_feature_word2_plus.m:2 loads net-epoch-20.
    "coco": ([0.1] * 15 + [0.01] * 5 + [0.001], 20),
    # train_cuhk_Rankloss_shift.m trains 40 x 0.1, 21 x 0.01;
    # test_cuhk/extract_pic_feature_word2_plus.m:2 loads net-epoch-60.
    "cuhk-pedes": ([0.1] * 40 + [0.01] * 21, 60),
}


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_train_stage_two_as_the_official_script_up_to_the_tested_epoch(name):
    from dpcnn.training.optimizer import schedule_epochs

    schedule = preset(name).train.stage2_schedule
    rates, tested = OFFICIAL_STAGE2[preset(name).data.dataset]
    assert schedule_epochs(schedule) == tested
    assert [lr for epochs, lr in schedule for _ in range(epochs)] == rates[:tested]  # the LR of every epoch


@pytest.mark.parametrize("pairs, message", [
    (["train.stage2_objective=clip"], "train.stage2_objective must be one of ranking, vsepp, infonce"),
    (["train.stage2_objective=infonce", "train.infonce_temperature=0"], "infonce_temperature must be > 0"),
    (["train.stage2_loss_weights=0,0,0"], "not all 0"),
    (["train.stage2_loss_weights=2,-1,0"], "must be ≥ 0"),
])
def test_objective_settings_are_checked(pairs, message):
    with pytest.raises(C.ConfigError, match=message):
        resolve("demo", pairs)
