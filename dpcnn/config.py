"""Configuration: frozen dataclasses, presets, ``--set section.key=value`` overrides, JSON I/O.

Every number that moves a reported result lives here. Paper presets take their values from
PAPER_SPEC.md (cited per field); every deviation is a field whose paper value is the paper
preset's default and a row in ``docs/fidelity.md``.

Sections: ``data`` (which dataset, tokenisation, image pre-processing), ``synthetic`` (the
embedded shapes dataset), ``model`` (architecture sizes), ``train`` (stages, optimiser,
losses, scale-out) and ``eval`` (test-time features, protocols).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

Schedule = tuple[tuple[int, float], ...]
"""A piecewise-constant learning-rate schedule: ``((epochs, global_lr), ...)``."""


from dpcnn.errors import ConfigError  # noqa: E402  (re-exported: dpcnn.config.ConfigError)

# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which data, how captions are tokenised, how images are pre-processed (PAPER_SPEC §1, §2.1, §6)."""

    dataset: str = "synthetic"
    """synthetic | coco | coco-format | flickr30k | cuhk-pedes."""
    root: str = "data"
    """Folder that holds the downloaded datasets (``dpcnn download --root``)."""
    annotations: str = ""
    """coco: Karpathy ``dataset_coco.json``; coco-format: the training captions file (or the only one);
    flickr30k: ``results_20130124.token`` or Karpathy ``dataset_flickr30k.json``; cuhk-pedes: ``reid_raw.json``.
    Empty: the dataset's default location under ``root``."""
    images: str = ""
    """Image folder. Empty: the dataset's default location under ``root``."""
    val_annotations: str = ""
    """coco-format only: an optional validation captions file."""
    test_annotations: str = ""
    """coco-format only: an optional test captions file."""
    split: str = "paper"
    """flickr30k: paper (Flickr8k test/dev lists) | karpathy. coco: karpathy. coco-format: given | random."""
    split_seed: int = 1
    """Seed for splitting a single coco-format file by image."""
    holdout_images: int = 1000
    """coco-format with a single file: images held out for val and for test (each)."""
    word_vectors: str = ""
    """A word2vec-format file (binary or text, any dimension). Empty: the dataset's default
    (GoogleNews under ``root``; the synthetic dataset trains its own with gensim at prepare)."""
    lowercase: bool = False
    """Lower-case captions before look-up. The paper matches case-sensitively (PAPER_SPEC §2.1)."""
    split_chars: str = " -.,()"
    """Characters that separate tokens (PAPER_SPEC §2.1; COCO adds '?')."""
    vocab_splits: tuple[str, ...] = ("train",)
    """Splits whose captions build the dictionary (Flickr30k paper: train+val). Never 'test'."""
    max_len: int = 32
    """L: in-vocabulary words kept per caption (32; CUHK-PEDES 56)."""
    image_size: int = 224
    """Side of the square training crop (PAPER_SPEC §1)."""
    resize_shorter: int = 256
    """Pre-resize: shorter side in pixels for evaluation images and the pixel mean (0 = keep)."""
    resize_square: bool = False
    """Pre-resize to resize_shorter × resize_shorter, aspect not kept (CUHK-PEDES): at evaluation,
    and in training the crop is drawn in that squashed frame (``resize_image.m``)."""
    crop_size: tuple[float, float] = (0.8, 1.0)
    """CropSize: the crop's side is √U[lo², hi²] of the largest crop of the sampled aspect that fits
    (its area is uniform in [lo², hi²], as ``vl_imreadjpeg.cu`` draws it)."""
    crop_aspect: tuple[float, float] = (0.75, 4.0 / 3.0)
    """Aspect-ratio range (W/H) of the random crop, sampled log-uniformly."""
    flip: bool = True
    """Random horizontal flip in training (the synthetic captions say left/right: off there)."""
    pixel_mean: tuple[float, ...] = ()
    """RGB mean subtracted from 0-255 pixels. Empty: computed over the training images at prepare."""
    prepared_dir: str = ""
    """Where prepare writes the manifest, vocabulary and embedding cache. Empty: derived."""


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded shapes dataset generated offline (used when ``data.dataset=synthetic``)."""

    num_train: int = 800
    num_val: int = 100
    num_test: int = 100
    image_size: int = 64
    seed: int = 0
    max_objects: int = 3
    word_dim: int = 64
    """Dimension of the demo's own word2vec vectors (trained with gensim at prepare)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture sizes of the one dual-path family; defaults are the paper's (PAPER_SPEC §1-3)."""

    image_backbone: str = "resnet50"
    """resnet50 | resnet101 | resnet152 | vgg16 | vgg19 | small (a residual CNN for CPU presets)."""
    image_weights: str = "imagenet"
    """imagenet | none | path to a ``.weights.h5`` file for the backbone."""
    backbone_bn: str = "batch_stats"
    """Frozen backbone's BN in stage I: batch_stats (MatConvNet: batch statistics, running
    statistics untouched) | frozen (Keras trainable=False: running statistics)."""
    small_widths: tuple[int, ...] = (32, 64, 128, 256)
    """small backbone: channels of each residual stage (each stage halves the resolution)."""
    small_blocks: tuple[int, ...] = (1, 1, 1, 1)
    """small backbone: residual blocks per stage."""
    image_head_dim: int = 2048
    """Width of fc1 (2048 for ResNet, 4096 for VGG)."""
    embed_dim: int = 2048
    """Joint embedding size (fc1_1 and fc5_2 outputs)."""
    text_blocks: tuple[int, ...] = (3, 4, 6, 1)
    """Bottleneck blocks per text stage (PAPER_SPEC §2.2)."""
    text_widths: tuple[int, ...] = (256, 512, 1024, 2048)
    """Output width of each text stage."""
    text_first_mid: tuple[int, ...] = (128, 512, 1024, 2048)
    """Middle width of each stage's first block."""
    text_mid: tuple[int, ...] = (64, 128, 256, 512)
    """Middle width of the other blocks of each stage."""
    text_strides: tuple[int, ...] = (1, 2, 2, 1)
    """Stride of each stage's first block (in its 1×2 conv and its projection)."""
    text_pool: str = "max"
    """Pooling over word positions: max (the dagnn.Pooling default) | avg."""
    dropout: float = 0.75
    """Drop probability before the shared classifier (Flickr 0.75, COCO 0.5, CUHK 0.8)."""
    classifier_bias: bool = True
    """The shared classifier has a bias (Flickr ResNet yes; COCO no)."""
    bn_momentum: float = 0.95
    """Running-statistics momentum of new BN layers (MatConvNet rate 0.05)."""
    bn_epsilon: float = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Two-stage schedule, optimiser with per-parameter multipliers, losses, scale-out (PAPER_SPEC §3-5)."""

    batch_size: int = 32
    """Global batch (images per step). Stage II: first half anchors, second half negative images."""
    stage1_schedule: Schedule = ((240, 0.1),)
    stage2_schedule: Schedule = ((40, 0.1), (20, 0.01))
    steps_per_epoch: int = 0
    """0: one epoch = every training image once (PAPER_SPEC §5)."""
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    """Coupled L2 added to the gradient (weight-decay multiplier 1 on every new parameter)."""
    lr_conv: float = 0.1
    lr_bn_gamma: float = 0.2
    lr_bn_beta: float = 0.1
    lr_classifier_w: float = 0.01
    lr_classifier_b: float = 0.02
    lr_embedding: float = 1e-3
    """Per-parameter learning-rate multipliers of the new layers (PAPER_SPEC §5)."""
    stage1_backbone_lr: float = 0.0
    """Stage-I multiplier of every backbone parameter. 0 = frozen (paper). CPU presets train
    their randomly initialised backbone like a new layer."""
    stage2_backbone_conv: float = 0.02
    stage2_backbone_gamma: float = 0.001
    stage2_backbone_beta: float = 0.02
    stage2_backbone_first_conv: float = 1e-4
    stage2_backbone_bn_momentum: float = 0.999
    """Stage-II backbone multipliers and BN momentum (PAPER_SPEC §5, inferred ordering)."""
    stage1_loss_weights: tuple[float, float, float] = (0.0, 1.0, 1.0)
    stage2_loss_weights: tuple[float, float, float] = (2.0, 1.0, 0.1)
    """rank : image instance : text instance (the official derOutputs, PAPER_SPEC §4.3)."""
    margin: float = 1.0
    negative_mining: str = "hard"
    """hard: hardest text of a candidate pool scored in inference mode | random (CUHK-PEDES)."""
    negative_pool: int = 256
    """Candidate captions per step for hard mining (global; split across replicas)."""
    position_shift: bool = True
    """Random start position of each caption in its L slots (PAPER_SPEC §2.1)."""
    strategy: str = "default"
    """default | mirrored | multiworker | tpu (tf.distribute)."""
    tpu: str = ""
    """TPU address for strategy=tpu ('' = the Colab/Cloud default resolver)."""
    mixed_precision: bool = False
    """mixed_float16 compute on GPU; logits, losses and variables stay float32."""
    seed: int = 0
    backup_every: int = 200
    """Steps between mid-stage backups (BackupAndRestore)."""
    validate_every: int = 1
    """Epochs between validation retrieval measurements (0 = never)."""
    val_images: int = 1000
    """Validation images used for the per-epoch R@K (0 = all)."""


@dataclass(frozen=True)
class EvalConfig:
    """Test-time features and protocols (PAPER_SPEC §6)."""

    batch_size: int = 32
    image_mode: str = "full"
    """full: the pre-resized image, spatially summed (paper) | center: a centre crop of image_size."""
    flip: bool = True
    """Add the horizontal flip's feature (off where captions say left/right)."""
    all_shifts: bool = True
    """Sum the text feature over every valid position shift (paper)."""
    protocols: tuple[str, ...] = ("full",)
    """full | 1k | 5k (COCO) | reid (CUHK-PEDES: text→image by person ID)."""
    ap_rule: str = "trapezoid"
    """reid mAP: trapezoid (the official compute_AP_rerank.m) | standard (mean precision at the hits)."""


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> None:
        from dpcnn.utils import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Config:
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {sorted(unknown)}; valid: {[f.name for f in fields(cls)]}"
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            if f.name == "name":
                kwargs["name"] = str(raw["name"])
                continue
            section_cls = _section_classes()[f.name]
            kwargs[f.name] = _section_from_dict(section_cls, f.name, raw[f.name])
        cfg = cls(**kwargs)
        validate(cfg)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
        return cls.from_dict(raw)


