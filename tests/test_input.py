"""What the backbone sees (PAPER_SPEC §1), each detail against an independent computation.

- Pixel pre-processing, every backbone. Keras' ImageNet weights for ResNet-50/101/152 and
  VGG-16/19 are Caffe-origin: they expect what Keras' own ``preprocess_input`` of that family
  makes (mode "caffe": RGB → BGR, then the ImageNet BGR mean subtracted). The image encoder
  subtracts the dataset's RGB mean and reorders to BGR inside the model, so with the ImageNet mean
  its backbone must receive exactly ``preprocess_input(pixels)``, and with another mean the BGR
  values worked out by hand below. The small CPU backbone is trained from scratch on RGB minus the
  mean. The checks compare what the backbone *receives inside the encoder* (the input of the layer
  after it), so they hold whatever layer does the work.
- Training crop: ``vl_imreadjpeg`` resizes the random crop bicubically ("Train input"); the
  reference is Pillow's BICUBIC (Keys' cubic, a = −0.5, widened when shrinking, i.e.
  antialiased), another implementation of that kernel, on noise where bilinear, nearest, Lanczos
  and a non-antialiased bicubic all differ from it by more than 1 grey level.
- Training flip: left-right (the width axis), each image with probability 1/2; none with
  ``data.flip=false``.

``make mutants`` (tools/mutants.py, the INPUT mutants) checks that changing any one of these
details alone makes a test here fail.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dpcnn.config import DataConfig, ModelConfig
from dpcnn.data import pipeline
from dpcnn.model.image_branch import build_image_encoder

CAFFE_FAMILY = {"resnet50": "resnet50", "resnet101": "resnet", "resnet152": "resnet", "vgg16": "vgg16",
                "vgg19": "vgg19"}
"""Each Keras-application backbone → the ``keras.applications`` module whose ``preprocess_input``
states what its ImageNet weights expect."""

COCO_MEAN = (119.8557, 113.9346, 103.9336)
"""The official COCO RGB mean (``dataset/MSCOCO-prepare/prepare_imdb.m``, PAPER_SPEC §1 "Mean")."""

PIXELS_2X2 = np.array([[[255, 0, 0], [0, 255, 0]],
                       [[0, 0, 255], [200, 100, 50]]], np.float32)
"""A 2 × 2 RGB image: red, green / blue, (200, 100, 50)."""

# PIXELS_2X2 minus COCO_MEAN, worked out by hand, channel by channel:
#   red   (255, 0, 0)     → (255 − 119.8557, 0 − 113.9346, 0 − 103.9336)   = (135.1443, −113.9346, −103.9336)
#   green (0, 255, 0)     → (0 − 119.8557, 255 − 113.9346, 0 − 103.9336)   = (−119.8557, 141.0654, −103.9336)
#   blue  (0, 0, 255)     → (0 − 119.8557, 0 − 113.9346, 255 − 103.9336)   = (−119.8557, −113.9346, 151.0664)
#   (200, 100, 50)        → (200 − 119.8557, 100 − 113.9346, 50 − 103.9336) = (80.1443, −13.9346, −53.9336)
RGB_MINUS_COCO = np.array([[[135.1443, -113.9346, -103.9336], [-119.8557, 141.0654, -103.9336]],
                           [[-119.8557, -113.9346, 151.0664], [80.1443, -13.9346, -53.9336]]], np.float32)
# The same values in B, G, R order (what Caffe-origin weights take): each triple above reversed.
BGR_MINUS_COCO = np.array([[[-103.9336, -113.9346, 135.1443], [-103.9336, 141.0654, -119.8557]],
                           [[151.0664, -113.9346, -119.8557], [-53.9336, -13.9346, 80.1443]]], np.float32)


# -- training images --------------------------------------------------------------------------


def pillow_bicubic(pixels: np.ndarray, size: int, method=Image.BICUBIC) -> np.ndarray:
    """float [h, w, 3] → float32 [size, size, 3] with Pillow (float mode: no rounding, no clipping)."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c], np.float32), mode="F")
                                .resize((size, size), method)) for c in range(3)], axis=-1)


