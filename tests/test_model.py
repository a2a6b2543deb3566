"""Model structure against PAPER_SPEC §1-2 (layer and parameter counts by hand), padding, serialisation."""

import dataclasses

import keras
import numpy as np
import pytest

from dpcnn.config import ModelConfig
from dpcnn.errors import WeightsUnavailableError
from dpcnn.model.image_branch import build_image_encoder
from dpcnn.model.text_branch import build_text_encoder, stage_lengths
from dpcnn.presets import preset


def bn(c):  # gamma, beta, moving mean, moving variance
    return 4 * c


def block(cin, mid, cout, projection):
    n = cin * mid + bn(mid) + 2 * mid * mid + bn(mid) + mid * cout + bn(cout)
    return n + (cin * cout + bn(cout) if projection else 0)


def paper_text_params(vocab, dim=300):
    """Parameter count of the official text CNN, read off the PAPER_SPEC §2.2 table."""
    n = vocab * dim + dim + bn(dim)  # fc2 (with bias) + fc2bn
    n += block(300, 128, 256, True) + 2 * block(256, 64, 256, False)  # stage A
    n += block(256, 512, 512, True) + 3 * block(512, 128, 512, False)  # stage B
    n += block(512, 1024, 1024, True) + 5 * block(1024, 256, 1024, False)  # stage C
    n += block(1024, 2048, 2048, True)  # stage D
    n += 2048 * 2048 + bn(2048)  # fc5_2 + fc5_2bn
    return n


@pytest.fixture(scope="module")
def paper_text():
    return build_text_encoder(ModelConfig(), vocab_size=50, word_dim=300, max_len=32)


def test_paper_text_cnn_layer_and_parameter_counts(paper_text):
    weight_layers = [layer for layer in paper_text.layers if isinstance(layer, (keras.layers.Conv1D, keras.layers.Dense))]
    assert len(weight_layers) + 1 == 48  # + the fc2 embedding: 14 blocks x 3 + 4 projections + fc2 + fc5_2
    blocks = [layer for layer in paper_text.layers if isinstance(layer, keras.layers.Add)]
    assert len(blocks) == 14
    assert paper_text.count_params() == paper_text_params(50)
    assert all(not layer.use_bias for layer in weight_layers)


@pytest.mark.parametrize("length, expected", [(32, [32, 16, 8, 8]), (56, [56, 28, 14, 14])])
def test_sequence_length_after_each_stage(length, expected, paper_text):
    assert stage_lengths(length, (1, 2, 2, 1)) == expected
    model = paper_text if length == 32 else build_text_encoder(ModelConfig(), 50, 300, length)
    got = [model.get_layer(f"txt_s{s}_b1_out").output.shape[1] for s in range(1, 5)]
    assert got == expected


@pytest.mark.parametrize("length", [32, 56])
def test_left_only_padding_leaves_the_last_three_slots_unseen(length, paper_text):
    # MatConvNet pad [0,0,1,0] with stride 2 (stages B and C): windows cover (-1,0), (1,2), … and
    # the last slot of the stage input is dropped; the stride-2 projection samples even slots.
    # Traced back through the look-back 1x2 kernels, slots L-3..L-1 never reach the output, slot
    # L-4 does. Keras "same" padding (right side) would see every slot.
    model = paper_text if length == 32 else build_text_encoder(ModelConfig(), 50, 300, length)
    tokens = np.random.default_rng(0).integers(1, 51, size=(2, length)).astype("int32")
    base = model(tokens, training=False).numpy()

    def changed(slot):
        other = tokens.copy()
        other[:, slot] = (other[:, slot] % 50) + 1
        return np.abs(model(other, training=False).numpy() - base).max()

    for slot in (length - 3, length - 2, length - 1):
        assert changed(slot) < 1e-5
    for slot in (0, length // 2, length - 4):
        assert changed(slot) > 1e-3


def test_empty_slots_output_the_bias_not_zero():
    cfg = preset("tiny").model
    enc = build_text_encoder(cfg, 5, 4, 6, word_vectors=np.ones((5, 4), "float32"))
    emb = enc.get_layer("fc2")
    emb.bias.assign(np.array([1.0, 2.0, 3.0, 4.0], "float32"))
    out = emb(np.array([[0, 2, 0, 0, 0, 0]], "int32")).numpy()
    np.testing.assert_allclose(out[0, 0], [1, 2, 3, 4])
    np.testing.assert_allclose(out[0, 1], [2, 3, 4, 5])


def test_resnet50_head_shapes_at_crop_and_full_image():
    cfg = dataclasses.replace(ModelConfig(), image_weights="none")
    enc = build_image_encoder(cfg, 224, (120.0, 115.0, 104.0))
    assert enc.get_layer("pool5").pool_size == (7, 7)
    assert tuple(enc(np.zeros((1, 224, 224, 3), "float32")).shape) == (1, 1, 1, 2048)
    # a 256x341 pre-resized image: an 8x11 conv5 map, 2x5 after the 7x7 stride-1 pool5
    assert tuple(enc(np.zeros((1, 256, 341, 3), "float32")).shape) == (1, 2, 5, 2048)
    # What the backbone receives (the mean subtracted, BGR): tests/test_input.py, against Keras' preprocess_input.


def test_vgg16_takes_fc7_before_relu_as_convolutions():
    cfg = dataclasses.replace(ModelConfig(), image_backbone="vgg16", image_weights="none", image_head_dim=4096)
    enc = build_image_encoder(cfg, 224, (0.0, 0.0, 0.0))
    backbone = enc.get_layer("backbone")
    assert backbone.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)
    assert backbone.get_layer("fc7").activation is keras.activations.linear
    assert tuple(enc(np.zeros((1, 224, 224, 3), "float32")).shape) == (1, 1, 1, 2048)


def test_missing_imagenet_weights_name_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no internet")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(WeightsUnavailableError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_image_encoder(ModelConfig(), 224, (0.0, 0.0, 0.0))
