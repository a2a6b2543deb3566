"""dpcnn: the Dual-Path CNN image-text embedding with instance loss, in Keras 3 / TensorFlow.

Zheng, Zheng, Garrett, Yang, Xu, Shen. "Dual-Path Convolutional Image-Text Embeddings with
Instance Loss", arXiv 1711.05535, ACM TOMM 16(2), 2020.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
