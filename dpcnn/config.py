"""Configuration: frozen dataclasses, ``--set section.key=value`` overrides, validation, JSON I/O.

Every number that moves a reported result lives here (the defaults are the paper's values, the
learning-rate multiplier tables included); the presets that fill them in, and :func:`resolve
<dpcnn.presets.resolve>` that turns a preset name or a JSON file plus ``--set`` pairs into a
checked config, are in :mod:`dpcnn.presets` (paper presets take PAPER_SPEC.md's values; every deviation is a field whose
paper value is the paper preset's default and a row in ``docs/fidelity.md``).

Sections: ``data`` (which dataset, tokenisation, image pre-processing), ``synthetic`` (the
embedded shapes dataset), ``model`` (architecture sizes), ``train`` (stages, optimiser and its
multiplier tables, losses, scale-out) and ``eval`` (test-time features, protocols).

``--set`` values are parsed by the field's type: booleans (true/false/yes/no/on/off/1/0), numbers,
strings, lists (``a,b,c`` or JSON ``[...]``), schedules ``epochs:lr,epochs:lr`` and multiplier
tables, where ``pattern:multiplier,…`` changes rows (an existing pattern gets the new value, a new
one is put first) and a JSON list ``[["pattern", m], …]`` replaces the whole table.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dpcnn.errors import ConfigError

log = logging.getLogger(__name__)

Schedule = tuple[tuple[int, float], ...]
"""A piecewise-constant learning-rate schedule: ``((epochs, global_lr), ...)``."""

__all__ = ["Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "Rules", "Schedule",
           "SyntheticConfig", "TrainConfig", "apply_overrides", "validate"]


# --------------------------------------------------------------------------------------------
# Learning-rate multiplier tables (applied to a model by dpcnn.training.multipliers)
# --------------------------------------------------------------------------------------------

Rules = tuple[tuple[str, float], ...]

PAPER_STAGE1: Rules = (
    ("backbone.*", 0.0),                   # the ImageNet backbone is frozen (LR 0, weight decay 0)
    ("classifier/*/kernel", 0.01),         # shared W: a conv followed by a loss layer
    ("classifier/*/bias", 0.02),
    ("text/embedding/*", 1e-3),            # fc2 (word2vec) weight and bias
    ("*/bn/*/gamma", 0.2),
    ("*/bn/*/beta", 0.1),
    ("*", 0.1),                            # every other new conv / dense weight
)
"""Stage I of every paper preset (``initParams.m``; issue #4: the classifier's 0.1 × 0.01 = 0.001)."""

PAPER_STAGE2: Rules = (
    ("backbone.*/first_conv/*/kernel", 1e-4),   # params(1), conv1's filter
    ("backbone.vgg*/*/kernel", 0.001),          # VGG filters: odd params ×0.001 (…_Rankloss_vgg19.m:7-14)
    ("backbone.vgg*/*/bias", 0.02),             # VGG biases: even params ×0.02
    ("backbone.*/bn/*/gamma", 0.001),           # ResNet (resnet52_new_hope_word_Rankloss.m:7-14, the
    ("backbone.*/bn/*/beta", 0.02),             # MatConvNet order conv W, then BN γ, β, moments)
    ("backbone.*", 0.02),                       # ResNet filters (and the biases Keras' convs have)
    *PAPER_STAGE1[1:],                          # new layers keep their stage-I multipliers
)
"""Stage II of every paper preset: the whole network trains (PAPER_SPEC §5)."""


def update_rules(rules: Rules, changes: Sequence[tuple[str, float]]) -> Rules:
    """``--set`` on a table: a row with the same pattern gets the new multiplier; a new pattern is
    put first (first match wins, so it takes precedence over the rows it overlaps)."""
    table = [list(r) for r in rules]
    new = []
    for pattern, mult in changes:
        for row in table:
            if row[0] == pattern:
                row[1] = float(mult)
                break
        else:
            new.append((pattern, float(mult)))
    return tuple(new) + tuple((p, float(m)) for p, m in table)


@dataclass(frozen=True)
class DataConfig:
    """Which data, how captions are tokenised, how images are pre-processed (PAPER_SPEC §1, §2.1, §6)."""

    dataset: str = "synthetic"
    """synthetic | coco | coco-format | flickr30k | cuhk-pedes (see ``dpcnn.data.datasets``)."""
    root: str = "data"
    """Folder that holds the downloaded datasets (``dpcnn download --root``)."""
    annotations: str = ""
    """coco: Karpathy ``dataset_coco.json``, or your own COCO-format captions file; coco-format: the
    training captions file (or the only one); flickr30k: ``results_20130124.token`` or Karpathy
    ``dataset_flickr30k.json``; cuhk-pedes: ``reid_raw.json``. Empty: the dataset's default path."""
    images: str = ""
    """Image folder. Empty: the dataset's default location under ``root``."""
    val_annotations: str = ""
    """coco-format: an optional validation captions file."""
    test_annotations: str = ""
    """coco-format: an optional test captions file."""
    split: str = "paper"
    """flickr30k: paper (Flickr8k test/dev lists) | karpathy. coco: karpathy."""
    split_seed: int = 1
    """Seed for holding images out of a single coco-format file."""
    holdout_images: int = 0
    """coco-format without val/test files: images held out for each of them. 0 = 10 % of the
    file's images each, at most 1,000 (logged)."""
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
    """Pre-resize: shorter side in pixels of evaluation images (0 = keep); the pixel mean is taken
    over the full-size decoded training images (docs/fidelity.md #9)."""
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
    cache_images: bool = False
    """Keep the decoded training images in memory after the first epoch (small datasets; the
    random crop is still drawn every epoch from the decoded image)."""
    prepared_dir: str = ""
    """Where prepare writes the manifest, vocabulary and embedding matrix. Empty: derived."""


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
    """A frozen backbone's BN in stage I: batch_stats (MatConvNet: batch statistics, running
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
    """Coupled L2 added to the gradient (weight-decay multiplier 1 on every trained parameter)."""
    stage1_multipliers: Rules = PAPER_STAGE1
    stage2_multipliers: Rules = PAPER_STAGE2
    """Per-parameter LR multipliers: (pattern, multiplier) rows, first match wins
    (``dpcnn.training.multipliers``; PAPER_SPEC §5)."""
    stage2_backbone_bn_momentum: float = 0.999
    """Stage-II backbone BN running-statistics momentum (MatConvNet rate 0.001)."""
    stage1_loss_weights: tuple[float, float, float] = (0.0, 1.0, 1.0)
    stage2_loss_weights: tuple[float, float, float] = (2.0, 1.0, 0.1)
    """rank : image instance : text instance (the official derOutputs, PAPER_SPEC §4.3)."""
    margin: float = 1.0
    stage2_objective: str = "ranking"
    """The cross-modal term of stage II, weighted by the rank weight of ``stage2_loss_weights``:
    ranking (the paper: two-way hinge on one mined negative per anchor) | vsepp (hinge on the
    hardest in-batch negative, Faghri et al. 2018) | infonce (CLIP's symmetric cross-entropy with a
    learned temperature). Only ``ranking`` is the paper (docs/fidelity.md, "Options, not the paper")."""
    infonce_temperature: float = 0.07
    """Initial temperature of ``stage2_objective=infonce`` (CLIP's), learned from there."""
    infonce_scale_multiplier: float = 0.01
    """LR multiplier of the learned log logit scale (0 = a fixed temperature). CLIP trains it with
    Adam at 5e-4; with this SGD at the stage's global LR, multiplier 1 moved it by ~1 a step and
    wrecked the stage-I features within an epoch (docs/fidelity.md)."""
    with_stage1: bool = True
    """false: no stage I; stage II starts from the initial weights (the paper's "ranking loss alone"
    ablation, with ``stage2_loss_weights=(2, 0, 0)``)."""
    negative_mining: str = "hard"
    """hard: hardest text of a candidate pool scored in inference mode | random (CUHK-PEDES)."""
    negative_pool: int = 256
    """Candidate captions per step for hard mining (global; split across replicas)."""
    position_shift: bool = True
    """Random start position of each caption in its L slots (PAPER_SPEC §2.1)."""
    strategy: str = "default"
    """default | mirrored | multiworker | tpu (tf.distribute)."""
    tpu: str = ""
    """TPU address for strategy=tpu ('' = try 'local', the Colab / Cloud TPU VM, then the default resolver)."""
    mixed_precision: str = "auto"
    """mixed_float16 compute (logits, losses and variables stay float32): true | false | auto (on a GPU)."""
    jit_compile: str = "false"
    """XLA for the training step: true | false | auto (on a GPU or TPU)."""
    seed: int = 0
    backup_every: int = 0
    """Steps between mid-stage backups (0 = by the clock only)."""
    backup_minutes: float = 20.0
    """Wall-clock minutes between mid-stage backups (0 = by steps only, and at every epoch end).
    With a clock, an epoch end writes a backup only when the clock is due (README "Long runs")."""
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
    """full | 1k | 5k (COCO) | reid (CUHK-PEDES: text→image by person ID) | class (emoji: both
    directions by identity)."""
    ap_rule: str = "trapezoid"
    """reid mAP: trapezoid (the official compute_AP_rerank.m) | standard (mean precision at the hits)."""


SECTIONS = {"data": DataConfig, "synthetic": SyntheticConfig, "model": ModelConfig, "train": TrainConfig,
            "eval": EvalConfig}

ENVIRONMENT_KEYS = ("train.strategy", "train.tpu", "train.mixed_precision", "train.jit_compile",
                    "train.backup_every", "train.backup_minutes", "train.validate_every", "eval.batch_size")
"""Keys that say where and how a run executes, not what it computes: a resumed run may change them."""


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        from dpcnn.utils import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    def get(self, key: str) -> Any:
        """The value of ``section.key`` (or ``name``)."""
        if key == "name":
            return self.name
        section, attr = key.split(".", 1)
        return getattr(getattr(self, section), attr)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Config:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"a config is a JSON object of sections, got {type(raw).__name__}")
        unknown = set(raw) - {"name", *SECTIONS}
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; valid: name, {', '.join(SECTIONS)}")
        kwargs: dict[str, Any] = {"name": str(raw.get("name", "custom"))}
        for section, section_cls in SECTIONS.items():
            values = raw.get(section, {})
            if not isinstance(values, Mapping):
                raise ConfigError(f"config section '{section}' must be an object, got {type(values).__name__}")
            hints = typing.get_type_hints(section_cls)
            for key in values:
                if key not in hints:
                    raise ConfigError(unknown_key_message(f"{section}.{key}"))
            kwargs[section] = section_cls(**{k: coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()})
        cfg = cls(**kwargs)
        validate(cfg)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
        return cls.from_dict(raw)


# --------------------------------------------------------------------------------------------
# Values: one coercion by type hint, one parser for command-line text
# --------------------------------------------------------------------------------------------

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (from JSON or parsed text) checked and converted to the field type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = parse_text(value, hint, key)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key} expects {len(args)} values, got {len(value)}: {value!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if hint is str:
        if isinstance(value, bool):  # true/false switches that also take "auto"
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string, got {value!r}")
    if hint in (int, float) and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, (int, float)):
                if hint is float:
                    return float(number)
                if float(number).is_integer():
                    return int(number)
        except ValueError:
            pass
        raise ConfigError(f"{key} expects {'an integer' if hint is int else 'a number'}, got {value!r}")
    raise ConfigError(f"{key} expects {getattr(hint, '__name__', hint)}, got {value!r}")


