"""Score every cell of a scene's grid from a model's probabilities: the raw components, per cell.

Everything here works on plain numpy arrays plus a georeference, so it does not depend on how the
probabilities were produced (live inference on the tile server, or a probability GeoTIFF from
``flair-viz predict --proba``). Large scenes are read strip by strip (one grid row at a time), so a
scene never needs K×H×W floats at once.

The components (all "higher = more worth annotating", in [0, 1], averaged over the cell's valid pixels)
    ``entropy``  mean per-pixel entropy, divided by log of the model's number of classes
                 (:mod:`flair_viz.core.uncertainty`, the same numbers the live map draws);
    ``margin``   1 − mean margin between the two most likely classes (the uncertainty);
    ``gt``       share of ground-truth pixels (value ≠ 0) where the predicted class differs;
    ``models``   share of pixels where two models predict different classes.
``rare`` is added at ranking time (:mod:`flair_viz.annotate.ranking`), because it depends on every
scene being ranked; the per-class pixel counts (``px_<value>``) are kept for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from flair_viz.annotate.grid import FLAIR_CELL_M, Grid, cell_id
from flair_viz.core import classes, raster
from flair_viz.core.errors import AlignmentError, InvalidInput, Mismatch
from flair_viz.core.uncertainty import pixel_stats

COMPONENTS: tuple[str, ...] = ("entropy", "margin", "gt", "models", "rare")
COUNT_COLS: tuple[str, ...] = tuple(f"px_{c.value}" for c in classes.FLAIR1_CLASSES)
CELL_COLUMNS: tuple[str, ...] = ("cell_id", "dataset", "row", "col", "cell_m", "valid_px", "coverage",
                                 "entropy", "margin", "gt", "models")
_INT_COLUMNS: tuple[str, ...] = ("row", "col", "valid_px", *COUNT_COLS)
_FLOAT_COLUMNS: tuple[str, ...] = ("cell_m", "coverage", "entropy", "margin", "gt", "models")


def _class_lut(class_values: Sequence[int] | None, k: int, what: str) -> np.ndarray:
    """Band index -> FLAIR-1 value; default band i is value i + 1 (FLAIR-1 model output order)."""
    values = list(class_values) if class_values is not None else list(range(1, k + 1))
    if len(values) != k:
        raise Mismatch(f"{what} has {k} class bands but {len(values)} class values were given",
                       "give one FLAIR-1 value per band, in band order")
    bad = [v for v in values if v not in classes.BY_VALUE]
    if bad:
        raise InvalidInput(f"{what}: class values {bad} are not FLAIR-1 values 1..{classes.N_CLASSES}",
                           "map the model's classes to FLAIR-1 values (see flair_viz.core.classes)")
    return np.asarray(values, dtype=np.uint8)


class _Model:
    """One model's probabilities for the strip loop: band -> FLAIR-1 LUT and its number of classes."""

    def __init__(self, k: int, class_values: Sequence[int] | None, n_classes: int | None, what: str) -> None:
        self.lut = _class_lut(class_values, k, what)
        self.n_classes = n_classes


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

    def add(self, cell: np.ndarray, proba: np.ndarray, model: _Model, truth: np.ndarray | None,
            proba_b: np.ndarray | None, model_b: _Model | None) -> None:
        n = self.valid.size
        stats = pixel_stats(proba, model.n_classes)
        valid = stats.valid
        pred = model.lut[stats.argmax]
        self.total_px += np.bincount(cell.ravel(), minlength=n)
        every = bool(valid.all())  # the common case: skip the boolean-mask copies

        def sel(a: np.ndarray) -> np.ndarray:
            return a.ravel() if every else a[valid]

        idx = sel(cell)
        self.valid += np.bincount(idx, minlength=n)
        self.entropy += np.bincount(idx, weights=sel(stats.entropy), minlength=n)
        self.margin += np.bincount(idx, weights=sel(stats.margin), minlength=n)
        self.counts += np.bincount(idx * (classes.N_CLASSES + 1) + sel(pred),
                                   minlength=n * (classes.N_CLASSES + 1)).reshape(n, -1)
        if truth is not None:
            has = valid & (truth != classes.NODATA)
            self.gt_n += np.bincount(cell[has], minlength=n)
            self.gt_bad += np.bincount(cell[has & (pred != truth)], minlength=n)
        if proba_b is not None and model_b is not None:
            stats_b = pixel_stats(proba_b, model_b.n_classes)
            pred_b = model_b.lut[stats_b.argmax]
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


def _strip_rows(grid: Grid, transform: rasterio.Affine) -> int:
    """Pixel rows per strip: one grid row, so each strip's cells are complete before the next."""
    return max(1, int(round(grid.cell_m / abs(transform.e))))


