"""The one class table of FLAIR Viz: FLAIR-1 (19 classes, values 1..19) and FLAIR-HUB/CoSIA (0-based).

Every page, endpoint, metric and test reads classes from here, so colours and names never drift.
Class rasters written by FLAIR Viz use FLAIR-1 values 1..19, with 0 as nodata, like FLAIR masks.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flair_viz.core.errors import InvalidInput, Misconfigured

NODATA = 0


@dataclass(frozen=True)
class LandCoverClass:
    value: int  # FLAIR-1 value, 1..19
    key: str  # stable machine name
    name: str  # human name, as in IGN's documentation
    color: str  # hex colour from IGN's FLAIR-1 palette

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


FLAIR1_CLASSES: tuple[LandCoverClass, ...] = (
    LandCoverClass(1, "building", "building", "#db0e9a"),
    LandCoverClass(2, "pervious", "pervious surface", "#938e7b"),
    LandCoverClass(3, "impervious", "impervious surface", "#f80c00"),
    LandCoverClass(4, "bare_soil", "bare soil", "#a97101"),
    LandCoverClass(5, "water", "water", "#1553ae"),
    LandCoverClass(6, "coniferous", "coniferous", "#194a26"),
    LandCoverClass(7, "deciduous", "deciduous", "#46e483"),
    LandCoverClass(8, "brushwood", "brushwood", "#f3a60d"),
    LandCoverClass(9, "vineyard", "vineyard", "#660082"),
    LandCoverClass(10, "herbaceous", "herbaceous vegetation", "#55ff00"),
    LandCoverClass(11, "agricultural", "agricultural land", "#fff30d"),
    LandCoverClass(12, "plowed", "plowed land", "#e4df7c"),
    LandCoverClass(13, "swimming_pool", "swimming pool", "#3de6eb"),
    LandCoverClass(14, "snow", "snow", "#ffffff"),
    LandCoverClass(15, "clear_cut", "clear cut", "#8ab3a0"),
    LandCoverClass(16, "mixed", "mixed", "#6b714f"),
    LandCoverClass(17, "ligneous", "ligneous", "#c5dc42"),
    LandCoverClass(18, "greenhouse", "greenhouse", "#9999ff"),
    LandCoverClass(19, "other", "other", "#000000"),
)
N_CLASSES = len(FLAIR1_CLASSES)
BY_VALUE: dict[int, LandCoverClass] = {c.value: c for c in FLAIR1_CLASSES}
BY_KEY: dict[str, LandCoverClass] = {c.key: c for c in FLAIR1_CLASSES}

# FLAIR-HUB / CoSIA order (0-based index -> class key), as published by IGN.
FLAIRHUB_ORDER: tuple[str, ...] = (
    "building", "greenhouse", "swimming_pool", "impervious", "pervious", "bare_soil", "water",
    "snow", "herbaceous", "agricultural", "plowed", "vineyard", "deciduous", "coniferous",
    "brushwood", "clear_cut", "ligneous", "mixed", "other",
)

NOMENCLATURES = ("flair1", "flairhub")  # built in; more come from mapping files (MAPPING_FILES)
# Mapping files shipped with the package: raw codes of another nomenclature -> FLAIR-1 class keys.
MAPPING_FILES: tuple[Path, ...] = (Path(__file__).with_name("odeon_nomenclature.toml"),)

# FLAIR-1 evaluation protocol: values above 13 merge into "other"; mIoU over the first 12.
PROTOCOL_FLAIR1_N = 13
PROTOCOL_FLAIR1_MIOU_N = 12


def flairhub_to_flair1_lut() -> np.ndarray:
    """LUT mapping a FLAIR-HUB 0-based index to a FLAIR-1 value (256 entries, unknown -> 0)."""
    lut = np.zeros(256, dtype=np.uint8)
    for i, key in enumerate(FLAIRHUB_ORDER):
        lut[i] = BY_KEY[key].value
    return lut


def flair1_to_flairhub_lut() -> np.ndarray:
    """LUT mapping a FLAIR-1 value (1..19) to the FLAIR-HUB 0-based index (unknown -> 255)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for i, key in enumerate(FLAIRHUB_ORDER):
        lut[BY_KEY[key].value] = i
    return lut


@dataclass(frozen=True)
class MappedCode:
    """One raw code of a mapped nomenclature: its own name, its FLAIR-1 value (0 = nodata) and whether it is inferred."""

    code: int
    name: str
    flair1: int
    inferred: bool
    basis: str = ""


@dataclass(frozen=True)
class Mapping:
    """A nomenclature defined by a mapping file: raw code -> FLAIR-1 value; unlisted codes are nodata."""

    name: str
    title: str
    codes: tuple[MappedCode, ...]
    source: Path

    def lut(self) -> np.ndarray:
        lut = np.zeros(256, dtype=np.uint8)
        for c in self.codes:
            lut[c.code] = c.flair1
        return lut

    @property
    def inferred(self) -> list[int]:
        return [c.code for c in self.codes if c.inferred]


