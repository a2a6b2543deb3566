"""Image branch: a CNN backbone, then the two-layer 1×1-conv head of PAPER_SPEC §1.

    pixels [B, H, W, 3] (RGB 0-255)
      → PixelNormalization (dataset mean; BGR for Keras' Caffe-origin ImageNet weights)
      → backbone feature map (ResNet ``conv5``; VGG ``fc7`` as convolutions; or a small residual CNN)
      → pool5: AveragePooling2D(p, stride 1), p = the map size at the training crop (ResNet: 7)
      → fc1 (1×1 conv, no bias) → BN → ReLU → fc1_1 (1×1 conv, no bias) → BN ``fc1_1bn``
    output: the ``fc1_1bn`` map [B, h, w, D] — before ReLU.

At the training crop the map is 1×1; at test time the pre-resized image gives a larger map whose
positions are summed (PAPER_SPEC §6). The head is convolutional so both are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras

from dpcnn.config import ModelConfig
from dpcnn.model.layers import PixelNormalization, msra_fan_out

log = logging.getLogger(__name__)

BACKBONE_NAME = "backbone"

_RESNETS = {
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet101": ("ResNet101", "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet152": ("ResNet152", "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
_VGGS = {
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
    "vgg19": ("VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
}
_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


from dpcnn.errors import ConfigError, WeightsUnavailableError  # noqa: E402


def uses_caffe_weights(cfg: ModelConfig) -> bool:
    """Keras' ResNet/VGG ImageNet weights are Caffe-origin and expect BGR input."""
    return cfg.image_backbone != "small"


def _weights_error(backbone: str, filename: str, cause: Exception) -> WeightsUnavailableError:
    family = "resnet" if backbone.startswith("resnet") else "vgg16" if backbone == "vgg16" else "vgg19"
    keras_home = Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras")
    return WeightsUnavailableError(
        f"ImageNet weights for {backbone} could not be loaded ({type(cause).__name__}: {cause}).\n"
        f"Download {_WEIGHTS_URL}{family}/{filename} on a machine with internet and put it at "
        f"{keras_home / 'models' / filename} (Keras' cache), or set model.image_weights=/path/to/{filename}, "
        "or model.image_weights=none to start from random weights."
    )


def _small_backbone(widths: Sequence[int], blocks: Sequence[int], bn_momentum: float, bn_epsilon: float) -> keras.Model:
    """A small residual CNN for CPU presets: a 3×3 stem, then stages that each halve the resolution.

    [B, H, W, 3] → [B, H / 2^len(widths), W / 2^len(widths), widths[-1]].
    """
    inp = keras.Input((None, None, 3), name="pixels")

    def bn(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=name)

    def conv(ch: int, k: int, stride: int, name: str) -> keras.layers.Layer:
        return keras.layers.Conv2D(ch, k, strides=stride, padding="same", use_bias=False,
                                   kernel_initializer=msra_fan_out(), name=name)

    x = conv(widths[0], 3, 1, "stem_conv")(inp)
    x = keras.layers.ReLU(name="stem_relu")(bn("stem_bn")(x))
    for s, (width, n_blocks) in enumerate(zip(widths, blocks), start=1):
        for b in range(1, n_blocks + 1):
            stride = 2 if b == 1 else 1
            p = f"s{s}_b{b}"
            y = keras.layers.ReLU(name=f"{p}_relu1")(bn(f"{p}_bn1")(conv(width, 3, stride, f"{p}_conv1")(x)))
            y = bn(f"{p}_bn2")(conv(width, 3, 1, f"{p}_conv2")(y))
            shortcut = x
            if b == 1:
                shortcut = bn(f"{p}_proj_bn")(conv(width, 1, stride, f"{p}_proj")(x))
            x = keras.layers.ReLU(name=f"{p}_out")(keras.layers.Add(name=f"{p}_add")([y, shortcut]))
    return keras.Model(inp, x, name=BACKBONE_NAME)