def parse_text(text: str, hint: Any, key: str) -> Any:
    """A ``--set`` value as written on the command line → a value :func:`coerce` accepts."""
    stripped = text.strip()
    if typing.get_origin(hint) is not tuple:
        return stripped if hint is not str else text
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{key}: '{text}' is not valid JSON ({e})") from e
    if not stripped:
        return []
    items = [item.strip() for item in stripped.split(",")]
    if typing.get_origin(typing.get_args(hint)[0]) is tuple:  # schedules and multiplier tables
        return [item.rsplit(":", 1) for item in items]
    return items


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def valid_keys() -> list[str]:
    """Every ``section.key`` that ``--set`` accepts."""
    return ["name"] + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


def unknown_key_message(key: str) -> str:
    near = difflib.get_close_matches(key, valid_keys(), n=3, cutoff=0.6)
    if not near:
        attr = key.rsplit(".", 1)[-1]
        near = [k for k in valid_keys() if k.rsplit(".", 1)[-1] == attr][:3]
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"unknown config key '{key}'{hint} (`dpcnn config --keys` lists every key)"


def apply_overrides(cfg: Config, pairs: Iterable[str]) -> Config:
    """Apply ``section.key=value`` strings (from ``--set``), then check that each has an effect."""
    explicit = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects section.key=value, got '{pair}'")
        key, text = (part for part in pair.split("=", 1))
        key = key.strip()
        if key == "name":
            cfg = replace(cfg, name=text)
            continue
        section, _, attr = key.partition(".")
        hints = typing.get_type_hints(SECTIONS[section]) if section in SECTIONS else {}
        if attr not in hints:
            raise ConfigError(unknown_key_message(key))
        value = coerce(parse_text(text, hints[attr], key), hints[attr], key)
        if hints[attr] == Rules and not text.strip().startswith("["):
            value = update_rules(getattr(getattr(cfg, section), attr), value)
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{attr: value})})
        explicit.append(key)
    cfg = _follow_intent(cfg, explicit)
    check_effective(cfg, explicit)
    validate(cfg)
    return cfg