def load_mappings(path: str | os.PathLike[str]) -> dict[str, Mapping]:
    """Every ``[nomenclature.NAME]`` table of a mapping file, checked: codes 0..255, FLAIR-1 keys or "nodata"."""
    path = Path(path)
    fix = f"fix {path}: each code is `N = {{ name = ..., flair1 = <FLAIR-1 key or \"nodata\">, inferred = true|false }}`"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Misconfigured(f"Cannot read the nomenclature mapping {path.name}: {exc}", fix) from None
    out: dict[str, Mapping] = {}
    for name, table in doc.get("nomenclature", {}).items():
        codes = []
        for raw, entry in table.get("codes", {}).items():
            key = entry.get("flair1") if isinstance(entry, dict) else None
            if not (raw.isdigit() and int(raw) < 256) or (key != "nodata" and key not in BY_KEY) \
                    or not isinstance(entry.get("inferred"), bool):
                raise Misconfigured(f"Nomenclature {name!r} in {path.name}: bad entry {raw} = {entry!r}", fix)
            codes.append(MappedCode(int(raw), str(entry.get("name", "")), 0 if key == "nodata" else BY_KEY[key].value,
                                    entry["inferred"], str(entry.get("basis", ""))))
        out[name] = Mapping(name, str(table.get("title", name)), tuple(sorted(codes, key=lambda c: c.code)), path)
    return out


@functools.cache
def mappings() -> dict[str, Mapping]:
    """The mapped nomenclatures of :data:`MAPPING_FILES`, by name (read once)."""
    out: dict[str, Mapping] = {}
    for f in MAPPING_FILES:
        out.update(load_mappings(f))
    return out


def nomenclature_names() -> tuple[str, ...]:
    """Every nomenclature a class raster may declare: the built-in ones, then the mapped ones."""
    return NOMENCLATURES + tuple(n for n in mappings() if n not in NOMENCLATURES)


def _unknown(nomenclature: str) -> InvalidInput:
    return InvalidInput(f"Unknown nomenclature {nomenclature!r}", f"use one of {', '.join(nomenclature_names())}")


def class_lut(nomenclature: str, nodata: float | None = None) -> np.ndarray:
    """The one raw-value -> FLAIR-1 table: 256 uint8 entries, 1..19 for classes, 0 for nodata and unknowns.

    Metrics, change and every class tile read through it, so a value that is not a class of the
    declared nomenclature (or the file's declared nodata) is never counted or drawn anywhere.
    """
    if nomenclature == "flair1":
        lut = np.zeros(256, dtype=np.uint8)
        lut[1 : N_CLASSES + 1] = np.arange(1, N_CLASSES + 1, dtype=np.uint8)
    elif nomenclature == "flairhub":
        lut = flairhub_to_flair1_lut()
    elif nomenclature in mappings():
        lut = mappings()[nomenclature].lut()
    else:
        raise _unknown(nomenclature)
    if nodata is not None and float(nodata).is_integer() and 0 <= nodata < 256:
        lut[int(nodata)] = NODATA
    return lut


def to_flair1(values: np.ndarray, nomenclature: str, nodata: float | None = None) -> np.ndarray:
    """Class values as FLAIR-1 uint8 (1..19, 0 nodata) so all comparisons share one table.

    Values outside 0..255 (an int16 or float raster) become 0 instead of wrapping into a class.
    """
    values = np.asarray(values)
    lut = class_lut(nomenclature, nodata)
    if values.dtype == np.uint8:
        return lut[values]
    inside = (values >= 0) & (values <= 255)
    return np.where(inside, lut[np.where(inside, values, 0).astype(np.uint8)], NODATA).astype(np.uint8)


def valid_values(nomenclature: str) -> set[int]:
    """The pixel values a class raster of this nomenclature may hold (nodata 0 included for FLAIR-1)."""
    if nomenclature == "flair1":
        return {NODATA, *BY_VALUE}
    if nomenclature == "flairhub":
        return set(range(len(FLAIRHUB_ORDER))) | {255}
    if nomenclature in mappings():
        return {c.code for c in mappings()[nomenclature].codes}
    raise _unknown(nomenclature)


def protocol_flair1_lut() -> np.ndarray:
    """LUT from FLAIR-1 values to the 13 protocol classes, 1-based (14..19 -> 13 "other"); 0 stays 0."""
    lut = np.arange(256, dtype=np.uint8)
    lut[PROTOCOL_FLAIR1_N + 1 : N_CLASSES + 1] = PROTOCOL_FLAIR1_N
    lut[N_CLASSES + 1 :] = 0
    return lut


def protocol_names(protocol: str) -> list[str]:
    """Class names for a metrics view: ``full`` (19) or ``flair1`` (13, the last is "other")."""
    if protocol == "full":
        return [c.name for c in FLAIR1_CLASSES]
    if protocol == "flair1":
        return [c.name for c in FLAIR1_CLASSES[: PROTOCOL_FLAIR1_N - 1]] + ["other"]
    raise InvalidInput(f"Unknown metrics protocol {protocol!r}", "use 'flair1' (13 classes) or 'full' (19)")


def colormap(nomenclature: str = "flair1") -> dict[int, tuple[int, int, int, int]]:
    """rio-tiler colormap for class rasters; 0 (nodata) is transparent.

    For another nomenclature each raw value gets the colour of the FLAIR-1 class it maps to, so a
    raster drawn as it is on disk looks like its FLAIR-1 conversion.
    """
    cmap = {v: (*c.rgb, 255) for v, c in BY_VALUE.items()}
    cmap[NODATA] = (0, 0, 0, 0)
    if nomenclature == "flair1":
        return cmap
    lut = class_lut(nomenclature)
    return {v: cmap[int(lut[v])] if lut[v] else (0, 0, 0, 0) for v in range(256)}


def palette_rgba() -> np.ndarray:
    """(256, 4) uint8 RGBA palette indexed by FLAIR-1 value, for fast numpy colouring."""
    pal = np.zeros((256, 4), dtype=np.uint8)
    for v, (r, g, b, a) in colormap().items():
        pal[v] = (r, g, b, a)
    return pal