def _load_keras_application(cfg: ModelConfig) -> keras.Model:
    weights = cfg.image_weights
    table = _RESNETS if cfg.image_backbone in _RESNETS else _VGGS
    ctor_name, filename = table[cfg.image_backbone]
    ctor = getattr(keras.applications, ctor_name)
    is_vgg = cfg.image_backbone in _VGGS
    keras_weights = "imagenet" if weights == "imagenet" else None
    try:
        if is_vgg:
            # The paper's VGG feature is fc7 (PAPER_SPEC §1): build with the top to get fc6/fc7 weights.
            net = ctor(include_top=True, weights=keras_weights, input_shape=(224, 224, 3))
        else:
            net = ctor(include_top=False, weights=keras_weights, input_shape=(None, None, 3))
    except Exception as e:  # network errors, HTTP errors, corrupt cache files
        if keras_weights is None:
            raise
        raise _weights_error(cfg.image_backbone, filename, e) from e
    if weights not in ("imagenet", "none"):
        path = Path(weights)
        if not path.is_file():
            raise WeightsUnavailableError(f"model.image_weights={weights}: no such file")
        net.load_weights(str(path))
    if not is_vgg:
        return keras.Model(net.input, net.output, name=BACKBONE_NAME)
    return _vgg_fully_convolutional(net)


def _vgg_fully_convolutional(net: keras.Model) -> keras.Model:
    """VGG up to fc7 *before* relu7, with fc6/fc7 as 7×7 and 1×1 convolutions (PAPER_SPEC §1)."""
    inp = keras.Input((None, None, 3), name="pixels")
    x = inp
    for layer in net.layers[1:]:
        if layer.name == "flatten":
            break
        x = layer(x)
    fc6_w, fc6_b = net.get_layer("fc1").get_weights()
    fc7_w, fc7_b = net.get_layer("fc2").get_weights()
    fc6 = keras.layers.Conv2D(4096, 7, padding="valid", activation="relu", name="fc6")
    fc7 = keras.layers.Conv2D(4096, 1, padding="valid", name="fc7")
    x = fc7(fc6(x))
    fc6.set_weights([fc6_w.reshape(7, 7, 512, 4096), fc6_b])
    fc7.set_weights([fc7_w.reshape(1, 1, 4096, 4096), fc7_b])
    return keras.Model(inp, x, name=BACKBONE_NAME)


def build_backbone(cfg: ModelConfig) -> keras.Model:
    """The backbone as a functional sub-model named ``backbone``: [B, H, W, 3] → [B, h, w, C]."""
    if cfg.image_backbone == "small":
        if cfg.image_weights == "imagenet":
            raise WeightsUnavailableError(
                "model.image_backbone=small has no ImageNet weights: set model.image_weights=none"
            )
        model = _small_backbone(cfg.small_widths, cfg.small_blocks, cfg.bn_momentum, cfg.bn_epsilon)
        if cfg.image_weights not in ("none", ""):
            model.load_weights(cfg.image_weights)
        return model
    return _load_keras_application(cfg)


def pool_size_at(backbone: keras.Model, image_size: int, cfg: ModelConfig) -> int:
    """Side of pool5: the backbone map size at the training crop (7 for ResNet at 224); 0 = no pool (VGG)."""
    if cfg.image_backbone in _VGGS:
        return 0
    shape = backbone.compute_output_shape((1, image_size, image_size, 3))
    if shape[1] is None or shape[1] < 1:
        raise ConfigError(f"data.image_size={image_size} is too small for model.image_backbone={cfg.image_backbone}: raise data.image_size")
    return int(shape[1])


def build_image_encoder(cfg: ModelConfig, image_size: int, pixel_mean: Sequence[float]) -> keras.Model:
    """The image branch up to ``fc1_1bn``: pixels [B, H, W, 3] → pre-ReLU map [B, h, w, embed_dim]."""
    backbone = build_backbone(cfg)
    pool = pool_size_at(backbone, image_size, cfg)

    def bn(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=name)

    inp = keras.Input((None, None, 3), name="pixels")
    x = PixelNormalization(pixel_mean, bgr=uses_caffe_weights(cfg), name="pixel_norm")(inp)
    x = backbone(x)
    if pool > 1:
        x = keras.layers.AveragePooling2D(pool, strides=1, padding="valid", name="pool5")(x)
    x = keras.layers.Conv2D(cfg.image_head_dim, 1, use_bias=False, kernel_initializer=msra_fan_out(), name="fc1")(x)
    x = keras.layers.ReLU(name="fc1_relu")(bn("fc1_bn")(x))
    x = keras.layers.Conv2D(cfg.embed_dim, 1, use_bias=False, kernel_initializer=msra_fan_out(), name="fc1_1")(x)
    x = bn("fc1_1_bn")(x)
    model = keras.Model(inp, x, name="image_encoder")
    log.debug("image encoder: %s, pool5 %d, %d parameters", cfg.image_backbone, pool, model.count_params())
    return model
