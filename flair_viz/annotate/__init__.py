"""Rank places to annotate: score each cell of the FLAIR patch grid from a model's probabilities.

Annotation is costly, so a team labels where the model is unsure (entropy, margin), wrong (ground
truth), inconsistent (two models disagree) or sees rare classes. Everything here works on plain
numpy arrays plus a georeference, so it does not depend on how the probabilities were produced
(live inference, or a probability GeoTIFF from ``flair-viz predict --proba``).

The grid
    FLAIR patches are 512 px at 0.2 m = 102.4 m. A scene's grid starts at its upper-left corner
    (its origin) and each pixel belongs to the cell that holds its centre, so rasters of any
    resolution share the same metric grid. A finer grid (``cell_m = 102.4 / n``) gives several
    candidates per patch; selections are always snapped back to the 102.4 m grid (:func:`snap`).

The components (all "higher = more worth annotating", in [0, 1], averaged over the cell's valid pixels)
    ``entropy``  mean per-pixel entropy of the class probabilities, divided by log K;
    ``margin``   1 − mean margin between the two most likely classes (the uncertainty);
    ``gt``       share of ground-truth pixels (value ≠ 0) where the predicted class differs;
    ``models``   share of pixels where two models predict different classes;
    ``rare``     share of pixels predicted as a *rare* class. A class is rare when its share of all
                 predicted pixels in the ranked set is below ``rare_below`` (default 2 %), or in the
                 ``class_frequencies`` given (e.g. FLAIR-1 training frequencies). Rarity is decided
                 at ranking time because it depends on every scene being ranked.

The combined score
    each component is min-max normalised over the ranked cells (a constant or absent component
    becomes 0), then ``score = Σ w_c · norm_c / Σ w_c`` with the user's non-negative weights, so the
    score stays in [0, 1] whatever the weights. A component that is missing for a cell (no ground
    truth, no second model) counts as 0 there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.windows import Window

from flair_viz.core import classes, raster
from flair_viz.core.errors import AlignmentError, FlairVizError

FLAIR_PATCH_PX = 512
FLAIR_RES_M = 0.2
FLAIR_CELL_M = FLAIR_PATCH_PX * FLAIR_RES_M  # 102.4 m
COMPONENTS: tuple[str, ...] = ("entropy", "margin", "gt", "models", "rare")
DEFAULT_WEIGHTS: dict[str, float] = {c: 1.0 for c in COMPONENTS}
RARE_BELOW = 0.02
COUNT_COLS: tuple[str, ...] = tuple(f"px_{c.value}" for c in classes.FLAIR1_CLASSES)
CELL_COLUMNS: tuple[str, ...] = ("cell_id", "dataset", "row", "col", "cell_m", "valid_px", "coverage",
                                 "entropy", "margin", "gt", "models")


# ------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A square metric grid anchored at a scene's upper-left corner, clipped to the scene's extent."""

    x0: float  # upper-left corner (scene origin)
    y0: float
    cell_m: float
    rows: int
    cols: int
    crs: CRS | None

    @classmethod
    def for_scene(cls, transform: rasterio.Affine, width: int, height: int, crs: CRS | None,
                  cell_m: float = FLAIR_CELL_M) -> Grid:
        """The grid of a scene; a rotated or south-up raster is refused because cells would not be squares on the ground."""
        _check_north_up(transform)
        if cell_m <= 0:
            raise FlairVizError(f"Grid cell size must be positive, got {cell_m}", "use 102.4 m (FLAIR) or 102.4/n")
        rows = math.ceil(round(height * abs(transform.e) / cell_m, 6))
        cols = math.ceil(round(width * transform.a / cell_m, 6))
        return cls(transform.c, transform.f, cell_m, max(rows, 1), max(cols, 1), crs)

    def bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of one cell, computed from the origin so cells never drift."""
        minx = self.x0 + col * self.cell_m
        maxy = self.y0 - row * self.cell_m
        # rounding to the micrometre removes float noise (961436.8 + 102.4 -> 961539.2000000001)
        return round(minx, 6), round(maxy - self.cell_m, 6), round(minx + self.cell_m, 6), round(maxy, 6)

    def polygon(self, row: int, col: int) -> shapely.Polygon:
        return shapely.box(*self.bounds(row, col))

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """The (row, col) holding a point (may lie outside the scene's rows/cols)."""
        return math.floor((self.y0 - y) / self.cell_m), math.floor((x - self.x0) / self.cell_m)

    def cells_covering(self, geom: shapely.Geometry) -> list[tuple[int, int]]:
        """Cells of the scene whose area overlaps ``geom`` (touching an edge is not overlapping)."""
        minx, miny, maxx, maxy = geom.bounds
        r0, c0 = self.cell_of(minx, maxy)
        r1, c1 = self.cell_of(maxx, miny)
        shapely.prepare(geom)
        found = []
        for r in range(max(r0, 0), min(r1, self.rows - 1) + 1):
            for c in range(max(c0, 0), min(c1, self.cols - 1) + 1):
                cell = self.polygon(r, c)
                if geom.intersects(cell) and geom.intersection(cell).area > 1e-6 * self.cell_m ** 2:
                    found.append((r, c))
        return found

    def flair(self) -> Grid:
        """The 102.4 m FLAIR grid with the same origin (a finer grid nests inside it exactly)."""
        if abs(self.cell_m - FLAIR_CELL_M) < 1e-6:
            return self
        rows = math.ceil(round(self.rows * self.cell_m / FLAIR_CELL_M, 6))
        cols = math.ceil(round(self.cols * self.cell_m / FLAIR_CELL_M, 6))
        return Grid(self.x0, self.y0, FLAIR_CELL_M, rows, cols, self.crs)

    def footprint(self) -> shapely.Polygon:
        return shapely.box(self.x0, self.y0 - self.rows * self.cell_m, self.x0 + self.cols * self.cell_m, self.y0)


def _check_north_up(transform: rasterio.Affine) -> None:
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise AlignmentError("The raster is rotated or not north-up, so the FLAIR grid cannot be laid on it",
                             "warp it to a north-up EPSG:2154 grid first (gdalwarp -t_srs EPSG:2154)")


def cell_id(dataset: str, row: int, col: int, cell_m: float = FLAIR_CELL_M) -> str:
    """Stable cell name: the same FLAIR cell always gets the same ID, so selections merge by ID."""
    base = f"{dataset}_r{row:03d}_c{col:03d}"
    if abs(cell_m - FLAIR_CELL_M) < 1e-6:
        return base
    return f"{base}_{cell_m:g}m"


def snap(geom: shapely.Geometry, grid: Grid) -> shapely.Geometry:
    """The union of the FLAIR-grid cells a geometry covers, so annotators always get whole patches."""
    flair = grid.flair()
    cells = flair.cells_covering(geom)
    if not cells:
        raise FlairVizError("The region does not overlap the scene's grid", "draw the region over the scene's image")
    return shapely.union_all([flair.polygon(r, c) for r, c in cells]).simplify(0).normalize()


# ------------------------------------------------------------------------------------------------
# Per-pixel maths
# ------------------------------------------------------------------------------------------------
_XLOGX_U8 = np.zeros(256, dtype=np.float32)
_XLOGX_U8[1:] = np.arange(1, 256) * np.log(np.arange(1, 256))


@dataclass(frozen=True)
class PixelStats:
    """Per-pixel uncertainty of one strip: all (h, w); entropy and margin are only meaningful where ``valid``."""

    valid: np.ndarray
    entropy: np.ndarray  # normalised by log K, 0..1
    margin: np.ndarray  # top-1 minus top-2 probability, 0..1
    argmax: np.ndarray  # band index of the most likely class


def pixel_stats(proba: np.ndarray) -> PixelStats:
    """Entropy, top-2 margin and argmax of (K, h, w) probabilities, float 0..1 or uint8 0..255.

    Probabilities are renormalised per pixel (IGN's uint8 output does not sum to exactly 255), and
    a pixel whose probabilities are all 0 is nodata. No K×h×w float copy is made: with x the raw
    values and S = Σx, entropy = log S − Σ x·log x / S and margin = (top1 − top2) / S, computed one
    class plane at a time (a running top-2), with x·log x from a 256-entry table for uint8.
    """
    if proba.ndim != 3 or proba.shape[0] < 2:
        raise FlairVizError(f"Probabilities must be (classes, height, width) with ≥ 2 classes, got shape {proba.shape}",
                            "give one band per class (e.g. the output of `flair-viz predict --proba`)")
    k = proba.shape[0]
    is_u8 = proba.dtype == np.uint8
    if not is_u8 and not np.issubdtype(proba.dtype, np.floating):
        raise FlairVizError(f"Probabilities of type {proba.dtype} are not supported", "give float 0..1 or uint8 0..255")
    total = np.zeros(proba.shape[1:], np.float32)
    xlogx = np.zeros(proba.shape[1:], np.float32)
    top1 = np.zeros(proba.shape[1:], np.float32)
    top2 = np.zeros(proba.shape[1:], np.float32)
    arg = np.zeros(proba.shape[1:], np.int16)
    for i in range(k):
        if is_u8:
            x = proba[i]
            xlogx += _XLOGX_U8[x]
            x = x.astype(np.float32)
        else:
            x = np.nan_to_num(proba[i].astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
            if x.size and (x.min() < -1e-6 or x.max() > 1 + 1e-3):
                raise FlairVizError(f"Probabilities range {x.min():.3g}..{x.max():.3g}, outside 0..1: these look like "
                                    "logits", "apply a softmax over the class axis first, or give uint8 0..255 probabilities")
            x = np.clip(x, 0, None)
            with np.errstate(divide="ignore", invalid="ignore"):
                xlogx += np.where(x > 0, x * np.log(np.where(x > 0, x, 1)), 0)
        total += x
        np.maximum(top2, np.minimum(top1, x), out=top2)
        better = x > top1
        arg[better] = i
        np.maximum(top1, x, out=top1)
    valid = total > 0
    safe = np.where(valid, total, 1)
    entropy = (np.log(safe) - xlogx / safe) / math.log(k)
    margin = (top1 - top2) / safe
    return PixelStats(valid, np.clip(entropy, 0, 1), margin, arg)


def _class_lut(class_values: Sequence[int] | None, k: int, what: str) -> np.ndarray:
    """Band index -> FLAIR-1 value; default band i is value i + 1 (FLAIR-1 model output order)."""
    values = list(class_values) if class_values is not None else list(range(1, k + 1))
    if len(values) != k:
        raise FlairVizError(f"{what} has {k} class bands but {len(values)} class values were given",
                            "give one FLAIR-1 value per band, in band order")
    bad = [v for v in values if v not in classes.BY_VALUE]
    if bad:
        raise FlairVizError(f"{what}: class values {bad} are not FLAIR-1 values 1..{classes.N_CLASSES}",
                            "map the model's classes to FLAIR-1 values (see flair_viz.classes)")
    return np.asarray(values, dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Scoring cells
# ------------------------------------------------------------------------------------------------
class _Accumulator:
    """Per-cell sums, filled strip by strip so a large scene never needs K×H×W floats at once."""

    def __init__(self, grid: Grid, res: tuple[float, float]) -> None:
        n = grid.rows * grid.cols
        self.grid = grid
        self.px_per_cell = grid.cell_m ** 2 / (res[0] * res[1])
        self.valid = np.zeros(n)
        self.entropy = np.zeros(n)
        self.margin = np.zeros(n)
        self.gt_n = np.zeros(n)
        self.gt_bad = np.zeros(n)
        self.mod_n = np.zeros(n)
        self.mod_bad = np.zeros(n)
        self.counts = np.zeros((n, classes.N_CLASSES + 1))
        self.total_px = np.zeros(n)

    def add(self, cell: np.ndarray, proba: np.ndarray, lut: np.ndarray, truth: np.ndarray | None,
            proba_b: np.ndarray | None, lut_b: np.ndarray | None) -> None:
        n = self.valid.size
        stats = pixel_stats(proba)
        valid, entropy, margin = stats.valid, stats.entropy, stats.margin
        pred = lut[stats.argmax]
        self.total_px += np.bincount(cell.ravel(), minlength=n)
        every = bool(valid.all())  # the common case: skip the boolean-mask copies

        def sel(a: np.ndarray) -> np.ndarray:
            return a.ravel() if every else a[valid]

        idx = sel(cell)
        self.valid += np.bincount(idx, minlength=n)
        self.entropy += np.bincount(idx, weights=sel(entropy), minlength=n)
        self.margin += np.bincount(idx, weights=sel(margin), minlength=n)
        self.counts += np.bincount(idx * (classes.N_CLASSES + 1) + sel(pred),
                                   minlength=n * (classes.N_CLASSES + 1)).reshape(n, -1)
        if truth is not None:
            has = valid & (truth != classes.NODATA)
            self.gt_n += np.bincount(cell[has], minlength=n)
            self.gt_bad += np.bincount(cell[has & (pred != truth)], minlength=n)
        if proba_b is not None and lut_b is not None:
            stats_b = pixel_stats(proba_b)
            pred_b = lut_b[stats_b.argmax]
            both = valid & stats_b.valid
            self.mod_n += np.bincount(cell[both], minlength=n)
            self.mod_bad += np.bincount(cell[both & (pred != pred_b)], minlength=n)

    def frame(self, dataset: str, have_truth: bool, have_b: bool) -> gpd.GeoDataFrame:
        g = self.grid
        rows, cols = np.divmod(np.arange(self.valid.size), g.cols)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = pd.DataFrame({
                "cell_id": [cell_id(dataset, r, c, g.cell_m) for r, c in zip(rows, cols)],
                "dataset": dataset, "row": rows, "col": cols, "cell_m": g.cell_m,
                "valid_px": self.valid.astype(np.int64),
                "coverage": np.minimum(self.total_px / self.px_per_cell, 1.0),
                "entropy": self.entropy / self.valid,
                "margin": 1 - self.margin / self.valid,
                "gt": self.gt_bad / self.gt_n if have_truth else np.nan,
                "models": self.mod_bad / self.mod_n if have_b else np.nan,
            })
        for j, col in enumerate(COUNT_COLS, start=1):
            df[col] = self.counts[:, j].astype(np.int64)
        geoms = [g.polygon(r, c) for r, c in zip(rows, cols)]
        return gpd.GeoDataFrame(df, geometry=geoms, crs=g.crs)


def _cell_index(grid: Grid, transform: rasterio.Affine, row0: int, nrows: int, width: int) -> np.ndarray:
    """Cell number of every pixel of a strip, from the pixel centre (works at any resolution)."""
    ys = (np.arange(row0, row0 + nrows) + 0.5) * abs(transform.e)
    xs = (np.arange(width) + 0.5) * transform.a
    r = np.minimum((ys // grid.cell_m).astype(np.int64), grid.rows - 1)
    c = np.minimum((xs // grid.cell_m).astype(np.int64), grid.cols - 1)
    return r[:, None] * grid.cols + c[None, :]


def score_cells(proba: np.ndarray, transform: rasterio.Affine, crs: CRS | str | None = "EPSG:2154", *,
                dataset: str = "scene", truth: np.ndarray | None = None, proba_b: np.ndarray | None = None,
                class_values: Sequence[int] | None = None, class_values_b: Sequence[int] | None = None,
                cell_m: float = FLAIR_CELL_M) -> gpd.GeoDataFrame:
    """Raw components of every grid cell of one scene (one row per cell, geometry = the cell).

    ``proba`` is (K, H, W) float 0..1 or uint8 0..255; ``truth`` is (H, W) in FLAIR-1 values with 0
    as nodata; ``proba_b`` is a second model's probabilities on the same pixels. Empty cells (no
    valid pixel) are kept with NaN components; :func:`rank` drops them.
    """
    crs = CRS.from_user_input(crs) if crs is not None else None
    k, h, w = _shape3(proba, "Probabilities")
    lut = _class_lut(class_values, k, "Probabilities")
    if truth is not None and truth.shape != (h, w):
        raise AlignmentError(f"Ground truth is {truth.shape[1]}x{truth.shape[0]} px but the probabilities are {w}x{h}",
                             "give the ground truth of the same scene, on the same pixel grid")
    lut_b = None
    if proba_b is not None:
        kb, hb, wb = _shape3(proba_b, "Second model's probabilities")
        if (hb, wb) != (h, w):
            raise AlignmentError(f"The second model's probabilities are {wb}x{hb} px but the first are {w}x{h}",
                                 "predict both models on the same scene")
        lut_b = _class_lut(class_values_b, kb, "Second model's probabilities")
    grid = Grid.for_scene(transform, w, h, crs, cell_m)
    acc = _Accumulator(grid, (transform.a, abs(transform.e)))
    strip = max(1, int(round(grid.cell_m / abs(transform.e))))
    for r0 in range(0, h, strip):
        sl = slice(r0, min(h, r0 + strip))
        acc.add(_cell_index(grid, transform, r0, sl.stop - r0, w), proba[:, sl], lut,
                None if truth is None else np.asarray(truth[sl]),
                None if proba_b is None else proba_b[:, sl], lut_b)
    return acc.frame(dataset, truth is not None, proba_b is not None)


def score_files(proba_path: str, *, dataset: str = "scene", truth_path: str | None = None,
                truth_nomenclature: str = "flair1", proba_b_path: str | None = None,
                class_values: Sequence[int] | None = None, class_values_b: Sequence[int] | None = None,
                cell_m: float = FLAIR_CELL_M) -> gpd.GeoDataFrame:
    """:func:`score_cells` on probability GeoTIFFs, read one grid row at a time to bound memory."""
    info = raster.describe(proba_path)
    others = []
    if truth_path:
        others.append(raster.check_mask(truth_path, truth_nomenclature, scan_values=False))
    if proba_b_path:
        others.append(raster.describe(proba_b_path))
    for o in others:
        raster.check_same_grid(info, o)
    grid = Grid.for_scene(info.transform, info.width, info.height, info.crs, cell_m)
    lut = _class_lut(class_values, info.count, f"Probabilities {info.path.name}")
    lut_b = _class_lut(class_values_b, others[-1].count, f"Probabilities {others[-1].path.name}") if proba_b_path else None
    acc = _Accumulator(grid, info.res)
    strip = max(1, int(round(grid.cell_m / abs(info.transform.e))))
    for r0 in range(0, info.height, strip):
        win = Window(0, r0, info.width, min(strip, info.height - r0))
        truth = None
        if truth_path:
            truth = classes.to_flair1(raster.read(truth_path, 1, window=win), truth_nomenclature)
        pb = raster.read(proba_b_path, window=win) if proba_b_path else None
        acc.add(_cell_index(grid, info.transform, r0, int(win.height), info.width), raster.read(proba_path, window=win),
                lut, truth, pb, lut_b)
    return acc.frame(dataset, truth_path is not None, proba_b_path is not None)


def _shape3(a: np.ndarray, what: str) -> tuple[int, int, int]:
    if a.ndim != 3:
        raise FlairVizError(f"{what} must be (classes, height, width), got shape {a.shape}",
                            "give one band per class")
    return a.shape  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# Ranking
# ------------------------------------------------------------------------------------------------
def parse_weights(text: str | None) -> dict[str, float]:
    """``"entropy=1,gt=2"`` -> weights; components not named keep their default weight of 1."""
    weights = dict(DEFAULT_WEIGHTS)
    if not text:
        return weights
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in COMPONENTS:
            raise FlairVizError(f"Bad weight {part!r}", f"write NAME=NUMBER with NAME in {', '.join(COMPONENTS)}, "
                                                         "e.g. --weights entropy=1,gt=2,rare=0.5")
        try:
            weights[key] = float(val)
        except ValueError:
            raise FlairVizError(f"Weight {key}={val!r} is not a number", "use a number ≥ 0, e.g. gt=2") from None
    return check_weights(weights)


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights must be known, finite, ≥ 0 and not all 0, or the ranking would be meaningless."""
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise FlairVizError(f"Unknown score component(s): {', '.join(sorted(unknown))}",
                            f"use {', '.join(COMPONENTS)}")
    w = {c: float(weights.get(c, 0.0)) for c in COMPONENTS}
    if any(not math.isfinite(v) or v < 0 for v in w.values()):
        raise FlairVizError("Weights must be finite numbers ≥ 0", "set a negative weight to 0 instead")
    if sum(w.values()) <= 0:
        raise FlairVizError("All weights are 0, so nothing can be ranked", "give at least one component a weight > 0")
    return w


def rare_classes(counts: np.ndarray, rare_below: float = RARE_BELOW,
                 class_frequencies: Mapping[int, float] | None = None) -> list[int]:
    """FLAIR-1 values whose frequency is below ``rare_below`` (from ``class_frequencies`` or the counts)."""
    if class_frequencies is not None:
        total = sum(class_frequencies.values()) or 1.0
        return sorted(v for v in classes.BY_VALUE if class_frequencies.get(v, 0.0) / total < rare_below)
    freq = counts / max(counts.sum(), 1)
    return [v for v, f in zip(classes.BY_VALUE, freq) if f < rare_below]


def minmax(values: pd.Series) -> pd.Series:
    """Min-max normalisation; a constant or all-missing component gives 0 (it ranks nothing)."""
    v = values.astype(float)
    lo, hi = v.min(skipna=True), v.max(skipna=True)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 0:
        return pd.Series(0.0, index=v.index)
    return ((v - lo) / (hi - lo)).fillna(0.0)


def combine(cells: gpd.GeoDataFrame, weights: Mapping[str, float] | None = None, *, rare_below: float = RARE_BELOW,
            class_frequencies: Mapping[int, float] | None = None) -> gpd.GeoDataFrame:
    """Add ``rare``, the normalised ``n_<component>`` columns and ``score``, sorted best first.

    Cells without a valid pixel are dropped: there is nothing to annotate there.
    """
    w = check_weights(weights if weights is not None else DEFAULT_WEIGHTS)
    df = cells[cells["valid_px"] > 0].copy()
    counts = df[list(COUNT_COLS)].to_numpy(dtype=float)
    rare = rare_classes(counts.sum(axis=0), rare_below, class_frequencies)
    rare_idx = [v - 1 for v in rare]
    df["rare"] = counts[:, rare_idx].sum(axis=1) / df["valid_px"].to_numpy() if rare_idx else 0.0
    total = sum(w.values())
    score = pd.Series(0.0, index=df.index)
    for c in COMPONENTS:
        df[f"n_{c}"] = minmax(df[c])
        score += w[c] * df[f"n_{c}"]
    df["score"] = score / total
    df.attrs["rare_classes"] = rare
    return df.sort_values(["score", "dataset", "row", "col"], ascending=[False, True, True, True], kind="stable")


def pick(ranked: gpd.GeoDataFrame, top: int | None = None, spacing_m: float = 0.0) -> gpd.GeoDataFrame:
    """The best ``top`` cells, greedily skipping any cell whose centre is within ``spacing_m`` of one already picked."""
    if top is not None and top < 1:
        raise FlairVizError(f"--top must be ≥ 1, got {top}", "ask for at least one candidate")
    if spacing_m < 0:
        raise FlairVizError(f"Spacing must be ≥ 0 m, got {spacing_m}", "use 0 for no spacing rule")
    if spacing_m == 0:
        return ranked.head(top) if top else ranked
    centres = shapely.centroid(ranked.geometry.to_numpy())
    xy = np.column_stack([shapely.get_x(centres), shapely.get_y(centres)])
    # greedy, vectorised: each pick rules out every cell closer than spacing_m, the next pick is the best left
    alive = np.ones(len(ranked), dtype=bool)
    kept: list[int] = []
    i = 0 if len(ranked) else -1
    while i >= 0 and (not top or len(kept) < top):
        kept.append(i)
        alive &= np.hypot(xy[:, 0] - xy[i, 0], xy[:, 1] - xy[i, 1]) >= spacing_m
        rest = np.flatnonzero(alive[i + 1:])
        i = i + 1 + int(rest[0]) if rest.size else -1
    return ranked.iloc[kept]


def rank(cells: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame], weights: Mapping[str, float] | None = None,
         top: int | None = None, spacing_m: float = 0.0, *, rare_below: float = RARE_BELOW,
         class_frequencies: Mapping[int, float] | None = None) -> gpd.GeoDataFrame:
    """Score cells of one or many scenes together, best first; rarity and normalisation span all of them."""
    frame = concat_cells(cells)
    return pick(combine(frame, weights, rare_below=rare_below, class_frequencies=class_frequencies), top, spacing_m)


def concat_cells(cells: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Join the cells of several scenes; they must share a CRS, or distances and maps would be wrong."""
    if isinstance(cells, gpd.GeoDataFrame):
        return cells
    frames = list(cells)
    if not frames:
        raise FlairVizError("No scene to rank", "give at least one dataset")
    crss = {str(f.crs) for f in frames}
    if len(crss) > 1:
        raise AlignmentError(f"The scenes use different CRSs ({', '.join(sorted(crss))})",
                             "reproject them to EPSG:2154 first")
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=frames[0].crs)


def candidate_table(ranked: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """What a candidate export holds: IDs, components, score and the cell geometry (no pixel counts)."""
    keep = ["cell_id", "dataset", "row", "col", "cell_m", "valid_px", *COMPONENTS, "score", "geometry"]
    out = ranked[keep].rename(columns={"cell_id": "id"}).reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


# ------------------------------------------------------------------------------------------------
# Catalog datasets: the glue the CLI and the Annotate page share
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """An aerial image of the catalog with what scoring needs: its header and its ground truth (if any)."""

    dataset: str
    info: raster.RasterInfo
    truth_id: str | None


def scene(cat, dataset_id: str) -> Scene:
    """Resolve an image dataset and its ground truth; predictions and masks are not images to score."""
    ds = cat.get(dataset_id)
    if ds.role != "image":
        raise FlairVizError(f"Dataset {ds.id} is a {ds.role} raster; candidates are scored on aerial images",
                            "give an image ID (IMG_...), see `flair-viz catalog list`")
    info = raster.check_image(ds.path, ds.bands or None)
    truth = cat.for_patch(ds.patch, "truth") if ds.patch else None
    return Scene(ds.id, info, truth.id if truth else None)


def scene_grid(sc: Scene, cell_m: float = FLAIR_CELL_M) -> Grid:
    return Grid.for_scene(sc.info.transform, sc.info.width, sc.info.height, sc.info.crs, cell_m)


def read_truth(cat, sc: Scene) -> np.ndarray | None:
    """The scene's ground truth in FLAIR-1 values, checked to lie on the image's pixel grid."""
    if sc.truth_id is None:
        return None
    t = cat.get(sc.truth_id)
    info = raster.check_mask(t.path, t.nomenclature, scan_values=False)
    raster.check_same_grid(sc.info, info)
    return classes.to_flair1(raster.read(t.path, 1), t.nomenclature)


def predict_scene(cat, dataset_id: str, model_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Run a model on a whole image through the inference module: (probabilities K×H×W, FLAIR-1 value per band)."""
    from flair_viz.predict import (
        inference,  # torch is heavy: import only when predicting
        models,
    )

    sc = scene(cat, dataset_id)
    ds = cat.get(dataset_id)
    model = models.load_model(model_id)
    image = raster.read(ds.path)
    try:
        proba = np.asarray(inference.predict_proba_array(model, image, bands=ds.bands or None))
    except FlairVizError as exc:  # the page ranks many scenes: say which one the model cannot read
        raise type(exc)(f"{dataset_id} ({ds.path.name}): {exc.problem}", exc.fix) from None
    if proba.shape[1:] != (sc.info.height, sc.info.width):
        raise AlignmentError(f"Model {model_id} returned {proba.shape} probabilities for a "
                             f"{sc.info.width}x{sc.info.height} image", "report this as a bug in the inference module")
    return proba, np.asarray(inference.PROBA_VALUES)


def score_dataset(cat, dataset_id: str, proba: np.ndarray, class_values: Sequence[int] | None = None, *,
                  proba_b: np.ndarray | None = None, class_values_b: Sequence[int] | None = None,
                  cell_m: float = FLAIR_CELL_M, use_truth: bool = True) -> gpd.GeoDataFrame:
    """:func:`score_cells` for a catalog image, with its ground truth when the catalog has one."""
    sc = scene(cat, dataset_id)
    if proba.shape[1:] != (sc.info.height, sc.info.width):
        raise AlignmentError(f"Probabilities are {proba.shape[2]}x{proba.shape[1]} px but {dataset_id} is "
                             f"{sc.info.width}x{sc.info.height}", "predict on the same image")
    return score_cells(proba, sc.info.transform, sc.info.crs, dataset=dataset_id,
                       truth=read_truth(cat, sc) if use_truth else None, proba_b=proba_b,
                       class_values=class_values, class_values_b=class_values_b, cell_m=cell_m)


def scene_at(geom: shapely.Geometry, scenes: Sequence[Scene]) -> Scene | None:
    """The scene a drawn region overlaps most (its grid is the one to snap to), or None."""
    best, best_area = None, 0.0
    for sc in scenes:
        area = geom.intersection(shapely.box(*sc.info.bounds)).area
        if area > best_area:
            best, best_area = sc, area
    return best


SCORE_RAMP = ((255, 255, 178), (254, 178, 76), (240, 59, 32), (189, 0, 38))  # low -> high (ColorBrewer YlOrRd)


def score_colour(score: float) -> str:
    """Hex colour of a score in [0, 1] on a yellow-to-red ramp, so map polygons and legend agree."""
    s = 0.0 if not np.isfinite(score) else min(max(float(score), 0.0), 1.0)
    pos = s * (len(SCORE_RAMP) - 1)
    i = min(int(pos), len(SCORE_RAMP) - 2)
    t = pos - i
    rgb = [round(a + (b - a) * t) for a, b in zip(SCORE_RAMP[i], SCORE_RAMP[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def summarise_region(geom: shapely.Geometry, scored: gpd.GeoDataFrame) -> dict[str, float]:
    """Components and score of a drawn region: the area-weighted mean over the scored cells it overlaps.

    ``scored`` is the output of :func:`combine` (all cells, not only the top N), so a drawn region is
    exported with numbers comparable to the candidates'. Outside every scored cell, all are NaN.
    """
    cols = [*COMPONENTS, "score"]
    hits = scored[scored.intersects(geom)]
    areas = hits.intersection(geom).area.to_numpy() if len(hits) else np.zeros(0)
    out: dict[str, float] = {}
    for c in cols:
        if c not in hits:
            out[c] = float("nan")
            continue
        v = hits[c].to_numpy(dtype=float)
        ok = np.isfinite(v) & (areas > 0)
        out[c] = float(np.average(v[ok], weights=areas[ok])) if ok.any() else float("nan")
    return out