_OWN_DATA_KEYS = ("data.annotations", "data.val_annotations", "data.test_annotations")
_OWN_DATASETS = ("coco-format", "csv", "coco")


def _follow_intent(cfg: Config, explicit: list[str]) -> Config:
    """Where the intent is unambiguous, make it work: captions files given to the synthetic
    dataset mean the user's own COCO-format data."""
    if cfg.data.dataset == "synthetic" and "data.dataset" not in explicit and "data.annotations" in explicit:
        kind = "csv" if cfg.data.annotations.lower().endswith(".csv") else "coco-format"
        log.info("data.annotations given with the synthetic dataset: reading your own data (data.dataset=%s)", kind)
        return replace(cfg, data=replace(cfg.data, dataset=kind))
    return cfg


def _no_effect(key: str, because: str) -> ConfigError:
    return ConfigError(f"{key} has no effect here: {because}")


def check_effective(cfg: Config, explicit: Iterable[str]) -> None:
    """ConfigError for an explicitly set key that the rest of the config makes meaningless,
    naming the key that decides (DESIGN §1: nothing is silently ignored)."""
    d, t = cfg.data, cfg.train
    for key in explicit:
        if key.startswith("synthetic.") and d.dataset != "synthetic":
            raise _no_effect(key, f"it describes the synthetic dataset, and data.dataset={d.dataset}")
        if key in (*_OWN_DATA_KEYS, "data.images") and d.dataset == "synthetic":
            raise _no_effect(key, "data.dataset=synthetic generates its own data: set data.dataset=coco-format "
                                  "(and data.annotations, data.images) for your own captions")
        if key in ("data.val_annotations", "data.test_annotations") and d.dataset not in _OWN_DATASETS:
            raise _no_effect(key, f"separate val/test files are read for your own data (data.dataset=coco-format "
                                  f"or csv), and data.dataset={d.dataset}")
        if key in ("data.holdout_images", "data.split_seed"):
            if d.dataset not in _OWN_DATASETS or (d.val_annotations and d.test_annotations):
                raise _no_effect(key, "images are held out only from a single COCO-format file or CSV "
                                      "(data.dataset=coco-format or csv without both data.val_annotations and data.test_annotations)")
        if key == "data.split" and d.dataset not in ("flickr30k", "coco"):
            raise _no_effect(key, f"data.split chooses the Flickr30k/MSCOCO split, and data.dataset={d.dataset}")
        if key == "train.tpu" and t.strategy != "tpu":
            raise _no_effect(key, f"it is read with train.strategy=tpu, and train.strategy={t.strategy}")
        if key == "train.negative_pool" and t.negative_mining != "hard":
            raise _no_effect(key, f"the pool is mined with train.negative_mining=hard, and it is {t.negative_mining}")
        if key in ("model.small_widths", "model.small_blocks") and cfg.model.image_backbone != "small":
            raise _no_effect(key, f"it sizes model.image_backbone=small, and it is {cfg.model.image_backbone}")
        if key in ("train.infonce_temperature", "train.infonce_scale_multiplier") and t.stage2_objective != "infonce":
            raise _no_effect(key, f"it belongs to train.stage2_objective=infonce, and it is {t.stage2_objective}")
        if key == "train.stage2_objective" and t.stage2_loss_weights[0] == 0:
            raise _no_effect(key, "its weight, the first of train.stage2_loss_weights, is 0")
        if key == "eval.ap_rule" and "reid" not in cfg.eval.protocols:
            raise _no_effect(key, "it is the mAP rule of eval.protocols=reid, which is not among the protocols")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