def score_cells(proba: np.ndarray, transform: rasterio.Affine, crs: CRS | str | None = "EPSG:2154", *,
                dataset: str = "scene", truth: np.ndarray | None = None, proba_b: np.ndarray | None = None,
                class_values: Sequence[int] | None = None, class_values_b: Sequence[int] | None = None,
                n_classes: int | None = None, n_classes_b: int | None = None,
                cell_m: float = FLAIR_CELL_M) -> gpd.GeoDataFrame:
    """Raw components of every grid cell of one scene (one row per cell, geometry = the cell).

    ``proba`` is (K, H, W) float 0..1 or uint8 0..255; ``truth`` is (H, W) in FLAIR-1 values with 0
    as nodata; ``proba_b`` is a second model's probabilities on the same pixels. ``n_classes`` is
    the model's number of classes (default K): a 5-class model returned as 19 FLAIR-1 channels
    must say 5, or its entropy would be on a log 19 scale. Empty cells (no valid pixel) are kept
    with NaN components; ranking drops them.
    """
    crs = CRS.from_user_input(crs) if crs is not None else None
    k, h, w = _shape3(proba, "Probabilities")
    model = _Model(k, class_values, n_classes, "Probabilities")
    if truth is not None and truth.shape != (h, w):
        raise AlignmentError(f"Ground truth is {truth.shape[1]}x{truth.shape[0]} px but the probabilities are {w}x{h}",
                             "give the ground truth of the same scene, on the same pixel grid")
    model_b = None
    if proba_b is not None:
        kb, hb, wb = _shape3(proba_b, "Second model's probabilities")
        if (hb, wb) != (h, w):
            raise AlignmentError(f"The second model's probabilities are {wb}x{hb} px but the first are {w}x{h}",
                                 "predict both models on the same scene")
        model_b = _Model(kb, class_values_b, n_classes_b, "Second model's probabilities")
    grid = Grid.for_scene(transform, w, h, crs, cell_m)
    acc = _Accumulator(grid, (transform.a, abs(transform.e)))
    strip = _strip_rows(grid, transform)
    for r0 in range(0, h, strip):
        sl = slice(r0, min(h, r0 + strip))
        acc.add(_cell_index(grid, transform, r0, sl.stop - r0, w), proba[:, sl], model,
                None if truth is None else np.asarray(truth[sl]),
                None if proba_b is None else proba_b[:, sl], model_b)
    return acc.frame(dataset, truth is not None, proba_b is not None)


def score_files(proba_path: str, *, dataset: str = "scene", truth_path: str | None = None,
                truth_nomenclature: str = "flair1", proba_b_path: str | None = None,
                class_values: Sequence[int] | None = None, class_values_b: Sequence[int] | None = None,
                n_classes: int | None = None, n_classes_b: int | None = None,
                cell_m: float = FLAIR_CELL_M) -> gpd.GeoDataFrame:
    """:func:`score_cells` on probability GeoTIFFs, read one grid row at a time to bound memory.

    ``n_classes`` defaults to the file's band count (one band per class), unless told otherwise.
    """
    info = raster.describe(proba_path)
    others = []
    if truth_path:
        others.append(raster.check_mask(truth_path, truth_nomenclature, scan_values=False))
    if proba_b_path:
        others.append(raster.describe(proba_b_path))
    for o in others:
        raster.check_same_grid(info, o)
    grid = Grid.for_scene(info.transform, info.width, info.height, info.crs, cell_m)
    model = _Model(info.count, class_values, n_classes, f"Probabilities {info.path.name}")
    model_b = (_Model(others[-1].count, class_values_b, n_classes_b, f"Probabilities {others[-1].path.name}")
               if proba_b_path else None)
    acc = _Accumulator(grid, info.res)
    strip = _strip_rows(grid, info.transform)
    for r0 in range(0, info.height, strip):
        win = Window(0, r0, info.width, min(strip, info.height - r0))
        truth = None
        if truth_path:
            truth = classes.to_flair1(raster.read(truth_path, 1, window=win), truth_nomenclature)
        pb = raster.read(proba_b_path, window=win) if proba_b_path else None
        acc.add(_cell_index(grid, info.transform, r0, int(win.height), info.width), raster.read(proba_path, window=win),
                model, truth, pb, model_b)
    return acc.frame(dataset, truth_path is not None, proba_b_path is not None)


def _shape3(a: np.ndarray, what: str) -> tuple[int, int, int]:
    if a.ndim != 3:
        raise InvalidInput(f"{what} must be (classes, height, width), got shape {a.shape}",
                           "give one band per class")
    return a.shape  # type: ignore[return-value]


# -- the wire format between the tile server and the Annotate page -------------------------------
def cells_geojson(cells: gpd.GeoDataFrame) -> dict:
    """Scored cells as a GeoJSON FeatureCollection with coordinates in the cells' CRS (EPSG:2154).

    Not WGS84, unlike plain GeoJSON: spacing and snapping work in metres, and reprojecting there and
    back would move cell edges off the FLAIR grid. The CRS is named in the legacy ``crs`` member.
    Missing components (NaN) are ``null``.
    """
    doc = json.loads(cells.to_json(na="null", drop_id=True))
    epsg = cells.crs.to_epsg() if cells.crs is not None else 2154
    name = f"EPSG:{epsg}" if epsg else cells.crs.to_wkt()
    doc["crs"] = {"type": "name", "properties": {"name": name}}
    return doc


def cells_from_geojson(doc: dict) -> gpd.GeoDataFrame:
    """The inverse of :func:`cells_geojson`: the same columns and dtypes, ``null`` back to NaN."""
    try:
        crs = doc.get("crs", {}).get("properties", {}).get("name", "EPSG:2154")
        frame = gpd.GeoDataFrame.from_features(doc["features"], crs=crs)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"Not a scored-cells document: {exc}",
                           "fetch it from the tile server's /datasets/{id}/candidates/{model_id} route") from None
    if frame.empty:
        frame = gpd.GeoDataFrame({c: pd.Series(dtype="float64") for c in (*CELL_COLUMNS, *COUNT_COLS)},
                                 geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    for c in _INT_COLUMNS:
        frame[c] = frame[c].astype(np.int64)
    for c in _FLOAT_COLUMNS:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in ("cell_id", "dataset"):
        frame[c] = frame[c].astype(str)
    return frame[[*CELL_COLUMNS, *COUNT_COLS, "geometry"]]
