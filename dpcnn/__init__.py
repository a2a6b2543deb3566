"""dpcnn: the Dual-Path CNN image-text embedding with instance loss, in Keras 3 / TensorFlow.

Zheng, Zheng, Garrett, Yang, Xu, Shen. "Dual-Path Convolutional Image-Text Embeddings with
Instance Loss", arXiv 1711.05535, ACM TOMM 16(2), 2020.

``dpcnn.load(path)`` opens a trained model (an export folder, or a run folder) as an
:class:`dpcnn.embedder.Embedder` with ``encode_images``, ``encode_texts`` and ``search``.

``dpcnn.__version__`` (also ``dpcnn --version`` and ``env.json``) is the installed distribution's
version: setup.cfg's ``version`` is its only source. It is read from the package metadata, not kept
as a second literal here, because ``make setup`` reinstalls whenever setup.cfg changes, so a
version bump reaches every reader at once (a literal here would leave an editable install's
metadata behind until someone reinstalled by hand).
"""

import logging
from importlib import metadata as _metadata

try:  # one version source: setup.cfg's `version`, read from the installed package's metadata
    __version__ = _metadata.version(__name__)
except _metadata.PackageNotFoundError:  # a source tree that was never installed (`make setup` installs it)
    __version__ = "0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def load(path, stage=None, batch_size: int = 32):
    """The model in ``path`` (see :func:`dpcnn.export.load`)."""
    from dpcnn.export import load as _load

    return _load(path, stage, batch_size)

