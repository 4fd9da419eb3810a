"""The FLAIR patch grid that candidates and selections live on.

FLAIR patches are 512 px at 0.2 m = 102.4 m. A scene's grid starts at its upper-left corner (its
origin) and each pixel belongs to the cell that holds its centre, so rasters of any resolution
share the same metric grid. A finer grid (``cell_m = 102.4 / n``) gives several candidates per
patch; selections are always snapped back to the 102.4 m grid (:func:`snap`), because annotators
label whole patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rasterio
import shapely
from rasterio.crs import CRS

from flair_viz.core.errors import AlignmentError, InvalidInput, Mismatch

FLAIR_PATCH_PX = 512
FLAIR_RES_M = 0.2
FLAIR_CELL_M = FLAIR_PATCH_PX * FLAIR_RES_M  # 102.4 m
SUB_GRIDS_PX: tuple[int, ...] = (512, 256, 128, 64)  # cell sizes in 0.2 m pixels that nest in a FLAIR patch


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
            raise InvalidInput(f"Grid cell size must be positive, got {cell_m}", "use 102.4 m (FLAIR) or 102.4/n")
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


def cell_m_for(cell_px: int) -> float:
    """Cell size in metres of a sub-grid given in 0.2 m pixels; only sizes that nest in a FLAIR patch."""
    if cell_px not in SUB_GRIDS_PX:
        raise InvalidInput(f"A cell of {cell_px} px is not a FLAIR sub-grid",
                           "use 512 (the FLAIR patch), or 256, 128 or 64 for finer candidates")
    return cell_px * FLAIR_RES_M


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
        raise Mismatch("The region does not overlap the scene's grid", "draw the region over the scene's image")
    return shapely.union_all([flair.polygon(r, c) for r, c in cells]).simplify(0).normalize()
