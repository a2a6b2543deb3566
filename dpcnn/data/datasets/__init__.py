"""The dataset registry: one :class:`DatasetSpec` per dataset, one file per spec.

A spec says everything the rest of dpcnn needs to know about a dataset: how to read it into
:class:`~dpcnn.data.manifest.ImageRecord` lists (counting what it leaves out in
:class:`~dpcnn.data.manifest.Exclusions`), which files that reads, whether instance classes are
person IDs, the default evaluation protocols, how to get the files (``dpcnn download`` items, or
the manual steps for data behind a request form), the paper's published numbers, and where its
word vectors come from.

Adding a dataset: a new module in this package that defines ``SPEC = DatasetSpec(...)``, and its
name in :data:`_MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from dpcnn.errors import ConfigError

if TYPE_CHECKING:
    from dpcnn.config import Config, DataConfig
    from dpcnn.data.manifest import Exclusions, ImageRecord


@dataclass(frozen=True)
class PaperResult:
    """One published DP-CNN result (REFERENCE_RESULTS.md). Recalls in %; None where the paper has none."""

    dataset: str
    protocol: str
    setting: str
    i2t: tuple[float, float, float] | None
    t2i: tuple[float, float, float]
    medr: tuple[float | None, float | None]
    """(i2t, t2i) Med r; REFERENCE_RESULTS.md: "recalled, unverified"."""
    rsum: float | None
    how_sure: str


@dataclass(frozen=True)
class DatasetSpec:
    """What dpcnn knows about one dataset.

    read(data, exclusions): the records of every split (unlabelled; ``prepare`` labels them),
        with missing files as DataNotFoundError, malformed files as DataError and bad entries
        counted in ``exclusions``.
    sources(data): {role: path} of the files and folders ``read`` uses (for the data report);
        nothing is checked for existence.
    by_identity: instance classes are identities (CUHK-PEDES person IDs, emoji), not images.
    protocols: the default evaluation protocols.
    downloads: names in ``dpcnn.data.download.REGISTRY`` that fetch its files.
    manual_steps: for data behind a request form, the steps (``{root}`` = the data root).
    word_vectors: "googlenews" (``dpcnn download word2vec``) or "trained" (gensim, at prepare).
    generate(cfg, progress): for generated data (synthetic), make the files and return the data
        config that ``read`` gets; None for data on disk.
    """

    name: str
    title: str
    read: Callable[[DataConfig, Exclusions], list[ImageRecord]]
    sources: Callable[[DataConfig], dict[str, str]]
    by_identity: bool = False
    protocols: tuple[str, ...] = ("full",)
    downloads: tuple[str, ...] = ()
    manual_steps: str = ""
    paper_results: tuple[PaperResult, ...] = ()
    word_vectors: str = "googlenews"
    generate: Callable[[Config, bool], DataConfig] | None = None

    def manual_instructions(self, root: str | Path = "data") -> str:
        """The manual steps with paths under ``root`` ("" for data that downloads itself)."""
        return self.manual_steps.format(root=Path(root).as_posix())


_MODULES = ("synthetic", "mscoco", "coco_format", "csv_captions", "flickr30k", "cuhk_pedes", "emoji")
"""The spec modules of this package, each defining ``SPEC``."""


def _load() -> Mapping[str, DatasetSpec]:
    specs = [import_module(f"{__name__}.{module}").SPEC for module in _MODULES]
    return MappingProxyType({spec.name: spec for spec in specs})


REGISTRY: Mapping[str, DatasetSpec] = _load()
"""name (``data.dataset``) → spec, read-only."""


def get(name: str) -> DatasetSpec:
    """The spec of ``data.dataset=name``; ConfigError listing the names for an unknown one."""
    if name not in REGISTRY:
        raise ConfigError(f"data.dataset must be one of {', '.join(REGISTRY)}; got '{name}'")
    return REGISTRY[name]


def manual_datasets() -> dict[str, DatasetSpec]:
    """The datasets behind a request form (``dpcnn download NAME`` prints their steps)."""
    return {name: spec for name, spec in REGISTRY.items() if spec.manual_steps}
