"""The test-time features of PAPER_SPEC §6, built once as two Keras models.

    image_features: pixels float [B, H, W, 3] (RGB 0-255, any size)
        → PreResize (shorter side ``data.resize_shorter``, or the square; ``eval.image_mode=center``
          adds the centre crop) → image encoder (``fc1_1bn`` map, before ReLU) → SpatialSum
        (+ the same for the HorizontalFlip, ``eval.flip``) → L2Normalize → [B, D]
    text_features: tokens int [B, L] (left-aligned ids, 0 = empty)
        → ShiftExpand (every valid position shift, ``eval.all_shifts``) → text encoder (``fc5_2bn``)
        → SegmentSum → L2Normalize → [B, D]

Both run the encoders in inference mode (BN running statistics, no dropout). Validation during
training, ``dpcnn eval``, search, alt text and the exported ``.keras`` files all use these two
models; :class:`dpcnn.embedder.Embedder` batches them over files, arrays and strings.
"""

from __future__ import annotations

import keras

from dpcnn.model.layers import (
    HorizontalFlip,
    L2Normalize,
    PreResize,
    SegmentSum,
    ShiftExpand,
    SpatialSum,
)


def image_feature_model(image_encoder: keras.Model, resize_shorter: int, resize_square: bool, flip: bool,
                        center_crop: int = 0) -> keras.Model:
    """pixels [B, H, W, 3] RGB 0-255 → float32 [B, D], L2-normalised (see the module docstring)."""
    pixels = keras.Input((None, None, 3), name="pixels")
    x = PreResize(resize_shorter, resize_square, center_crop, name="pre_resize")(pixels)
    feature = SpatialSum(name="spatial_sum")(image_encoder(x, training=False))
    if flip:
        mirrored = image_encoder(HorizontalFlip(name="flip")(x), training=False)
        feature = keras.layers.Add(name="plus_flip", dtype="float32")(
            [feature, SpatialSum(name="spatial_sum_flip")(mirrored)])
    return keras.Model(pixels, L2Normalize(name="l2")(feature), name="image_features")


def text_feature_model(text_encoder: keras.Model, max_len: int, all_shifts: bool) -> keras.Model:
    """tokens int32 [B, max_len] (left-aligned, 0 = empty) → float32 [B, D], L2-normalised."""
    tokens = keras.Input((max_len,), dtype="int32", name="tokens")
    shifted, owner = ShiftExpand(all_shifts, name="shifts")(tokens)
    summed = SegmentSum(name="shift_sum")(text_encoder(shifted, training=False), owner, tokens)
    return keras.Model(tokens, L2Normalize(name="l2")(summed), name="text_features")


def feature_models(image_encoder: keras.Model, text_encoder: keras.Model, cfg) -> tuple[keras.Model, keras.Model]:
    """Both feature models with a run config's test-time settings (``data.*`` pre-resize, ``eval.*``)."""
    d, e = cfg.data, cfg.eval
    crop = d.image_size if e.image_mode == "center" else 0
    return (image_feature_model(image_encoder, d.resize_shorter, d.resize_square, e.flip, crop),
            text_feature_model(text_encoder, d.max_len, e.all_shifts))
