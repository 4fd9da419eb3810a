"""Corrections as training data: painted classes rasterised on each image's own pixel grid, in windows.

A fine-tune needs, for every corrected pixel, the image pixels around it (the model's context) and
the painted class. Corrections are grouped by image, checked against it (inside its footprint, bands
the model needs), rasterised (later shapes paint over earlier ones) and cut into windows of at most
512 px that hold the corrected pixels plus a margin of context, shifted inside the image where it
is big enough, as zone detection shifts its last window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from flair_viz.core import raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import InvalidInput, InvalidModel, context
from flair_viz.predict.cards import ModelCard
from flair_viz.predict.geometry import ALIGN, MARGIN
from flair_viz.predict.inference import band_indexes, normalise

MAX_WINDOW = 512


@dataclass
class Window_:
    """One training window: normalised image, painted FLAIR-1 classes (0 = not corrected), validity."""

    dataset_id: str
    window: Window
    x: np.ndarray  # (C, h, w) float32, normalised as the card says
    painted: np.ndarray  # (h, w) uint8 FLAIR-1 value, 0 = not corrected
    valid: np.ndarray  # (h, w) bool, pixels inside the image

    @property
    def pixels(self) -> int:
        return int((self.painted > 0).sum())


def footprint(info: raster.RasterInfo) -> shapely.Polygon:
    return shapely.box(*info.bounds)


def assign_images(corrections: gpd.GeoDataFrame, cat: Catalog) -> dict[str, gpd.GeoDataFrame]:
    """Corrections grouped by the image they were painted on; one outside its image (or every image) is refused."""
    if corrections.empty:
        raise InvalidInput("The corrections layer is empty: there is nothing to fine-tune on",
                           "draw corrections on the Explore page (or give another corrections file)")
    images = cat.by_role("image")
    infos: dict[str, raster.RasterInfo] = {}

    def info_of(ds: Dataset) -> raster.RasterInfo:
        if ds.id not in infos:
            infos[ds.id] = raster.describe(ds.path)
        return infos[ds.id]

    groups: dict[str, list[int]] = {}
    rows = zip(corrections["id"], corrections["class"], corrections["dataset_id"], corrections.geometry)
    for i, (cid, klass, ds_id, geom) in enumerate(rows):
        what = f"correction {cid} (class {klass})"
        if ds_id:
            ds = cat.get(ds_id)
            if not geom.intersects(footprint(info_of(ds))):
                raise InvalidInput(f"{what} lies outside image {ds_id}",
                                   "delete it, or redraw it over the image it corrects")
        else:
            hits = [d for d in images if geom.intersects(footprint(info_of(d)))]
            if not hits:
                raise InvalidInput(f"{what} lies outside every image of the catalog",
                                   "delete it, or redraw it over an aerial image")
            ds_id = max(hits, key=lambda d: geom.intersection(footprint(info_of(d))).area).id
        groups.setdefault(ds_id, []).append(i)
    return {k: corrections.iloc[v] for k, v in groups.items()}


def channel_lut(card: ModelCard) -> np.ndarray:
    """FLAIR-1 value → the model's output channel (−1 where the model has no such class)."""
    lut = np.full(256, -1, np.int64)
    for ch, value in enumerate(card.output_values()):
        if lut[value] < 0:
            lut[value] = ch
    return lut


def check_classes(card: ModelCard, corrections: gpd.GeoDataFrame) -> None:
    lut = channel_lut(card)
    missing = sorted({int(v) for v in corrections["class"] if lut[int(v)] < 0})
    if missing:
        raise InvalidModel(f"Model {card.id} has no output for class(es) {missing}",
                           "fine-tune a model whose nomenclature has these classes, or change the corrections")


def _spans(lo: int, hi: int, length: int) -> list[tuple[int, int]]:
    """Windows (offset, size) along one axis covering [lo, hi) with context, each ≤ MAX_WINDOW and aligned.

    An image no longer than a window is taken whole, as zone detection takes a FLAIR patch: the
    model then learns on exactly the input it predicts the map from.
    """
    if length <= MAX_WINDOW:
        return [(0, -(-length // ALIGN) * ALIGN)]
    lo, hi = lo - MARGIN, hi + MARGIN  # context around the corrected pixels, as zone detection keeps
    n = max(1, math.ceil((hi - lo) / MAX_WINDOW))
    size = min(MAX_WINDOW, -(-math.ceil((hi - lo) / n) // ALIGN) * ALIGN)
    out = []
    for k in range(n):
        off = lo + k * size
        if length >= size:  # shift inside the image, as zone detection does with its last window
            off = min(max(off, 0), length - size)
        out.append((off, size))
    return out


def windows_for(card: ModelCard, ds: Dataset, shapes: gpd.GeoDataFrame) -> list[Window_]:
    """Training windows of one image: its pixels around the corrections and the painted classes."""
    with context(f"image {ds.id}"):
        info = raster.describe(ds.path)
        bands = ds.bands or raster.band_names_for(info.count)
        indexes = band_indexes(card, tuple(bands), ds.id)
    geoms = shapes.to_crs(info.crs) if info.crs and not shapes.crs.equals(info.crs) else shapes
    pairs = [(g, int(c)) for g, c in zip(geoms.geometry, geoms["class"])]
    inv = ~info.transform
    minx, miny, maxx, maxy = shapely.union_all(list(geoms.geometry)).bounds
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    rows = _spans(max(math.floor(r0), 0), min(math.ceil(r1), info.height), info.height)
    cols = _spans(max(math.floor(c0), 0), min(math.ceil(c1), info.width), info.width)
    out = []
    for roff, h in rows:
        for coff, w in cols:
            win = Window(coff, roff, w, h)
            painted = rasterio.features.rasterize(pairs, out_shape=(h, w), transform=window_transform(win, info.transform),
                                                  fill=0, dtype="uint8", all_touched=False)
            valid = np.zeros((h, w), bool)
            valid[max(0, -roff):min(h, info.height - roff), max(0, -coff):min(w, info.width - coff)] = True
            painted[~valid] = 0
            if not painted.any():
                continue
            data = raster.read(ds.path, indexes, window=win, boundless=True, fill_value=0)
            data[:, ~valid] = 0
            out.append(Window_(ds.id, win, normalise(card, data), painted, valid))
    return out


def training_windows(card: ModelCard, corrections: gpd.GeoDataFrame, cat: Catalog) -> list[Window_]:
    """Every window of every corrected image; the checks (empty, outside, bands, classes) come first."""
    groups = assign_images(corrections, cat)
    check_classes(card, corrections)
    wins = [w for ds_id, shapes in groups.items() for w in windows_for(card, cat.get(ds_id), shapes)]
    if not wins:
        raise InvalidInput("The corrections cover no whole pixel of their images",
                           "draw larger corrections (a pixel is counted when its centre is inside)")
    return wins
