"""Config presets, --set parsing and validation, JSON round trip."""

import json

import pytest

from dpcnn import config as C


@pytest.mark.parametrize("name", C.PRESET_NAMES)
def test_every_preset_is_valid_and_round_trips(name):
    cfg = C.preset(name)
    again = C.Config.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_paper_presets_carry_the_official_numbers():
    flickr, coco, cuhk = C.preset("flickr30k"), C.preset("coco"), C.preset("cuhk-pedes")
    assert flickr.model.dropout == 0.75 and coco.model.dropout == 0.5 and cuhk.model.dropout == 0.8
    assert coco.model.classifier_bias is False and flickr.model.classifier_bias is True
    assert cuhk.data.max_len == 56 and flickr.data.max_len == 32
    assert flickr.train.stage2_loss_weights == (2.0, 1.0, 0.1)
    assert cuhk.train.stage2_loss_weights == (2.0, 1.0, 0.5) and cuhk.train.negative_mining == "random"
    assert flickr.data.vocab_splits == ("train", "val")
    assert "?" in coco.data.split_chars and "?" not in flickr.data.split_chars
    assert coco.eval.protocols == ("1k", "5k")
    t = flickr.train
    assert (t.lr_conv, t.lr_bn_gamma, t.lr_bn_beta, t.lr_classifier_w, t.lr_classifier_b, t.lr_embedding) == (
        0.1, 0.2, 0.1, 0.01, 0.02, 1e-3)
    assert t.stage1_backbone_lr == 0.0 and t.momentum == 0.9 and t.nesterov and t.weight_decay == 1e-4
    assert flickr.model.bn_momentum == 0.95 and flickr.model.bn_epsilon == 1e-3
    assert flickr.model.text_blocks == (3, 4, 6, 1) and flickr.model.embed_dim == 2048


def test_set_parses_each_type():
    cfg = C.resolve("tiny", [
        "train.batch_size=16", "train.margin=0.5", "data.flip=yes", "data.dataset=coco-format",
        "train.stage2_schedule=4:0.1,2:0.01", "model.text_blocks=[2,2]", "data.pixel_mean=1,2,3",
        "data.vocab_splits=train,val",
    ])
    assert cfg.train.batch_size == 16 and cfg.train.margin == 0.5 and cfg.data.flip is True
    assert cfg.data.dataset == "coco-format"
    assert cfg.train.stage2_schedule == ((4, 0.1), (2, 0.01))
    assert cfg.model.text_blocks == (2, 2)
    assert cfg.data.pixel_mean == (1.0, 2.0, 3.0)
    assert cfg.data.vocab_splits == ("train", "val")


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(C.ConfigError) as e:
        C.resolve("tiny", ["train.bogus=1"])
    assert "train.bogus" in str(e.value) and "train.batch_size" in str(e.value)
    with pytest.raises(C.ConfigError, match="unknown config key 'nosection.x'"):
        C.resolve("tiny", ["nosection.x=1"])


@pytest.mark.parametrize("pair, message", [
    ("train.batch_size=abc", "expects an integer"),
    ("train.batch_size=7", "even"),
    ("data.flip=maybe", "true/false"),
    ("data.vocab_splits=train,test", "test captions"),
    ("model.text_widths=[1,2,3]", "one value per text stage"),
    ("train.strategy=gpu", "train.strategy"),
    ("model.dropout=1.0", "drop probability"),
    ("noequals", "section.key=value"),
])
def test_bad_values_are_rejected_with_a_reason(pair, message):
    with pytest.raises(C.ConfigError, match=message):
        C.resolve("tiny", [pair])


def test_unknown_preset_and_bad_json_file(tmp_path):
    with pytest.raises(C.ConfigError, match="unknown preset"):
        C.resolve("imagenet")
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(C.ConfigError, match="not valid JSON"):
        C.resolve(str(bad))
    bad.write_text(json.dumps({"train": {"bogus": 1}}))
    with pytest.raises(C.ConfigError, match="train.bogus"):
        C.resolve(str(bad))


def test_saved_config_loads_back(tmp_path):
    cfg = C.resolve("demo", ["train.seed=3"])
    cfg.save(tmp_path / "config.json")
    assert C.resolve(str(tmp_path / "config.json")) == cfg


def test_paper_presets_stop_stage_two_at_the_tested_epoch():
    from dpcnn.optimizer import schedule_epochs

    # test_coco/extract_pic_feature_word2_plus.m:2 loads net-epoch-20 of the 21 epochs that
    # train_coco_Rankloss_shift_hard.m trains (15 x 0.1, 5 x 0.01, 1 x 0.001).
    coco = C.preset("coco").train.stage2_schedule
    assert schedule_epochs(coco) == 20 and coco == ((15, 0.1), (5, 0.01))
    # test_cuhk/extract_pic_feature_word2_plus.m:2 loads net-epoch-60 of the 61 epochs of
    # train_cuhk_Rankloss_shift.m (40 x 0.1, 21 x 0.01).
    cuhk = C.preset("cuhk-pedes").train.stage2_schedule
    assert schedule_epochs(cuhk) == 60 and cuhk == ((40, 0.1), (20, 0.01))