def _section_classes() -> dict[str, type]:
    return {
        "data": DataConfig,
        "synthetic": SyntheticConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
    }


def _section_from_dict(section_cls: type, section: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config section '{section}' must be an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(section_cls)
    valid = [f.name for f in fields(section_cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in valid:
            raise ConfigError(_unknown_key_message(f"{section}.{key}"))
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return section_cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Value parsing and type checking
# --------------------------------------------------------------------------------------------


def _parse_text(text: str, hint: Any, key: str) -> Any:
    """Parse a ``--set`` value written on the command line into the field's type."""
    origin = typing.get_origin(hint)
    if hint is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} expects true/false, got '{text}'")
    if hint in (int, float, str):
        return _coerce(text, hint, key)
    if origin is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return _coerce(json.loads(stripped), hint, key)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{key}: '{text}' is not valid JSON ({e})") from e
        if stripped == "":
            return _coerce([], hint, key)
        args = typing.get_args(hint)
        inner = args[0]
        if typing.get_origin(inner) is tuple:  # a schedule: "40:0.1,20:0.01"
            items = [item.split(":") for item in stripped.split(",")]
            return _coerce(items, hint, key)
        return _coerce(stripped.split(","), hint, key)
    raise ConfigError(f"{key}: cannot parse values of type {hint}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and lightly convert) ``value`` against a field's type hint."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_text(value, bool, key)
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            return _parse_text(value, hint, key)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key} expects {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    raise ConfigError(f"{key}: unsupported type {hint}")


def valid_keys() -> list[str]:
    """Every ``section.key`` that ``--set`` accepts."""
    keys = ["name"]
    for section, cls in _section_classes().items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys


def _unknown_key_message(key: str) -> str:
    keys = valid_keys()
    section = key.split(".", 1)[0]
    same = [k for k in keys if k.startswith(section + ".")]
    listing = same if same else keys
    return f"unknown config key '{key}'. Valid keys: {', '.join(listing)}"


def apply_overrides(cfg: Config, pairs: Iterable[str]) -> Config:
    """Apply ``section.key=value`` strings (from ``--set``) and validate the result."""
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects section.key=value, got '{pair}'")
        key, text = pair.split("=", 1)
        key = key.strip()
        if key == "name":
            cfg = replace(cfg, name=text)
            continue
        if "." not in key:
            raise ConfigError(_unknown_key_message(key))
        section, attr = key.split(".", 1)
        sections = _section_classes()
        if section not in sections:
            raise ConfigError(_unknown_key_message(key))
        section_cls = sections[section]
        names = {f.name for f in fields(section_cls)}
        if attr not in names:
            raise ConfigError(_unknown_key_message(key))
        hint = typing.get_type_hints(section_cls)[attr]
        value = _parse_text(text, hint, key)
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{attr: value})})
    validate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

