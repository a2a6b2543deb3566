"""From ``data.*`` settings to the labelled manifest: find the files, call the right reader.

:func:`load_records` dispatches on ``data.dataset``; default locations follow the layout under
``data.root`` (``dpcnn download --root``):

====================  =============================================================================
coco                  ``coco/annotations/captions_{train,val}2014.json``, ``coco/{train,val}2014/``,
                      ``karpathy/dataset_coco.json`` (``data.annotations`` replaces the Karpathy file,
                      ``data.images`` the folder holding ``train2014/``, ``val2014/`` and
                      ``annotations/``). If ``data.annotations`` is a COCO-format captions file
                      instead, it is read as ``coco-format`` (a user's own data, DESIGN §1).
coco-format           ``data.annotations`` (training file, or the only one), optional
                      ``data.val_annotations`` / ``data.test_annotations``, images in ``data.images``.
                      A single file is split by image (``data.holdout_images``, ``data.split_seed``).
flickr30k             ``flickr30k/results_20130124.token``, ``flickr30k/flickr30k-images/``,
                      ``flickr8k/Flickr_8k.{test,dev}Images.txt`` (``data.split=paper``) or
                      ``karpathy/dataset_flickr30k.json`` (``data.split=karpathy``).
cuhk-pedes            ``cuhk-pedes/reid_raw.json``, ``cuhk-pedes/imgs/``.
synthetic             the ``{split: json}`` files that the generator wrote, images in ``<json dir>/<split>/``.
====================  =============================================================================

A missing file raises :class:`DataNotFoundError` (a FileNotFoundError) whose message names the
path, the ``data.*`` key that sets it and how to get the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from dpcnn.config import ConfigError, DataConfig
from dpcnn.data.coco import (
    coco_records_from_dict,
    is_coco_format,
    load_json_source,
    mscoco_karpathy_from_dict,
    read_coco_format,
)
from dpcnn.data.cuhk_pedes import read_cuhk_pedes
from dpcnn.data.flickr30k import read_flickr30k_karpathy, read_flickr30k_paper
from dpcnn.data.manifest import SPLITS, ImageRecord, assign_labels
from dpcnn.data.splits import check_disjoint, split_by_image

log = logging.getLogger(__name__)

FLICKR30K_FORM = ("Flickr30k images and captions come via a request form "
                  "(https://shannon.cs.illinois.edu/DenotationGraph/): `dpcnn download flickr30k` "
                  "prints the manual steps")
CUHK_PEDES_FORM = ("CUHK-PEDES comes via a request form "
                   "(https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description): "
                   "`dpcnn download cuhk-pedes` prints the manual steps")


from dpcnn.errors import DataNotFoundError  # noqa: E402


def _require(path: Path, what: str, setting: str, how: str) -> Path:
    """Raise DataNotFoundError unless ``path`` exists.

    setting: the ``data.*`` assignment that points at it ("data.annotations=PATH");
    how: a sentence saying how to get the file ("Get it with `dpcnn download ...`").
    """
    if not path.exists():
        raise DataNotFoundError(f"{what} not found: {path}. {how}; or set {setting}.")
    return path


def _download(name: str, root: str) -> str:
    return f"Get it with `dpcnn download {name} --root {root}`"


def _root(data: DataConfig) -> Path:
    return Path(data.root)


# --------------------------------------------------------------------------------------------
# Resolved locations (no file is read)
# --------------------------------------------------------------------------------------------


def _coco_paths(data: DataConfig) -> dict[str, Path]:
    images = Path(data.images) if data.images else _root(data) / "coco"
    return {
        "annotations": Path(data.annotations) if data.annotations else _root(data) / "karpathy" / "dataset_coco.json",
        "images": images,
        "captions_train2014": images / "annotations" / "captions_train2014.json",
        "captions_val2014": images / "annotations" / "captions_val2014.json",
    }


def _flickr_paths(data: DataConfig) -> dict[str, Path]:
    root = _root(data)
    images = Path(data.images) if data.images else root / "flickr30k" / "flickr30k-images"
    if data.split == "karpathy":
        ann = Path(data.annotations) if data.annotations else root / "karpathy" / "dataset_flickr30k.json"
        return {"annotations": ann, "images": images}
    ann = Path(data.annotations) if data.annotations else root / "flickr30k" / "results_20130124.token"
    return {"annotations": ann, "images": images,
            "test_list": root / "flickr8k" / "Flickr_8k.testImages.txt",
            "dev_list": root / "flickr8k" / "Flickr_8k.devImages.txt"}


def _cuhk_paths(data: DataConfig) -> dict[str, Path]:
    root = _root(data) / "cuhk-pedes"
    return {"annotations": Path(data.annotations) if data.annotations else root / "reid_raw.json",
            "images": Path(data.images) if data.images else root / "imgs"}


def _coco_format_paths(data: DataConfig) -> dict[str, Path]:
    out = {"annotations": Path(data.annotations), "images": Path(data.images)}
    if data.val_annotations:
        out["val_annotations"] = Path(data.val_annotations)
    if data.test_annotations:
        out["test_annotations"] = Path(data.test_annotations)
    return out


def _user_file_is_coco_format(data: DataConfig) -> bool:
    """dataset=coco with data.annotations set: is that file a COCO-format captions file (own data)
    rather than a Karpathy split file? (Parses the file; used only when data.annotations is set.)"""
    path = Path(data.annotations)
    if not data.annotations or not path.is_file():
        return False
    try:
        return is_coco_format(load_json_source(path, "annotations file (data.annotations)"))
    except ValueError:  # not JSON: load_records reports it
        return False


def describe_sources(data: DataConfig,
                     synthetic_files: Mapping[str, str | Path] | None = None) -> dict[str, str]:
    """The files and folders :func:`load_records` reads for ``data``, as {role: path} (for reports).

    Nothing is checked for existence. For dataset=coco with ``data.annotations`` set, the file is
    parsed to tell a Karpathy split file from a COCO-format captions file.
    """
    out: dict[str, str | Path] = {"dataset": data.dataset}
    if data.dataset == "coco" and not _user_file_is_coco_format(data):
        out.update(split="karpathy", **_coco_paths(data))
    elif data.dataset in ("coco", "coco-format"):
        out.update(_coco_format_paths(data))
        single = not (data.val_annotations or data.test_annotations)
        out["split"] = (f"by image: {data.holdout_images} val + {data.holdout_images} test, seed {data.split_seed}"
                        if single else "given files")
    elif data.dataset == "flickr30k":
        out.update(split=data.split, **_flickr_paths(data))
    elif data.dataset == "cuhk-pedes":
        out.update(split="reid_raw.json", **_cuhk_paths(data))
    elif data.dataset == "synthetic":
        for split, path in (synthetic_files or {}).items():
            out[f"{split}_annotations"] = path
            out[f"{split}_images"] = Path(path).parent / split
    else:
        raise ConfigError(f"data.dataset must be one of coco, coco-format, flickr30k, cuhk-pedes, "
                          f"synthetic; got '{data.dataset}'")
    return {k: str(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Readers per dataset
# --------------------------------------------------------------------------------------------


def _load_coco(data: DataConfig) -> list[ImageRecord]:
    p = _coco_paths(data)
    root = data.root
    if data.annotations:  # the user's own file: a Karpathy json or a COCO-format captions file
        karpathy = _require(p["annotations"], "annotations file (a Karpathy dataset_coco.json or your own "
                            "COCO-format captions file)", "data.annotations=PATH", "Check the path")
    else:
        karpathy = _require(p["annotations"], "Karpathy split file (dataset_coco.json)", "data.annotations=PATH",
                            _download("karpathy-splits", root))
    obj = load_json_source(karpathy, "annotations file (data.annotations)")
    if data.annotations and is_coco_format(obj):
        log.info("%s is a COCO-format captions file: reading it as your own data (coco-format)", karpathy)
        return _load_coco_format(data, train_obj=obj)
    folder = "data.images=FOLDER (the folder holding train2014/, val2014/ and annotations/)"
    _require(p["images"], "MSCOCO 2014 folder", folder, _download("coco", root))
    for key in ("captions_train2014", "captions_val2014"):
        _require(p[key], f"MSCOCO 2014 captions file {p[key].name}", folder, _download("coco", root))
    return mscoco_karpathy_from_dict([p["captions_train2014"], p["captions_val2014"]], p["images"], obj, karpathy)


def _load_coco_format(data: DataConfig, train_obj: object | None = None) -> list[ImageRecord]:
    if not data.annotations:
        raise ConfigError("data.dataset=coco-format needs data.annotations=PATH (a COCO-format captions "
                          "file: the training file, or the only one) and data.images=FOLDER")
    if not data.images:
        raise ConfigError("data.images=FOLDER is needed: the folder that the 'file_name' entries of "
                          f"{data.annotations} are relative to")
    p = _coco_format_paths(data)
    images = _require(p["images"], "image folder", "data.images=FOLDER", "Check the path")
    files = {"train": p["annotations"]}
    for split in ("val", "test"):
        if f"{split}_annotations" in p:
            files[split] = p[f"{split}_annotations"]
    per_split: dict[str, list[ImageRecord]] = {}
    for split, path in files.items():
        key = "data.annotations" if split == "train" else f"data.{split}_annotations"
        _require(path, f"COCO-format captions file for {split}", f"{key}=PATH", "Check the path")
        if split == "train" and train_obj is not None:
            per_split[split] = coco_records_from_dict(train_obj, path, images, split)
        else:
            per_split[split] = read_coco_format(path, images, split)
    per_split = _namespace_colliding_ids(per_split)
    records = [r for split in ("train", "val", "test") for r in per_split.get(split, [])]
    missing = tuple(s for s in ("val", "test") if s not in files)
    if missing:
        log.info("holding out %d images for %s from %s (seed %d)", data.holdout_images,
                 " and ".join(missing), p["annotations"], data.split_seed)
        records = split_by_image(records, holdout=data.holdout_images, seed=data.split_seed, splits=missing) \
            if len(missing) == 2 else _hold_out_from_train(records, data, missing)
    return records


def _hold_out_from_train(records: list[ImageRecord], data: DataConfig, missing: tuple[str, ...]) -> list[ImageRecord]:
    """One of val/test was given as a file: hold the other out of the training file only."""
    train = [r for r in records if r.split == "train"]
    split_train = iter(split_by_image(train, holdout=data.holdout_images, seed=data.split_seed, splits=missing))
    return [next(split_train) if r.split == "train" else r for r in records]


def _namespace_colliding_ids(per_split: dict[str, list[ImageRecord]]) -> dict[str, list[ImageRecord]]:
    """Separate files may number their images independently: if an id is reused for a *different*
    file name, prefix the val/test ids with ``<split>:``. The same image in two files stays as it
    is, and :func:`check_disjoint` reports the overlap."""
    owner: dict[str, str] = {}
    clash = False
    for split in ("train", "val", "test"):
        for r in per_split.get(split, []):
            if r.image_id in owner and owner[r.image_id] != r.path:
                clash = True
            owner.setdefault(r.image_id, r.path)
    if not clash:
        return per_split
    log.warning("the captions files reuse image ids for different images: val/test ids get a "
                "'val:' / 'test:' prefix")
    return {split: [replace(r, image_id=f"{split}:{r.image_id}", identity="") if split != "train" else r
                    for r in recs] for split, recs in per_split.items()}


def _load_flickr30k(data: DataConfig) -> list[ImageRecord]:
    p = _flickr_paths(data)
    root = data.root
    if data.split not in ("paper", "karpathy"):
        raise ConfigError(f"data.split for flickr30k must be paper or karpathy, got '{data.split}'")
    _require(p["images"], "Flickr30k image folder (flickr30k-images)", "data.images=FOLDER", FLICKR30K_FORM)
    if data.split == "karpathy":
        _require(p["annotations"], "Karpathy split file (dataset_flickr30k.json)", "data.annotations=PATH",
                 _download("karpathy-splits", root))
        return read_flickr30k_karpathy(p["annotations"], p["images"])
    _require(p["annotations"], "Flickr30k captions (results_20130124.token)", "data.annotations=PATH",
             FLICKR30K_FORM)
    for key in ("test_list", "dev_list"):
        _require(p[key], f"Flickr8k image list {p[key].name}", "data.root=FOLDER (lists are read from <root>/flickr8k/)",
                 _download("flickr30k-splits", root))
    return read_flickr30k_paper(p["annotations"], p["images"], p["test_list"], p["dev_list"])


def _load_cuhk(data: DataConfig) -> list[ImageRecord]:
    p = _cuhk_paths(data)
    _require(p["annotations"], "CUHK-PEDES reid_raw.json", "data.annotations=PATH", CUHK_PEDES_FORM)
    _require(p["images"], "CUHK-PEDES image folder (imgs)", "data.images=FOLDER", CUHK_PEDES_FORM)
    return read_cuhk_pedes(p["annotations"], p["images"])


def _load_synthetic(synthetic_files: Mapping[str, str | Path] | None) -> list[ImageRecord]:
    if not synthetic_files:
        raise ValueError("data.dataset=synthetic: pass the generated files as synthetic_files="
                         "{'train': json, 'val': json, 'test': json} (prepare generates them first)")
    unknown = set(synthetic_files) - set(SPLITS)
    if unknown:
        raise ValueError(f"synthetic_files keys must be among {SPLITS}, got {sorted(unknown)}")
    records = []
    for split in SPLITS:
        if split not in synthetic_files:
            continue
        path = Path(synthetic_files[split])
        _require(path, f"synthetic {split} captions file", "data.prepared_dir=FOLDER",
                 "Re-run `dpcnn prepare` to generate the synthetic data")
        records += read_coco_format(path, path.parent / split, split)
    return records


def load_records(data: DataConfig,
                 synthetic_files: Mapping[str, str | Path] | None = None) -> list[ImageRecord]:
    """Read the dataset that ``data`` names, label the training records, check the splits.

    data: the ``data`` config section (``dataset``, ``root``, ``annotations``, ``images``, ...).
    synthetic_files: for dataset=synthetic only: {"train": json, "val": json, "test": json},
        COCO-format files whose images lie in ``<json dir>/<split>/``.

    Returns the manifest with labels assigned (:func:`assign_labels`); raises DataNotFoundError for a
    missing file, ValueError/ConfigError for malformed files, bad settings or overlapping splits.
    """
    loaders = {
        "coco": lambda: _load_coco(data),
        "coco-format": lambda: _load_coco_format(data),
        "flickr30k": lambda: _load_flickr30k(data),
        "cuhk-pedes": lambda: _load_cuhk(data),
        "synthetic": lambda: _load_synthetic(synthetic_files),
    }
    if data.dataset not in loaders:
        raise ConfigError(f"data.dataset must be one of {', '.join(loaders)}; got '{data.dataset}'")
    records = loaders[data.dataset]()
    check_disjoint(records)
    return assign_labels(records)
