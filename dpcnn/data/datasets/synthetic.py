"""The embedded synthetic shapes dataset (``data.dataset=synthetic``), generated at ``prepare``.

:func:`generate` runs the generator (:mod:`dpcnn.data.shapes`) into
``<root>/synthetic/<size>px-<hash>/`` and hands :func:`read` that folder as ``data.images``; the
folder holds ``captions_{train,val,test}.json`` (COCO format) and the images in ``<split>/``.
Its word vectors are trained with gensim on its own training captions.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from dpcnn.config import Config, DataConfig
from dpcnn.data.coco_captions import read_coco_format
from dpcnn.data.datasets import DatasetSpec
from dpcnn.data.files import require
from dpcnn.data.manifest import Exclusions, ImageRecord
from dpcnn.errors import ConfigError

log = logging.getLogger(__name__)


def generate(cfg: Config, progress: bool = True) -> DataConfig:
    """Generate the dataset of ``cfg.synthetic`` once; the data config to read it with."""
    from dpcnn.data import shapes

    folder = shapes.dataset_dir(Path(cfg.data.root), cfg.synthetic)
    shapes.generate(cfg.synthetic, folder)
    log.info("synthetic dataset: %s", folder)
    return replace(cfg.data, images=str(folder))


def _files(data: DataConfig) -> dict[str, Path]:
    from dpcnn.data import shapes

    if not data.images:
        raise ConfigError("the synthetic dataset is read from the folder generate() wrote: pass it as data.images")
    return shapes.caption_files(Path(data.images))


def sources(data: DataConfig) -> dict[str, str]:
    """The generated captions files and image folders (after :func:`generate`)."""
    out: dict[str, str] = {}
    for split, path in _files(data).items():
        out[f"{split}_annotations"] = str(path)
        out[f"{split}_images"] = str(path.parent / split)
    return out


def read(data: DataConfig, exclusions: Exclusions) -> list[ImageRecord]:
    """The three generated splits."""
    records = []
    for split, path in _files(data).items():
        require(path, f"synthetic {split} captions file", "data.root=FOLDER",
                "Run `dpcnn prepare` again to generate the synthetic data")
        records += read_coco_format(path, path.parent / split, split, exclusions)
    return records


SPEC = DatasetSpec(
    name="synthetic",
    title="synthetic shapes (generated offline)",
    read=read,
    sources=sources,
    word_vectors="trained",
    generate=generate,
)
