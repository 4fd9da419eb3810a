"""Inputs and alignment of a change: two class rasters laid on one grid and read block by block.

The earlier raster's grid is the reference; the later one is used as is when it shares that grid
(:func:`flair_viz.core.raster.grid_offset`), and otherwise resampled onto it with nearest neighbour
(classes must not be averaged), which the result reports. Only the intersection of both extents is
counted, and both rasters stream block by block, so an 8k × 8k pair never sits in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.warp
import rasterio.windows
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from flair_viz.change.grouping import N
from flair_viz.core import classes, errors, raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import AlignmentError, InvalidInput, NotFound, UnreadableRaster, first_line

M2_PER_HA = 10_000.0
NODATA_CODE = {"flair1": 0, "flairhub": 255}  # the "no class" value of each nomenclature


@dataclass(frozen=True)
class ClassSource:
    """A class raster to compare: a catalog dataset or a plain file, with its nomenclature."""

    path: Path
    nomenclature: str = "flair1"
    dataset_id: str | None = None
    vintage: str | None = None
    simulated: bool = False
    title: str = ""
    role: str | None = None  # truth or prediction for a catalog dataset; None for a plain file

    @property
    def name(self) -> str:
        return self.dataset_id or self.path.name

    @property
    def kind(self) -> str:
        """What this date is, as a trend row says it: ``simulated``, ``truth``, ``prediction`` or ``file``."""
        return "simulated" if self.simulated else (self.role or "file")

    def as_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "path": str(self.path), "nomenclature": self.nomenclature,
                "vintage": self.vintage, "simulated": self.simulated, "title": self.title, "kind": self.kind}


def source_from_dataset(ds: Dataset) -> ClassSource:
    """A catalog dataset as a change input; only ground truths and predictions hold classes to compare."""
    if not ds.is_class_raster or ds.role == "change":
        raise InvalidInput(f"Dataset {ds.id} has role {ds.role!r}; a change needs class rasters (role truth or prediction)",
                           "pick a ground truth (MSK_...) or a prediction for both dates")
    return ClassSource(path=ds.path, nomenclature=ds.nomenclature, dataset_id=ds.id, vintage=ds.vintage,
                       simulated=ds.simulated, title=ds.title, role=ds.role)


def resolve(ref: str | os.PathLike[str] | Dataset | ClassSource, catalog: Catalog | None = None,
            nomenclature: str = "flair1") -> ClassSource:
    """A catalog ID, a Dataset or a file path -> ClassSource (IDs win over files of the same name)."""
    if isinstance(ref, ClassSource):
        return ref
    if isinstance(ref, Dataset):
        return source_from_dataset(ref)
    if catalog is not None and str(ref) in catalog:
        return source_from_dataset(catalog.get(str(ref)))
    p = Path(ref)
    if p.is_file():
        if nomenclature not in classes.nomenclature_names():
            raise InvalidInput(f"Unknown nomenclature {nomenclature!r}", f"use one of {', '.join(classes.nomenclature_names())}")
        return ClassSource(path=p.resolve(), nomenclature=nomenclature)
    raise NotFound(f"{ref!s} is neither a catalog dataset ID nor an existing file",
                   "give a catalog ID (see `flair-viz catalog list`) or the path of a class raster")


@dataclass(frozen=True)
class Alignment:
    """How the after raster was laid onto the before raster's grid, and where they overlap."""

    crs: Any
    transform: rasterio.Affine  # of the before raster
    window: Window  # the overlap, in the before raster's pixels
    after_offset: tuple[int, int] | None  # (col, row) offset into the after raster; None = resampled
    resampled: bool
    partial: bool
    notes: tuple[str, ...]

    @property
    def pixel_area_m2(self) -> float:
        t = self.transform
        return abs(t.a * t.e - t.b * t.d)

    @property
    def overlap_area_m2(self) -> float:
        return int(self.window.width) * int(self.window.height) * self.pixel_area_m2

    @property
    def overlap_bounds(self) -> tuple[float, float, float, float]:
        return rasterio.windows.bounds(self.window, self.transform)


def _fmt_bounds(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in b) + ")"


def _crs_name(crs: Any) -> str:
    return f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_string()[:60]


def _class_raster_info(src: ClassSource) -> raster.RasterInfo:
    """The header of a change input, refused unless it is a georeferenced single-band uint8 raster."""
    info = raster.check_class_raster(raster.describe(src.path), src.name)
    if info.crs is None:
        raise AlignmentError(f"{src.name} has no CRS, so it cannot be placed against the other date",
                             "georeference it (FLAIR uses EPSG:2154), e.g. with gdal_translate -a_srs -a_ullr")
    return info