def reference_crops(image: np.ndarray, uniform, data: DataConfig, method=Image.BICUBIC) -> np.ndarray:
    """The training crops of ``image`` for these draws, unflipped: the library's boxes (their
    geometry is pinned in test_pipeline.py), cut with NumPy, resized by Pillow, clipped to 0-255."""
    h, w = image.shape[:2]
    n = uniform.shape[0]
    boxes = np.stack([b.numpy() for b in pipeline.crop_boxes(tf.fill([n], h), tf.fill([n], w), uniform[:, :4],
                                                             data.crop_size, data.crop_aspect)], axis=1)
    crops = [image[y0:y0 + ch, x0:x0 + cw].astype(np.float32) for y0, x0, ch, cw in boxes]
    return np.clip(np.stack([pillow_bicubic(c, data.image_size, method) for c in crops]), 0, 255)


def training_crops(image: np.ndarray, uniform, data: DataConfig) -> np.ndarray:
    """The library's training images of ``image`` for these draws (traced once, as tf.data runs it)."""
    n, (h, w) = uniform.shape[0], image.shape[:2]
    pixels = tf.constant(image)

    def batch(u):
        return pipeline.augment(lambda i: pixels, tf.fill([n], h), tf.fill([n], w), u, data)

    return tf.function(batch, autograph=False)(uniform).numpy()


@pytest.mark.parametrize("shape", [(96, 120), (22, 26)], ids=["shrinking", "enlarging"])
def test_training_crop_is_resized_bicubically_as_pillow_does(shape):
    # Measured (2026-12, TF 2.21, Pillow 13): tf bicubic with antialias vs Pillow BICUBIC on float
    # noise, at most 3e-4 apart; bilinear, area, nearest, Lanczos-3/5, Mitchell and a bicubic
    # without antialias (when shrinking) at least 5 grey levels from Pillow.
    image = np.random.default_rng(3).integers(0, 256, (*shape, 3)).astype(np.uint8)
    data = DataConfig(image_size=28, flip=False)
    u = tf.random.stateless_uniform([6, pipeline.AUG], seed=[8, 1])
    got = training_crops(image, u, data)
    np.testing.assert_allclose(got, reference_crops(image, u, data), atol=0.01)
    for method in (Image.BILINEAR, Image.NEAREST, Image.LANCZOS):  # the reference tells kernels apart
        assert np.abs(got - reference_crops(image, u, data, method)).max() > 1.0, method


def test_training_flip_is_left_right_for_half_of_the_images():
    """Each crop is the reference crop or its left-right mirror (np.fliplr: the width axis, never
    up-down), mirrored with probability 1/2 when data.flip is on and never when it is off."""
    n = 4000
    image = np.random.default_rng(4).integers(0, 256, (30, 38, 3)).astype(np.uint8)  # no symmetry
    u = tf.random.stateless_uniform([n, pipeline.AUG], seed=[21, 4])
    on, off = DataConfig(image_size=8, flip=True), DataConfig(image_size=8, flip=False)
    reference = reference_crops(image, u, on)

    def mirrored(data) -> np.ndarray:
        got = training_crops(image, u, data)
        as_is = np.abs(got - reference).max(axis=(1, 2, 3)) < 0.01
        flipped = np.abs(got - reference[:, :, ::-1]).max(axis=(1, 2, 3)) < 0.01
        assert np.all(as_is != flipped), "a crop is neither the reference crop nor its left-right mirror"
        return flipped

    assert not mirrored(off).any()
    flips = int(mirrored(on).sum())
    # Binomial(4000, 1/2): mean 2000, standard deviation sqrt(4000)/2 = 31.6; 5 standard deviations
    # (a chance of 6e-7 with a fair coin) give 1842-2158, a rate within 0.46-0.54.
    assert abs(flips - n / 2) <= 5 * math.sqrt(n) / 2, flips


# -- pixel pre-processing ---------------------------------------------------------------------