BACKBONES = ("resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "small")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
PROTOCOLS = ("full", "1k", "5k", "reid", "class")
SWITCHES = ("auto", "true", "false")
OBJECTIVES = ("ranking", "vsepp", "infonce")


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the first inconsistent value."""
    d, m, t, e, s = cfg.data, cfg.model, cfg.train, cfg.eval, cfg.synthetic

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    def choice(key: str, options: tuple[str, ...]) -> None:
        need(cfg.get(key) in options, f"{key} must be one of {', '.join(options)}, got '{cfg.get(key)}'")

    # data.dataset is checked by the dataset registry (dpcnn.presets.resolve, dpcnn.data.datasets.get)
    for key, options in (("model.image_backbone", BACKBONES),
                         ("model.backbone_bn", ("batch_stats", "frozen")), ("model.text_pool", ("max", "avg")),
                         ("train.negative_mining", ("hard", "random")), ("train.strategy", STRATEGIES),
                         ("train.stage2_objective", OBJECTIVES),
                         ("train.mixed_precision", SWITCHES), ("train.jit_compile", SWITCHES),
                         ("eval.image_mode", ("full", "center")), ("eval.ap_rule", ("trapezoid", "standard"))):
        choice(key, options)
    need(d.max_len >= 2, f"data.max_len must be ≥ 2, got {d.max_len}")
    need("test" not in d.vocab_splits, "data.vocab_splits must not include 'test': test captions may not shape the vocabulary")
    need(all(x in ("train", "val") for x in d.vocab_splits), f"data.vocab_splits: train and/or val, got {d.vocab_splits}")
    need(d.image_size >= 16, f"data.image_size must be ≥ 16, got {d.image_size}")
    need(0 < d.crop_size[0] <= d.crop_size[1] <= 1, f"data.crop_size must satisfy 0 < lo ≤ hi ≤ 1, got {d.crop_size}")
    need(0 < d.crop_aspect[0] <= d.crop_aspect[1], f"data.crop_aspect must satisfy 0 < lo ≤ hi, got {d.crop_aspect}")
    need(not d.resize_square or d.resize_shorter > 0, "data.resize_square needs data.resize_shorter > 0 (the side of the square)")
    need(len(d.pixel_mean) in (0, 3), f"data.pixel_mean needs 3 values (RGB) or none, got {d.pixel_mean}")
    need(len(d.split_chars) > 0, "data.split_chars must not be empty")
    need(d.holdout_images >= 0, f"data.holdout_images must be ≥ 0 (0 = 10 %), got {d.holdout_images}")
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
        need(len(sched) > 0 and all(ep >= 1 and lr >= 0 for ep, lr in sched),
             f"train.{name}: at least one (epochs ≥ 1, lr ≥ 0) pair, got {sched}")
    for name in ("stage1_multipliers", "stage2_multipliers"):
        table = getattr(t, name)
        need(len(table) > 0 and all(mult >= 0 for _, mult in table), f"train.{name}: multipliers must be ≥ 0, got {table}")
        need(table[-1][0] == "*", f"train.{name} must end with the catch-all row ('*', multiplier), got {table[-1]}")
    need(t.stage1_loss_weights[0] == 0, "train.stage1_loss_weights: the rank weight must be 0 (stage I has no negatives)")
    need(t.negative_pool >= 1, f"train.negative_pool must be ≥ 1, got {t.negative_pool}")
    need(t.margin >= 0, f"train.margin must be ≥ 0, got {t.margin}")
    need(t.infonce_temperature > 0, f"train.infonce_temperature must be > 0, got {t.infonce_temperature}")
    need(t.infonce_scale_multiplier >= 0, f"train.infonce_scale_multiplier must be ≥ 0, got {t.infonce_scale_multiplier}")
    need(all(w >= 0 for w in t.stage2_loss_weights) and any(t.stage2_loss_weights),
         f"train.stage2_loss_weights must be ≥ 0 and not all 0, got {t.stage2_loss_weights}")
    need(t.backup_every >= 0 and t.backup_minutes >= 0 and (t.backup_every > 0 or t.backup_minutes > 0),
         f"train.backup_every (steps) and train.backup_minutes must be ≥ 0 and not both 0, got {t.backup_every} "
         f"and {t.backup_minutes}")
    need(all(p in PROTOCOLS for p in e.protocols) and len(e.protocols) > 0,
         f"eval.protocols must be a non-empty list from {PROTOCOLS}, got {e.protocols}")
    need(s.num_train >= 2 and s.num_val >= 1 and s.num_test >= 1, "synthetic.num_train ≥ 2, num_val ≥ 1, num_test ≥ 1")
    need(s.image_size >= 16, f"synthetic.image_size must be ≥ 16, got {s.image_size}")
    need(1 <= s.max_objects <= 4, f"synthetic.max_objects must be in 1..4, got {s.max_objects}")


def fingerprint(obj: Any) -> str:
    """Short stable hash of a config section (used to key prepared-data caches)."""
    raw = json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:10]


def differences(a: Config, b: Config) -> list[str]:
    """``key: old → new`` for every key whose value differs."""
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in valid_keys() if a.get(k) != b.get(k)]