def align(before: ClassSource, after: ClassSource) -> Alignment:
    """Work out the common grid (the before raster's) and the overlap window, or say why there is none."""
    bi, ai = _class_raster_info(before), _class_raster_info(after)
    notes: list[str] = [i.crs_note for i in (bi, ai) if i.crs_note]
    if before.vintage and after.vintage and after.vintage < before.vintage:
        notes.append(f"the 'after' raster ({after.vintage}) is older than the 'before' one ({before.vintage}); "
                     "flows are reported in the order given")
    if ai.crs == bi.crs:
        a_bounds = ai.bounds
    else:
        a_bounds = rasterio.warp.transform_bounds(ai.crs, bi.crs, *ai.bounds, densify_pts=21)
    left, bottom = max(bi.bounds[0], a_bounds[0]), max(bi.bounds[1], a_bounds[1])
    right, top = min(bi.bounds[2], a_bounds[2]), min(bi.bounds[3], a_bounds[3])
    no_overlap = AlignmentError(
        f"{before.name} and {after.name} do not overlap: {before.name} covers {_fmt_bounds(bi.bounds)} "
        f"in {_crs_name(bi.crs)}, {after.name} covers {_fmt_bounds(ai.bounds)} in {_crs_name(ai.crs)}"
        + ("" if ai.crs == bi.crs else f" = {_fmt_bounds(a_bounds)} in {_crs_name(bi.crs)}"),
        "pick two rasters of the same place (same patch or zone at two dates)")
    if left >= right or bottom >= top:
        raise no_overlap
    inv = ~bi.transform
    cols, rows = zip(*(inv * (x, y) for x, y in ((left, top), (right, bottom))))
    c0, c1 = max(0, math.floor(min(cols) + 1e-6)), min(bi.width, math.ceil(max(cols) - 1e-6))
    r0, r1 = max(0, math.floor(min(rows) + 1e-6)), min(bi.height, math.ceil(max(rows) - 1e-6))
    if c1 <= c0 or r1 <= r0:
        raise no_overlap
    window = Window(c0, r0, c1 - c0, r1 - r0)
    partial = (c0, r0, c1, r1) != (0, 0, bi.width, bi.height) or \
        not all(math.isclose(x, y, abs_tol=bi.res[0] / 2) for x, y in zip(a_bounds, bi.bounds))
    offset = raster.grid_offset(bi, ai)
    if offset is None:
        why = (f"CRS {_crs_name(ai.crs)} differs from {_crs_name(bi.crs)}" if ai.crs != bi.crs else
               f"resolution {ai.res[0]:.4g} m differs from {bi.res[0]:.4g} m"
               if not math.isclose(ai.res[0], bi.res[0], rel_tol=raster.RES_RTOL) else "pixel grids are shifted")
        notes.append(f"{after.name} was resampled onto the grid of {before.name} "
                     f"({_crs_name(bi.crs)}, {bi.res[0]:.4g} m) with nearest neighbour: {why}")
    if partial:
        ha = (c1 - c0) * (r1 - r0) * bi.pixel_area_m2 / M2_PER_HA
        notes.append(f"partial overlap: computed on the intersection {_fmt_bounds(rasterio.windows.bounds(window, bi.transform))}"
                     f" ({ha:.4f} ha); {before.name} covers {_fmt_bounds(bi.bounds)}, {after.name} covers "
                     f"{_fmt_bounds(a_bounds)}")
    after_offset = None if offset is None else (c0 - offset[0], r0 - offset[1])
    return Alignment(crs=bi.crs, transform=bi.transform, window=window, after_offset=after_offset,
                     resampled=offset is None, partial=partial, notes=tuple(notes))


def iter_windows(window: Window, size: int) -> Iterator[Window]:
    """Split a window into square blocks of at most ``size`` pixels a side, row by row."""
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    for r in range(r0, r0 + h, size):
        for c in range(c0, c0 + w, size):
            yield Window(c, r, min(size, c0 + w - c), min(size, r0 + h - r))


@dataclass
class PairReader:
    """Reads the two dates block by block on the common grid, as FLAIR-1 codes 0..19."""

    before: ClassSource
    after: ClassSource
    alignment: Alignment

    def __enter__(self) -> PairReader:
        self._b = raster.open_raster(self.before.path)
        self._a_ds = raster.open_raster(self.after.path)
        with errors.context(self.before.name):
            self._lut_b = classes.class_lut(self.before.nomenclature, self._b.nodata)
        with errors.context(self.after.name):
            self._lut_a = classes.class_lut(self.after.nomenclature, self._a_ds.nodata)
        if self.alignment.resampled:
            # the fill of pixels the after raster does not cover: a raw value its LUT maps to "no class"
            fill = NODATA_CODE.get(self.after.nomenclature, int(np.flatnonzero(self._lut_a == 0)[-1]))
            # CRSs as describe() normalised them: a FLAIR-1 mask's LOCAL_CS cannot be warped to or from
            self._a = WarpedVRT(self._a_ds, src_crs=raster.warp_crs(self._a_ds), crs=self.alignment.crs,
                                transform=self._b.transform, width=self._b.width,
                                height=self._b.height, resampling=Resampling.nearest, nodata=fill,
                                src_nodata=self._a_ds.nodata if self._a_ds.nodata is not None else None)
            self._lut_a[fill] = 0
        else:
            self._a = self._a_ds
        # raw (before << 8 | after) pair -> class pair code b * N + a: one lookup per histogram bin
        self.pair_lut = (self._lut_b.astype(np.uint16)[:, None] * N + self._lut_a[None, :]).ravel()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alignment.resampled:
            self._a.close()
        self._a_ds.close()
        self._b.close()

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """(before, after) raw pixel values for one block of the before grid."""
        b = self._read(self._b, self.before, win)
        if self.alignment.resampled:
            a = self._read(self._a, self.after, win)
        else:
            dc = self.alignment.after_offset[0] - int(self.alignment.window.col_off)
            dr = self.alignment.after_offset[1] - int(self.alignment.window.row_off)
            a = self._read(self._a, self.after, Window(win.col_off + dc, win.row_off + dr, win.width, win.height))
        return b, a

    @staticmethod
    def _read(ds, src: ClassSource, win: Window) -> np.ndarray:
        """One block of one date; a failure names that file (GDAL's own message rarely does)."""
        try:
            return ds.read(1, window=win)
        except rasterio.errors.RasterioIOError as exc:
            raise UnreadableRaster(f"Cannot read the pixels of {src.name} ({Path(src.path).name}) near row "
                                   f"{int(win.row_off)}: {first_line(exc)}",
                                   "the file is probably truncated or corrupt; re-export it") from None

    def classes(self, b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw values -> FLAIR-1 codes 0..19."""
        return self._lut_b[b], self._lut_a[a]