def image_encoder(backbone: str, pixel_mean) -> keras.Model:
    """The image branch of ``backbone`` (random weights: no download) with a small head."""
    sizes = dict(small_widths=(8, 16), small_blocks=(1, 1)) if backbone == "small" else {}
    cfg = dataclasses.replace(ModelConfig(), image_backbone=backbone, image_weights="none", image_head_dim=32,
                              embed_dim=32, **sizes)
    return build_image_encoder(cfg, 28 if backbone == "small" else 224, pixel_mean)


def backbone_sees(encoder: keras.Model, pixels: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the backbone's output inside ``encoder`` fed ``pixels``, the backbone's output on ``given``).

    The two agree when the encoder hands its backbone exactly ``given``."""
    names = [layer.name for layer in encoder.layers]
    after = encoder.get_layer("pool5" if "pool5" in names else "fc1")  # the first layer after the backbone
    inside = keras.Model(encoder.input, after.input)(pixels, training=False)
    direct = encoder.get_layer("backbone")(given, training=False)
    return np.asarray(inside), np.asarray(direct)


def assert_sees(encoder, pixels, given, wrong):
    """The backbone inside ``encoder`` receives ``given``; and ``wrong`` would be told apart."""
    inside, direct = backbone_sees(encoder, pixels, given)
    scale = np.abs(direct).max()
    assert scale > 0
    np.testing.assert_allclose(inside, direct, rtol=1e-5, atol=1e-5 * scale)
    backbone = encoder.get_layer("backbone")
    for name, other in wrong.items():  # the comparison is sensitive to what it pins
        assert np.abs(np.asarray(backbone(other, training=False)) - direct).max() > 1e-3 * scale, name


def test_resnet50_with_a_dataset_mean_receives_bgr_minus_that_mean():
    """The paper's backbone with the official COCO mean: the hand-computed BGR values."""
    pixels = np.tile(PIXELS_2X2, (16, 16, 1))[None]  # 32 x 32: enough for ResNet's strides
    assert_sees(image_encoder("resnet50", COCO_MEAN), pixels, np.tile(BGR_MINUS_COCO, (16, 16, 1))[None], wrong={
        "RGB order": np.tile(RGB_MINUS_COCO, (16, 16, 1))[None],
        "mean not reordered": np.tile(PIXELS_2X2[..., ::-1] - np.float32(COCO_MEAN), (16, 16, 1))[None],
    })


def test_small_backbone_receives_rgb_minus_the_dataset_mean():
    """Trained from scratch: the dataset's RGB order, the dataset's mean, nothing else."""
    pixels = np.tile(PIXELS_2X2, (8, 8, 1))[None]
    assert_sees(image_encoder("small", COCO_MEAN), pixels, np.tile(RGB_MINUS_COCO, (8, 8, 1))[None], wrong={
        "BGR order": np.tile(BGR_MINUS_COCO, (8, 8, 1))[None],
        "no mean subtracted": pixels,
    })


@pytest.mark.parametrize("backbone", sorted(CAFFE_FAMILY))
def test_caffe_backbones_receive_keras_own_preprocess_input(backbone):
    """With the ImageNet mean, the backbone gets ``keras.applications.<family>.preprocess_input``."""
    preprocess = getattr(keras.applications, CAFFE_FAMILY[backbone]).preprocess_input
    # The mean Keras subtracts, read back from preprocess_input itself (BGR), in RGB order.
    imagenet_rgb = tuple(float(v) for v in -preprocess(np.zeros((1, 1, 1, 3), np.float32))[0, 0, 0, ::-1])
    size = 224 if backbone.startswith("vgg") else 32  # VGG's fc6 needs a 7 x 7 conv5 map
    pixels = np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.float32)
    want = preprocess(pixels.copy())  # preprocess_input works in place on NumPy arrays
    assert_sees(image_encoder(backbone, imagenet_rgb), pixels, want, wrong={
        "RGB order": pixels - np.float32(imagenet_rgb),
        "no mean subtracted": pixels[..., ::-1].copy(),
    })
