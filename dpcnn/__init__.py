"""dpcnn: the Dual-Path CNN image-text embedding with instance loss, in Keras 3 / TensorFlow.

Zheng, Zheng, Garrett, Yang, Xu, Shen. "Dual-Path Convolutional Image-Text Embeddings with
Instance Loss", arXiv 1711.05535, ACM TOMM 16(2), 2020.

``dpcnn.load(path)`` opens a trained model (an export folder, or a run folder) as an
:class:`dpcnn.embedder.Embedder` with ``encode_images``, ``encode_texts`` and ``search``.
"""

import logging

__version__ = "0.2.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def load(path, stage=None, batch_size: int = 32):
    """The model in ``path`` (see :func:`dpcnn.export.load`)."""
    from dpcnn.export import load as _load

    return _load(path, stage, batch_size)