DATASETS = ("synthetic", "coco", "coco-format", "flickr30k", "cuhk-pedes")
BACKBONES = ("resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "small")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
PROTOCOLS = ("full", "1k", "5k", "reid")


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the first inconsistent value."""
    d, m, t, e, s = cfg.data, cfg.model, cfg.train, cfg.eval, cfg.synthetic

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(d.dataset in DATASETS, f"data.dataset must be one of {DATASETS}, got '{d.dataset}'")
    need(d.max_len >= 2, f"data.max_len must be ≥ 2, got {d.max_len}")
    need("test" not in d.vocab_splits, "data.vocab_splits must not include 'test': test captions may not shape the vocabulary")
    need(all(x in ("train", "val") for x in d.vocab_splits), f"data.vocab_splits: train and/or val, got {d.vocab_splits}")
    need(d.image_size >= 16, f"data.image_size must be ≥ 16, got {d.image_size}")
    need(0 < d.crop_size[0] <= d.crop_size[1] <= 1, f"data.crop_size must satisfy 0 < lo ≤ hi ≤ 1, got {d.crop_size}")
    need(0 < d.crop_aspect[0] <= d.crop_aspect[1], f"data.crop_aspect must satisfy 0 < lo ≤ hi, got {d.crop_aspect}")
    need(not d.resize_square or d.resize_shorter > 0,
         "data.resize_square needs data.resize_shorter > 0 (the side of the square)")
    need(len(d.pixel_mean) in (0, 3), f"data.pixel_mean needs 3 values (RGB) or none, got {d.pixel_mean}")
    need(len(d.split_chars) > 0, "data.split_chars must not be empty")
    need(m.image_backbone in BACKBONES, f"model.image_backbone must be one of {BACKBONES}, got '{m.image_backbone}'")
    need(m.backbone_bn in ("batch_stats", "frozen"), f"model.backbone_bn must be batch_stats or frozen, got '{m.backbone_bn}'")
    need(m.text_pool in ("max", "avg"), f"model.text_pool must be max or avg, got '{m.text_pool}'")
    n_stages = len(m.text_blocks)
    need(n_stages >= 1, "model.text_blocks needs at least one stage")
    for name in ("text_widths", "text_first_mid", "text_mid", "text_strides"):
        need(len(getattr(m, name)) == n_stages,
             f"model.{name} needs one value per text stage ({n_stages}), got {getattr(m, name)}")
    need(all(b >= 1 for b in m.text_blocks), f"model.text_blocks must be ≥ 1, got {m.text_blocks}")
    need(all(st in (1, 2) for st in m.text_strides), f"model.text_strides must be 1 or 2, got {m.text_strides}")
    need(len(m.small_widths) == len(m.small_blocks) and len(m.small_widths) >= 1,
         "model.small_widths and model.small_blocks need the same (non-zero) length")
    need(0.0 <= m.dropout < 1.0, f"model.dropout is a drop probability in [0, 1), got {m.dropout}")
    need(m.embed_dim >= 1 and m.image_head_dim >= 1, "model.embed_dim and model.image_head_dim must be positive")
    need(0.0 <= m.bn_momentum < 1.0, f"model.bn_momentum must be in [0, 1), got {m.bn_momentum}")
    need(t.batch_size >= 2 and t.batch_size % 2 == 0, f"train.batch_size must be even and ≥ 2 (stage II halves it), got {t.batch_size}")
    for name in ("stage1_schedule", "stage2_schedule"):
        sched = getattr(t, name)
        need(all(ep >= 1 and lr >= 0 for ep, lr in sched), f"train.{name}: epochs ≥ 1 and lr ≥ 0, got {sched}")
    need(t.negative_mining in ("hard", "random"), f"train.negative_mining must be hard or random, got '{t.negative_mining}'")
    need(t.negative_pool >= 1, f"train.negative_pool must be ≥ 1, got {t.negative_pool}")
    need(t.strategy in STRATEGIES, f"train.strategy must be one of {STRATEGIES}, got '{t.strategy}'")
    need(t.margin >= 0, f"train.margin must be ≥ 0, got {t.margin}")
    need(t.backup_every >= 1, f"train.backup_every must be ≥ 1, got {t.backup_every}")
    need(e.image_mode in ("full", "center"), f"eval.image_mode must be full or center, got '{e.image_mode}'")
    need(e.ap_rule in ("trapezoid", "standard"), f"eval.ap_rule must be trapezoid or standard, got '{e.ap_rule}'")
    need(all(p in PROTOCOLS for p in e.protocols) and len(e.protocols) > 0,
         f"eval.protocols must be a non-empty list from {PROTOCOLS}, got {e.protocols}")
    need(s.num_train >= 2 and s.num_val >= 1 and s.num_test >= 1, "synthetic.num_train ≥ 2, num_val ≥ 1, num_test ≥ 1")
    need(s.image_size >= 16, f"synthetic.image_size must be ≥ 16, got {s.image_size}")
    need(1 <= s.max_objects <= 4, f"synthetic.max_objects must be in 1..4, got {s.max_objects}")


def fingerprint(obj: Any) -> str:
    """Short stable hash of a config section (used to key prepared-data caches)."""
    raw = json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

def _paper_train(**kw: Any) -> TrainConfig:
    return replace(TrainConfig(), **kw)


def _cpu_model(**kw: Any) -> ModelConfig:
    """Small settings of the same family for CPU presets (REFERENCE_RESULTS: the paper size cannot learn here)."""
    base = ModelConfig(
        image_backbone="small",
        image_weights="none",
        small_widths=(16, 32, 64),
        small_blocks=(1, 1, 1),
        image_head_dim=256,
        embed_dim=256,
        text_blocks=(1, 1, 1, 1),
        text_widths=(64, 128, 128, 256),
        text_first_mid=(32, 64, 128, 256),
        text_mid=(16, 32, 64, 64),
        text_strides=(1, 2, 2, 1),
        dropout=0.2,
        classifier_bias=True,
    )
    return replace(base, **kw)


def _cpu_train(**kw: Any) -> TrainConfig:
    """CPU presets: the paper's optimiser and multipliers, a global LR 10× the paper's, and a
    faster classifier and word embedding (measured: with the paper's 0.01 / 0.001 multipliers the
    text branch stays at chance for the few thousand steps a CPU can afford; docs/fidelity.md)."""
    base = TrainConfig(
        batch_size=32,
        stage1_schedule=((150, 1.0),),
        stage2_schedule=((50, 1.0), (10, 0.1)),
        lr_classifier_w=0.1,
        lr_classifier_b=0.2,
        lr_embedding=0.1,
        stage1_backbone_lr=0.1,
        stage2_backbone_conv=0.1,
        stage2_backbone_gamma=0.2,
        stage2_backbone_beta=0.1,
        stage2_backbone_first_conv=0.1,
        stage2_backbone_bn_momentum=0.95,
        negative_pool=64,
        backup_every=100,
        validate_every=10,
        val_images=100,
    )
    return replace(base, **kw)


def _presets() -> dict[str, Config]:
    synthetic_data = DataConfig(
        dataset="synthetic", max_len=16, image_size=40, resize_shorter=0, flip=False,
        crop_size=(0.875, 1.0), crop_aspect=(0.9, 1.0 / 0.9),
    )
    tiny = Config(
        name="tiny",
        data=replace(synthetic_data, image_size=28, max_len=16),
        synthetic=SyntheticConfig(num_train=48, num_val=16, num_test=16, image_size=32, word_dim=16),
        model=_cpu_model(
            small_widths=(8, 16), small_blocks=(1, 1), image_head_dim=32, embed_dim=32,
            text_blocks=(1, 1), text_widths=(32, 64), text_first_mid=(16, 32), text_mid=(8, 16),
            text_strides=(1, 2), dropout=0.25,
        ),
        train=_cpu_train(batch_size=8, stage1_schedule=((2, 0.1),), stage2_schedule=((1, 0.1),),
                         negative_pool=8, backup_every=3, validate_every=1, val_images=16),
        eval=EvalConfig(batch_size=16, image_mode="full", flip=False),
    )
    demo = Config(
        name="demo",
        data=synthetic_data,
        synthetic=SyntheticConfig(num_train=400, num_val=100, num_test=100, image_size=48),
        model=_cpu_model(),
        train=_cpu_train(),
        eval=EvalConfig(batch_size=64, image_mode="full", flip=False),
    )
    demo_full = Config(
        name="demo-full",
        data=replace(synthetic_data, image_size=224, resize_shorter=256),
        synthetic=SyntheticConfig(image_size=256, num_train=4000, num_val=500, num_test=500, word_dim=300),
        model=ModelConfig(image_weights="none", dropout=0.2),
        train=_cpu_train(stage1_schedule=((60, 1.0),), stage2_schedule=((30, 1.0), (10, 0.1)),
                         negative_pool=256, backup_every=500, validate_every=5, val_images=500),
        eval=EvalConfig(flip=False),
    )
    flickr = Config(
        name="flickr30k",
        data=DataConfig(dataset="flickr30k", split="paper", vocab_splits=("train", "val"),
                        split_chars=" -.,()"),
        model=ModelConfig(dropout=0.75, classifier_bias=True),
        train=_paper_train(stage1_schedule=((240, 0.1),), stage2_schedule=((40, 0.1), (20, 0.01)),
                           stage2_loss_weights=(2.0, 1.0, 0.1)),
        eval=EvalConfig(protocols=("full",)),
    )
    flickr_karpathy = replace(
        flickr, name="flickr30k-karpathy",
        data=replace(flickr.data, split="karpathy", vocab_splits=("train",)),
    )
    coco = Config(
        name="coco",
        data=DataConfig(dataset="coco", split="karpathy", split_chars=" -.,()?"),
        model=ModelConfig(dropout=0.5, classifier_bias=False),
        train=_paper_train(stage1_schedule=((75, 0.1),),
                           # official: 15 × 0.1 + 5 × 0.01 + 1 × 0.001 trained, epoch 20 tested
                           stage2_schedule=((15, 0.1), (5, 0.01)),
                           stage2_loss_weights=(2.0, 1.0, 0.1)),
        eval=EvalConfig(protocols=("1k", "5k")),
    )
    cuhk = Config(
        name="cuhk-pedes",
        data=DataConfig(dataset="cuhk-pedes", max_len=56, resize_square=True),
        model=ModelConfig(dropout=0.8, classifier_bias=True),
        # official: 40 × 0.1 + 21 × 0.01 trained, epoch 60 tested
        train=_paper_train(stage1_schedule=((180, 0.1),), stage2_schedule=((40, 0.1), (20, 0.01)),
                           stage2_loss_weights=(2.0, 1.0, 0.5), negative_mining="random"),
        eval=EvalConfig(protocols=("reid",), ap_rule="trapezoid"),
    )
    return {c.name: c for c in (tiny, demo, demo_full, flickr, flickr_karpathy, coco, cuhk)}


PRESET_NAMES = ("tiny", "demo", "demo-full", "flickr30k", "flickr30k-karpathy", "coco", "cuhk-pedes")


def preset(name: str) -> Config:
    """A named preset (see DESIGN.md §1)."""
    presets = _presets()
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'. Presets: {', '.join(PRESET_NAMES)}; or a path to a config .json")
    cfg = presets[name]
    validate(cfg)
    return cfg


def resolve(name_or_path: str, overrides: Iterable[str] = ()) -> Config:
    """A preset name or a JSON file, then ``--set`` overrides."""
    if name_or_path.endswith(".json") or Path(name_or_path).is_file():
        cfg = Config.load(name_or_path)
    else:
        cfg = preset(name_or_path)
    return apply_overrides(cfg, overrides)
