"""SVG → RGB PNG on a white background (the rasteriser of :mod:`dpcnn.data.emoji_source`).

The renderer is resvg (the ``resvg-py`` package: a self-contained wheel, no system library),
imported on first use. System fonts are never loaded (OpenMoji's SVGs hold no text), so the
pixels do not depend on the machine; the PNG is written by Pillow without metadata, so the same
SVG gives the same bytes on every run with the same packages.
"""

from __future__ import annotations

import io
from typing import Any

from dpcnn.errors import MissingDependencyError

BACKGROUND = "#ffffff"


def _resvg() -> Any:
    """The ``resvg_py`` module, or a one-line error saying how to install it."""
    try:
        import resvg_py
    except ImportError:
        raise MissingDependencyError("rendering SVG needs the resvg-py package: pip install resvg-py "
                                     "(a dpcnn dependency; reinstall dpcnn to get it)") from None
    return resvg_py


def render_png(svg: bytes, size: int) -> bytes:
    """The SVG document ``svg`` (UTF-8) rendered to ``size`` × ``size`` RGB on white, as PNG bytes.

    Raises ValueError (with resvg's reason) for bytes that are not UTF-8 or not a usable SVG.
    """
    from PIL import Image

    try:
        text = svg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None
    rgba = _resvg().svg_to_bytes(svg_string=text, background=BACKGROUND, width=size, height=size,
                                 skip_system_fonts=True)
    with Image.open(io.BytesIO(rgba)) as im:
        rgb = im.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=9)
    return out.getvalue()
