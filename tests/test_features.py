"""The test-time features (PAPER_SPEC §6) as Keras models, against a recomputation by hand.

The reference here calls the raw encoders on decoded pixels and sums by hand: the pre-resize with
``tf.image.resize`` (bicubic, antialiased), the flip with ``np.flip``, every position shift as in
the official ``win = L + 1 - len`` loop, then L2 normalisation. The feature models must agree
with it, survive a ``.keras`` round trip in safe mode, and the Embedder must batch them without
changing a value.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import dual_path, reference_image, reference_text, round_trip
from PIL import Image

from dpcnn.config import apply_overrides
from dpcnn.presets import preset

L = 8


@pytest.fixture(scope="module")
def model():
    """A tiny DualPath with distinctive BN running statistics (features are taken in inference mode)."""
    return dual_path(apply_overrides(preset("tiny"), [f"data.max_len={L}"]), 6, 15, 4, seed=5,
                     pixel_mean=(100.0, 90.0, 80.0), bn_statistics=True)


@pytest.mark.parametrize("shorter, square, flip, crop", [(0, False, False, 0), (40, False, True, 0),
                                                          (36, True, True, 0), (40, False, False, 28)])
def test_image_feature_model_is_the_paper_test_feature(model, shorter, square, flip, crop):
    from dpcnn.model.features import image_feature_model

    fm = image_feature_model(model.image_encoder, shorter, square, flip, crop)
    rng = np.random.default_rng(1)
    for h, w in ((30, 45), (52, 31)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = fm(pixels[None].astype("float32"), training=False).numpy()[0]
        np.testing.assert_allclose(got, reference_image(model.image_encoder, pixels, shorter, square, flip, crop),
                                   atol=2e-5)


@pytest.mark.parametrize("all_shifts", [True, False])
def test_text_feature_model_sums_every_valid_shift(model, all_shifts):
    from dpcnn.model.features import text_feature_model

    fm = text_feature_model(model.text_encoder, L, all_shifts)
    captions = [[3], [1, 2, 3, 4, 5], list(range(1, L + 1)), []]  # one word, several, a full row, empty
    tokens = np.zeros((len(captions), L), "int32")
    for i, ids in enumerate(captions):
        tokens[i, :len(ids)] = ids
    got = fm(tokens, training=False).numpy()
    for i, ids in enumerate(captions):
        np.testing.assert_allclose(got[i], reference_text(model.text_encoder, ids, L, all_shifts), atol=2e-5)


def test_feature_models_round_trip_through_keras_files_in_safe_mode(model, tmp_path):
    from dpcnn.model.features import image_feature_model, text_feature_model

    image_fm = image_feature_model(model.image_encoder, 36, False, True)
    text_fm = text_feature_model(model.text_encoder, L, True)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 40, 50, 3)).astype("float32")
    tokens = np.array([[1, 2, 0, 0, 0, 0, 0, 0], [4, 5, 6, 7, 0, 0, 0, 0]], "int32")
    for fm, x in ((image_fm, pixels), (text_fm, tokens)):
        round_trip(fm, x, tmp_path / f"{fm.name}.keras")


def test_dual_path_and_branches_round_trip(model, tmp_path):
    images = np.random.default_rng(3).uniform(0, 255, (2, 28, 28, 3)).astype("float32")
    tokens = np.array([[1, 2, 3, 0, 0, 0, 0, 0]], "int32")
    loaded = round_trip(model, {"images": images, "tokens": tokens}, tmp_path / "model.keras")
    round_trip(model.image_encoder, images, tmp_path / "image.keras")
    round_trip(model.text_encoder, tokens, tmp_path / "text.keras")
    np.testing.assert_allclose(loaded.image_encoder(images).numpy(), model.image_encoder(images).numpy(), atol=1e-5)
    assert (loaded.num_classes, loaded.classifier_bias, loaded.dropout_rate) == (6, True, model.dropout_rate)


def test_embedder_batches_files_and_arrays_without_changing_a_value(model, tmp_path):
    from dpcnn.data.images import check_images
    from dpcnn.data.vocab import Vocabulary
    from dpcnn.embedder import Embedder
    from dpcnn.model.features import image_feature_model, text_feature_model

    emb = Embedder(image_feature_model(model.image_encoder, 36, False, True),
                   text_feature_model(model.text_encoder, L, True),
                   Vocabulary([f"w{i}" for i in range(15)]), batch_size=2)
    rng = np.random.default_rng(4)
    paths, arrays = [], []
    for i, (h, w) in enumerate([(30, 40), (40, 30), (30, 40), (36, 36), (50, 60)]):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(a).save(path)
        paths.append(str(path))
        arrays.append(a)
    good, _ = check_images(paths, progress=False)
    from_files = emb.encode_image_files(paths, np.array([[good[i].height, good[i].width] for i in range(5)]))
    from_arrays = emb.encode_images(arrays)
    by_hand = np.stack([reference_image(model.image_encoder, a, 36, False, True) for a in arrays])
    np.testing.assert_allclose(from_files, by_hand, atol=2e-5)
    np.testing.assert_allclose(from_arrays, by_hand, atol=2e-5)
    np.testing.assert_allclose(emb.encode_images(paths), by_hand, atol=2e-5)
    texts = emb.encode_texts(["w0 w3 unknown w4", "w2"])
    np.testing.assert_allclose(texts[0], reference_text(model.text_encoder, [1, 4, 5], L), atol=2e-5)
    hits = emb.search(texts[1], texts, k=2)
    assert hits[0][1] == 1 and hits[0][0] == pytest.approx(1.0, abs=1e-5)
    from dpcnn.errors import SearchError

    with pytest.raises(SearchError, match="no word in the model's vocabulary"):
        emb.encode_texts(["nothing known here"])
