"""QGIS styles (``.qml``) for the rasters FLAIR Viz exports: class, change and flow COGs.

QGIS opens ``X.tif`` with the style of a ``X.qml`` beside it, so every COG the change commands write
gets one, and an analyst sees the FLAIR palette instead of a grey band. The palettes come from
:mod:`flair_viz.core.classes` (classes, and the change raster's "new class" values) and
:data:`flair_viz.change.grouping.FLOW_COLORS` (flow raster), the very colours of the map tiles.
Copies for manual use ship in ``flair_viz/change/styles/`` (see :func:`write_shipped_styles`).
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

from flair_viz.change.grouping import FLOW_COLORS, FLOW_NAMES
from flair_viz.core import atomic, classes
from flair_viz.core.errors import InvalidInput

STYLES_DIR = Path(__file__).with_name("styles")
KINDS = ("class", "change", "flow", "confidence")
# the confidence raster of a change from predictions (flair_viz.change.predicted): values and colours
CONFIDENCE = {1: ("#e41a1c", "sure change"), 2: ("#ffc800", "uncertain change (low margin)")}
_HEAD = ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
         '<qgis version="3.28.0" styleCategories="AllStyleCategories">\n  <pipe>\n'
         '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
         "      <rasterTransparency/>\n      <colorPalette>\n")
_TAIL = ("      </colorPalette>\n    </rasterrenderer>\n"
         '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
         '    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>\n'
         '    <rasterresampler maxOversampling="2"/>\n  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n')


def palette(kind: str, nomenclature: str = "flair1") -> list[tuple[int, str, str]]:
    """(raster value, ``#rrggbb``, label) entries of a style; value 0 (nodata / unchanged) is left out."""
    if kind == "flow":
        return [(k, "#%02x%02x%02x" % FLOW_COLORS[k][:3], name) for k, name in FLOW_NAMES.items()]
    if kind == "confidence":
        return [(v, colour, label) for v, (colour, label) in CONFIDENCE.items()]
    if kind == "change":
        return [(c.value, c.color, f"changed to {c.name}") for c in classes.FLAIR1_CLASSES]
    if kind == "class":
        if nomenclature == "flair1":
            return [(c.value, c.color, c.name) for c in classes.FLAIR1_CLASSES]
        lut = classes.class_lut(nomenclature)  # raw value -> FLAIR-1, so the raster looks like its conversion
        return [(v, classes.BY_VALUE[int(lut[v])].color, f"{v}: {classes.BY_VALUE[int(lut[v])].name}")
                for v in range(256) if lut[v]]
    raise InvalidInput(f"Unknown style kind {kind!r}", f"use one of {', '.join(KINDS)}")


def qml_text(kind: str, nomenclature: str = "flair1") -> str:
    """The QML document of one raster kind (a paletted renderer on band 1)."""
    rows = "".join(f'        <paletteEntry value="{v}" color="{colour}" alpha="255" label={quoteattr(label)}/>\n'
                   for v, colour, label in palette(kind, nomenclature))
    return _HEAD + rows + _TAIL


def write_qml(raster_path: str | os.PathLike[str], kind: str, nomenclature: str = "flair1") -> Path:
    """Write ``<raster>.qml`` beside a COG (atomically), so QGIS opens it coloured."""
    return atomic.write_text(Path(raster_path).with_suffix(".qml"), qml_text(kind, nomenclature))


def write_shipped_styles(folder: str | os.PathLike[str] = STYLES_DIR) -> list[Path]:
    """The styles of ``flair_viz/change/styles/``: FLAIR-1 classes, change (new class) and ZAN flow."""
    folder = Path(folder)
    names = {"class": "flair1_classes.qml", "change": "change.qml", "flow": "flow.qml"}
    return [atomic.write_text(folder / names[k], qml_text(k)) for k in names]
