"""Land-cover change between two vintages: from-to matrix in hectares, ZAN flows, region breakdown.

ZAN reporting asks "how many hectares of natural, agricultural or forest land became artificial?".
That figure must come from the rasters' own pixel area (never an assumed 0.2 m), from pixels that
really overlap, and with the class grouping written down, because people argue about it. So:

* the earlier raster's grid is the reference; the later one is used as is when it shares that grid,
  and otherwise resampled onto it with nearest neighbour (classes must not be averaged), which
  the result reports;
* only the intersection of both extents is counted, and it is reported in m² and ha;
* both rasters stream block by block, so an 8k × 8k pair never sits in memory;
* the grouping comes from a TOML file (default: ``flair_viz/zan_grouping.toml``) whose path and
  text travel with every result.

The change raster written on request is uint8 and holds the *after* FLAIR-1 class (1..19) where the
class changed and 0 (nodata) where it did not or where either date has no data.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from flair_viz.core import atomic, classes, raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.config import user_data_dir
from flair_viz.core.errors import (
    AlignmentError,
    CatalogError,
    FlairVizError,
    RasterError,
)
from flair_viz.web.urls import tile_url

DEFAULT_GROUPING_PATH = Path(__file__).with_name("zan_grouping.toml")
GROUPS = ("artificial", "natural", "neutral")
N = classes.N_CLASSES + 1  # class codes 0..19, 0 = nodata
M2_PER_HA = 10_000.0
NODATA_CODE = {"flair1": 0, "flairhub": 255}  # the "no class" value of each nomenclature
DEFAULT_BLOCK = 2048

# Flow groups of the change layer, coloured as the issue asks (RGBA).
FLOW_ARTIFICIALISATION = 1
FLOW_DEARTIFICIALISATION = 2
FLOW_OTHER = 3
FLOW_COLORS: dict[int, tuple[int, int, int, int]] = {
    FLOW_ARTIFICIALISATION: (228, 26, 28, 255),  # red
    FLOW_DEARTIFICIALISATION: (46, 160, 67, 255),  # green
    FLOW_OTHER: (150, 150, 150, 255),  # grey
}
FLOW_NAMES = {FLOW_ARTIFICIALISATION: "artificialisation", FLOW_DEARTIFICIALISATION: "de-artificialisation",
              FLOW_OTHER: "other change"}


# -- grouping --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZanGrouping:
    """Which FLAIR-1 class keys are artificial, natural or neutral, and the file that said so."""

    groups: dict[str, tuple[str, ...]]
    source: str
    text: str

    def group_of(self) -> dict[int, str]:
        """FLAIR-1 value -> group name."""
        return {classes.BY_KEY[k].value: g for g, keys in self.groups.items() for k in keys}

    def flow_matrix(self) -> np.ndarray:
        """(N, N) flow code for each (before, after) class pair; 0 for unchanged or nodata."""
        grp = self.group_of()
        flows = np.zeros((N, N), dtype=np.uint8)
        for b in range(1, N):
            for a in range(1, N):
                if a == b:
                    continue
                if grp[b] == "natural" and grp[a] == "artificial":
                    flows[b, a] = FLOW_ARTIFICIALISATION
                elif grp[b] == "artificial" and grp[a] == "natural":
                    flows[b, a] = FLOW_DEARTIFICIALISATION
                else:
                    flows[b, a] = FLOW_OTHER
        return flows

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "groups": {g: list(k) for g, k in self.groups.items()}, "content": self.text}


def load_grouping(path: str | os.PathLike[str] | None = None) -> ZanGrouping:
    """Read a grouping TOML; every class must land in exactly one group, or the error lists which."""
    p = Path(path) if path else DEFAULT_GROUPING_PATH
    fix = f"copy {DEFAULT_GROUPING_PATH} and edit it: [groups] with lists artificial, natural, neutral of class keys"
    if not p.is_file():
        raise FlairVizError(f"Grouping file not found: {p}", fix)
    text = p.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FlairVizError(f"Grouping file {p.name} is not valid TOML: {exc}", fix) from None
    raw = doc.get("groups")
    if not isinstance(raw, dict) or not raw:
        raise FlairVizError(f"Grouping file {p.name} has no [groups] table", fix)
    unknown_groups = set(raw) - set(GROUPS)
    if unknown_groups:
        raise FlairVizError(f"Grouping file {p.name} has unknown groups {sorted(unknown_groups)}",
                            f"use only {', '.join(GROUPS)}")
    seen: dict[str, str] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for g, keys in raw.items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise FlairVizError(f"Grouping file {p.name}: group {g!r} must be a list of class keys", fix)
        bad = [k for k in keys if k not in classes.BY_KEY]
        if bad:
            raise FlairVizError(f"Grouping file {p.name}: unknown class keys {bad} in {g!r}",
                                f"use keys from the class table: {', '.join(classes.BY_KEY)}")
        dup = [k for k in keys if k in seen]
        if dup:
            raise FlairVizError(f"Grouping file {p.name}: {dup} appear in more than one group", "list each class once")
        seen.update({k: g for k in keys})
        groups[g] = tuple(keys)
    rest = tuple(k for k in classes.BY_KEY if k not in seen)
    missing_groups = [g for g in GROUPS if g not in groups]
    if rest and len(missing_groups) == 1:
        groups[missing_groups[0]] = rest
    elif rest:
        raise FlairVizError(f"Grouping file {p.name} leaves classes {list(rest)} in no group", fix)
    for g in GROUPS:
        groups.setdefault(g, ())
    return ZanGrouping(groups={g: groups[g] for g in GROUPS}, source=str(p), text=text)


# -- inputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassSource:
    """A class raster to compare: a catalog dataset or a plain file, with its nomenclature."""

    path: Path
    nomenclature: str = "flair1"
    dataset_id: str | None = None
    vintage: str | None = None
    simulated: bool = False
    title: str = ""

    @property
    def name(self) -> str:
        return self.dataset_id or self.path.name

    def as_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "path": str(self.path), "nomenclature": self.nomenclature,
                "vintage": self.vintage, "simulated": self.simulated, "title": self.title}


def source_from_dataset(ds: Dataset) -> ClassSource:
    if not ds.is_class_raster or ds.role == "change":
        raise FlairVizError(f"Dataset {ds.id} has role {ds.role!r}; a change needs class rasters (role truth or prediction)",
                            "pick a ground truth (MSK_...) or a prediction for both dates")
    return ClassSource(path=ds.path, nomenclature=ds.nomenclature, dataset_id=ds.id, vintage=ds.vintage,
                       simulated=ds.simulated, title=ds.title)


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
        if nomenclature not in classes.NOMENCLATURES:
            raise FlairVizError(f"Unknown nomenclature {nomenclature!r}", f"use one of {', '.join(classes.NOMENCLATURES)}")
        return ClassSource(path=p.resolve(), nomenclature=nomenclature)
    raise CatalogError(f"{ref!s} is neither a catalog dataset ID nor an existing file",
                       "give a catalog ID (see `flair-viz catalog list`) or the path of a class raster")


# -- alignment -------------------------------------------------------------------------------------
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


def _same_grid(a: raster.RasterInfo, b: raster.RasterInfo) -> tuple[int, int] | None:
    """Integer (col, row) offset of b's grid in a's, when both share CRS, resolution and pixel phase."""
    if a.crs != b.crs:
        return None
    ta, tb = a.transform, b.transform
    if abs(ta.b) > 1e-12 or abs(ta.d) > 1e-12 or abs(tb.b) > 1e-12 or abs(tb.d) > 1e-12:
        return None
    if not (math.isclose(ta.a, tb.a, rel_tol=1e-6) and math.isclose(ta.e, tb.e, rel_tol=1e-6)):
        return None
    dc, dr = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
    if abs(dc - round(dc)) > 1e-3 or abs(dr - round(dr)) > 1e-3:
        return None
    return round(dc), round(dr)


def align(before: ClassSource, after: ClassSource) -> Alignment:
    """Work out the common grid (the before raster's) and the overlap window, or say why there is none."""
    bi, ai = raster.describe(before.path), raster.describe(after.path)
    for src, info in ((before, bi), (after, ai)):
        if info.count != 1:
            raise RasterError(f"{src.name} has {info.count} bands; a class raster has exactly 1",
                              "give single-band class rasters (ground truth MSK_* or a prediction)")
        if info.dtype != "uint8":
            raise RasterError(f"{src.name} is {info.dtype}; class rasters are uint8 (FLAIR-1 values 1..19)",
                              "convert it to uint8 class values, e.g. gdal_translate -ot Byte")
        if info.crs is None:
            raise AlignmentError(f"{src.name} has no CRS, so it cannot be placed against the other date",
                                 "georeference it (FLAIR uses EPSG:2154), e.g. with gdal_translate -a_srs -a_ullr")
    notes: list[str] = []
    if before.vintage and after.vintage and after.vintage < before.vintage:
        notes.append(f"the 'after' raster ({after.vintage}) is older than the 'before' one ({before.vintage}); "
                     "flows are reported in the order given")
    if ai.crs == bi.crs:
        a_bounds = ai.bounds
    else:
        a_bounds = rasterio.warp.transform_bounds(ai.crs, bi.crs, *ai.bounds, densify_pts=21)
    left, bottom = max(bi.bounds[0], a_bounds[0]), max(bi.bounds[1], a_bounds[1])
    right, top = min(bi.bounds[2], a_bounds[2]), min(bi.bounds[3], a_bounds[3])
    crs_name = (lambda c: f"EPSG:{c.to_epsg()}" if c.to_epsg() else c.to_string()[:60])
    no_overlap = AlignmentError(
        f"{before.name} and {after.name} do not overlap: {before.name} covers {_fmt_bounds(bi.bounds)} "
        f"in {crs_name(bi.crs)}, {after.name} covers {_fmt_bounds(ai.bounds)} in {crs_name(ai.crs)}"
        + ("" if ai.crs == bi.crs else f" = {_fmt_bounds(a_bounds)} in {crs_name(bi.crs)}"),
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
    offset = _same_grid(bi, ai)
    if offset is None:
        why = (f"CRS {crs_name(ai.crs)} differs from {crs_name(bi.crs)}" if ai.crs != bi.crs else
               f"resolution {ai.res[0]:.4g} m differs from {bi.res[0]:.4g} m"
               if not math.isclose(ai.res[0], bi.res[0], rel_tol=1e-6) else "pixel grids are shifted")
        notes.append(f"{after.name} was resampled onto the grid of {before.name} "
                     f"({crs_name(bi.crs)}, {bi.res[0]:.4g} m) with nearest neighbour: {why}")
    if partial:
        ha = (c1 - c0) * (r1 - r0) * bi.pixel_area_m2 / M2_PER_HA
        notes.append(f"partial overlap: computed on the intersection {_fmt_bounds(rasterio.windows.bounds(window, bi.transform))}"
                     f" ({ha:.4f} ha); {before.name} covers {_fmt_bounds(bi.bounds)}, {after.name} covers "
                     f"{_fmt_bounds(a_bounds)}")
    after_offset = None if offset is None else (c0 - offset[0], r0 - offset[1])
    return Alignment(crs=bi.crs, transform=bi.transform, window=window, after_offset=after_offset,
                     resampled=offset is None, partial=partial, notes=tuple(notes))


def _value_lut(src: ClassSource, declared_nodata: float | None) -> np.ndarray:
    """Raw pixel value -> FLAIR-1 code 0..19 (0 for nodata and for values outside the nomenclature)."""
    if src.nomenclature == "flair1":
        lut = np.zeros(256, dtype=np.uint8)
        lut[1:N] = np.arange(1, N, dtype=np.uint8)
    elif src.nomenclature == "flairhub":
        lut = classes.flairhub_to_flair1_lut()
    else:
        raise FlairVizError(f"{src.name}: unknown nomenclature {src.nomenclature!r}",
                            f"use one of {', '.join(classes.NOMENCLATURES)}")
    if declared_nodata is not None and float(declared_nodata).is_integer() and 0 <= declared_nodata < 256:
        lut[int(declared_nodata)] = 0
    return lut


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
        self._lut_b = _value_lut(self.before, self._b.nodata)
        self._lut_a = _value_lut(self.after, self._a_ds.nodata)
        if self.alignment.resampled:
            fill = NODATA_CODE[self.after.nomenclature]
            self._a = WarpedVRT(self._a_ds, crs=self._b.crs, transform=self._b.transform, width=self._b.width,
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
            raise RasterError(f"Cannot read the pixels of {src.name} ({Path(src.path).name}) near row "
                              f"{int(win.row_off)}: {str(exc).splitlines()[0][:160]}",
                              "the file is probably truncated or corrupt; re-export it") from None

    def classes(self, b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw values -> FLAIR-1 codes 0..19."""
        return self._lut_b[b], self._lut_a[a]


# -- regions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Regions:
    """Polygons to break the change down by, already in the raster's CRS; index i+1 = row i."""

    names: tuple[str, ...]
    geometries: tuple[Any, ...]
    source: str
    name_field: str | None
    notes: tuple[str, ...] = ()


def load_regions(path: str | os.PathLike[str], crs: Any, name_field: str | None = None) -> Regions:
    """Read a GeoPackage/GeoJSON polygon layer with geopandas and reproject it to ``crs`` if needed."""
    import geopandas as gpd

    p = Path(path)
    fix = "give a GeoPackage (.gpkg) or GeoJSON of polygons (e.g. communes) with a CRS"
    if not p.is_file():
        raise FlairVizError(f"Region file not found: {p}", fix)
    try:
        gdf = gpd.read_file(p)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise FlairVizError(f"Cannot read regions from {p.name}: {str(exc).splitlines()[0][:160]}", fix) from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise FlairVizError(f"Region file {p.name} holds no geometries", fix)
    if not gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise FlairVizError(f"Region file {p.name} holds {sorted(set(gdf.geom_type))}; regions must be polygons", fix)
    if gdf.crs is None:
        raise FlairVizError(f"Region file {p.name} has no CRS", "save it with its CRS (e.g. EPSG:2154 or EPSG:4326)")
    notes = []
    if not gdf.crs.equals(crs):
        notes.append(f"regions reprojected from {gdf.crs.to_string()} to the raster CRS")
        gdf = gdf.to_crs(crs)
    if name_field is None:
        for cand in ("name", "nom", "NOM", "NOM_COM", "nom_com", "libelle", "id", "insee_com", "INSEE_COM", "code"):
            if cand in gdf.columns:
                name_field = cand
                break
    if name_field is not None and name_field not in gdf.columns:
        raise FlairVizError(f"Region file {p.name} has no column {name_field!r}",
                            f"use one of {', '.join(c for c in gdf.columns if c != gdf.geometry.name)}")
    names = [str(v) for v in gdf[name_field]] if name_field else [f"region {i + 1}" for i in range(len(gdf))]
    return Regions(names=tuple(names), geometries=tuple(gdf.geometry), source=str(p), name_field=name_field,
                   notes=tuple(notes))


def _rasterize_regions(regions: Regions, win: Window, transform: rasterio.Affine) -> np.ndarray:
    """Region index (1..n, 0 outside) per pixel; where polygons overlap the later one wins, so each
    pixel counts once and the region totals add up to the whole."""
    wt = rasterio.windows.transform(win, transform)
    shape = (int(win.height), int(win.width))
    return rasterio.features.rasterize(((g, i + 1) for i, g in enumerate(regions.geometries)), out_shape=shape,
                                       transform=wt, fill=0, dtype="uint32")


# -- result ----------------------------------------------------------------------------------------
@dataclass
class ChangeResult:
    """Pixel counts of every (before, after) class pair, and what is needed to read them in hectares."""

    counts: np.ndarray  # (N, N) int64, index 0 = nodata
    before: ClassSource
    after: ClassSource
    alignment: Alignment
    grouping: ZanGrouping
    regions: Regions | None = None
    region_counts: np.ndarray | None = None  # (n_regions + 1, N, N); row 0 = outside every region
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def ha_per_pixel(self) -> float:
        return self.alignment.pixel_area_m2 / M2_PER_HA

    @property
    def simulated(self) -> bool:
        return self.before.simulated or self.after.simulated

    def from_to_ha(self) -> np.ndarray:
        """19 × 19 hectares, rows = before class (value 1..19), columns = after class."""
        return self.counts[1:, 1:] * self.ha_per_pixel

    def totals_before_ha(self) -> np.ndarray:
        return self.from_to_ha().sum(axis=1)

    def totals_after_ha(self) -> np.ndarray:
        return self.from_to_ha().sum(axis=0)

    def net_change_ha(self) -> np.ndarray:
        return self.totals_after_ha() - self.totals_before_ha()

    def valid_area_ha(self) -> float:
        return float(self.counts[1:, 1:].sum() * self.ha_per_pixel)

    def changed_area_ha(self) -> float:
        c = self.counts[1:, 1:]
        return float((c.sum() - np.trace(c)) * self.ha_per_pixel)

    def zan(self) -> dict[str, float]:
        return zan_flows(self.counts, self.grouping, self.ha_per_pixel)

    def region_table(self) -> list[dict[str, Any]]:
        """One row per region plus an "outside every region" row, so the rows sum to the total."""
        if self.regions is None or self.region_counts is None:
            return []
        rows = []
        names = ("(outside every region)",) + self.regions.names
        for i, name in enumerate(names):
            c = self.region_counts[i]
            z = zan_flows(c, self.grouping, self.ha_per_pixel)
            valid = c[1:, 1:]
            rows.append({"region": i, "name": name, "area_ha": float(valid.sum() * self.ha_per_pixel),
                         "changed_ha": float((valid.sum() - np.trace(valid)) * self.ha_per_pixel), **z})
        return rows[1:] + rows[:1]

    def top_flows(self, n: int = 12) -> list[tuple[int, int, float]]:
        """The ``n`` largest class changes as (before value, after value, ha), largest first."""
        m = self.from_to_ha()
        off = [(i + 1, j + 1, float(m[i, j])) for i, j in zip(*np.nonzero(m)) if i != j]
        return sorted(off, key=lambda f: -f[2])[:n]

    def summary(self) -> dict[str, Any]:
        names = [c.name for c in classes.FLAIR1_CLASSES]
        al = self.alignment
        crs = f"EPSG:{al.crs.to_epsg()}" if al.crs.to_epsg() else al.crs.to_wkt()
        return {
            "before": self.before.as_dict(), "after": self.after.as_dict(), "simulated": self.simulated,
            "grid": {"crs": crs, "resolution_m": [abs(al.transform.a), abs(al.transform.e)],
                     "pixel_area_m2": al.pixel_area_m2, "overlap_bounds": list(al.overlap_bounds),
                     "width": int(al.window.width), "height": int(al.window.height)},
            "alignment": {"resampled": al.resampled, "partial_overlap": al.partial,
                          "notes": list(al.notes) + (list(self.regions.notes) if self.regions else [])},
            "overlap_area_m2": al.overlap_area_m2, "overlap_area_ha": al.overlap_area_m2 / M2_PER_HA,
            "valid_area_ha": self.valid_area_ha(),
            "nodata_area_ha": al.overlap_area_m2 / M2_PER_HA - self.valid_area_ha(),
            "changed_area_ha": self.changed_area_ha(),
            "zan": self.zan(),
            "totals_before_ha": dict(zip(names, self.totals_before_ha().tolist())),
            "totals_after_ha": dict(zip(names, self.totals_after_ha().tolist())),
            "net_change_ha": dict(zip(names, self.net_change_ha().tolist())),
            "grouping": self.grouping.as_dict(),
            "change_raster_encoding": "uint8: the after FLAIR-1 class (1..19) where the class changed; "
                                      "0 (nodata) where unchanged or where either date has no data",
            "outputs": self.outputs,
        }


def zan_flows(counts: np.ndarray, grouping: ZanGrouping, ha_per_pixel: float) -> dict[str, float]:
    """Hectares natural -> artificial, artificial -> natural, and their difference."""
    flows = grouping.flow_matrix()
    art = float(counts[flows == FLOW_ARTIFICIALISATION].sum() * ha_per_pixel)
    deart = float(counts[flows == FLOW_DEARTIFICIALISATION].sum() * ha_per_pixel)
    return {"artificialisation_ha": art, "deartificialisation_ha": deart, "net_artificialisation_ha": art - deart}


def change_codes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The change raster's values: the after class where the class changed, 0 elsewhere."""
    return np.where((before != after) & (before > 0) & (after > 0), after, 0).astype(np.uint8)


def compute_change(before: str | os.PathLike[str] | Dataset | ClassSource,
                   after: str | os.PathLike[str] | Dataset | ClassSource, *, catalog: Catalog | None = None,
                   grouping: ZanGrouping | str | os.PathLike[str] | None = None,
                   regions: str | os.PathLike[str] | Regions | None = None, region_name_field: str | None = None,
                   change_cog: str | os.PathLike[str] | None = None, block_size: int = DEFAULT_BLOCK,
                   nomenclature: str = "flair1") -> ChangeResult:
    """Count every (before, after) class pair over the overlap, block by block.

    ``change_cog``, when given, is written (atomically) in the same pass, so the counts and the map
    always come from the very same pixels.
    """
    b_src, a_src = resolve(before, catalog, nomenclature), resolve(after, catalog, nomenclature)
    grp = grouping if isinstance(grouping, ZanGrouping) else load_grouping(grouping)
    al = align(b_src, a_src)
    regs = regions if isinstance(regions, Regions) or regions is None else \
        load_regions(regions, al.crs, region_name_field)
    n_reg = len(regs.names) + 1 if regs else 0
    raw_counts = np.zeros(256 * 256, dtype=np.int64)
    reg_counts = np.zeros(n_reg * N * N, dtype=np.int64) if regs else None
    with PairReader(b_src, a_src, al) as pair, _ChangeWriter(change_cog, al) as writer:
        for win in iter_windows(al.window, block_size):
            b_raw, a_raw = pair.read(win)
            # histogram the raw value pairs first, map them to classes after: 256² bins are few,
            # and this skips two per-pixel lookups (about 4x faster than converting every pixel)
            pair_idx = (b_raw.astype(np.uint16) << 8) | a_raw
            raw_counts += np.bincount(pair_idx.ravel(), minlength=256 * 256)
            if regs:
                region = _rasterize_regions(regs, win, al.transform).astype(np.int64)
                idx = region * (N * N) + pair.pair_lut[pair_idx]
                reg_counts += np.bincount(idx.ravel(), minlength=n_reg * N * N)
            if writer.final is not None:
                writer.write(win, change_codes(*pair.classes(b_raw, a_raw)))
        counts = np.zeros(N * N, dtype=np.int64)
        np.add.at(counts, pair.pair_lut, raw_counts)
    res = ChangeResult(counts=counts.reshape(N, N), before=b_src, after=a_src, alignment=al, grouping=grp,
                       regions=regs, region_counts=reg_counts.reshape(n_reg, N, N) if regs else None)
    if change_cog:
        res.outputs["change_cog"] = str(change_cog)
    return res


class _ChangeWriter:
    """Writes change blocks to a hidden tiled GeoTIFF, then copies it to a COG under its final name atomically.

    GDAL's COG driver can only copy a finished raster, hence the intermediate file; it is removed
    whatever happens, and the final name only ever holds a complete COG.
    """

    def __init__(self, final: str | os.PathLike[str] | None, al: Alignment) -> None:
        self.final = Path(final) if final else None
        self.al = al

    def __enter__(self) -> _ChangeWriter:
        if self.final is None:
            return self
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=".blocks.tif", dir=self.final.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        w = self.al.window
        self._ds = rasterio.open(self._tmp, "w", driver="GTiff", width=int(w.width), height=int(w.height), count=1,
                                 dtype="uint8", crs=self.al.crs, nodata=0, tiled=True, blockxsize=512,
                                 blockysize=512, compress="deflate",
                                 transform=rasterio.windows.transform(w, self.al.transform))
        self._ds.write_colormap(1, classes.colormap())  # must precede pixel writes in GeoTIFF
        return self

    def write(self, win: Window, data: np.ndarray) -> None:
        if self.final is None:
            return
        w = self.al.window
        self._ds.write(data, 1, window=Window(win.col_off - w.col_off, win.row_off - w.row_off, win.width, win.height))

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if self.final is None:
            return
        try:
            self._ds.close()
            if exc_type is None:
                with atomic.atomic_path(self.final) as out:
                    rasterio.shutil.copy(self._tmp, out, driver="COG", compress="deflate", blocksize=512,
                                         overview_resampling="nearest", resampling="nearest")
        finally:
            self._tmp.unlink(missing_ok=True)
            for side in self._tmp.parent.glob(self._tmp.name + ".*"):
                side.unlink(missing_ok=True)


# -- pairs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """Two class rasters of the same place at two dates, as the Change page offers them."""

    before: Dataset
    after: Dataset
    change: Dataset | None = None  # a registered change COG of this pair, if any

    @property
    def simulated(self) -> bool:
        return self.before.simulated or self.after.simulated or bool(self.change and self.change.simulated)

    @property
    def label(self) -> str:
        when = f"{self.before.vintage or '?'} → {self.after.vintage or '?'}"
        place = " ".join(x for x in (self.before.domain, self.before.zone, self.before.patch) if x)
        return f"{'SIMULATED · ' if self.simulated else ''}{place} · {when} · {self.before.id} → {self.after.id}"


def list_pairs(catalog: Catalog) -> list[Pair]:
    """Registered change pairs first (``role = "change"`` with ``extra.before``/``extra.after``), then
    every two class rasters of the same patch with different vintages, earlier first."""
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for ds in catalog.by_role("change"):
        b_id, a_id = ds.extra.get("before"), ds.extra.get("after")
        if b_id in catalog and a_id in catalog and (b_id, a_id) not in seen:
            pairs.append(Pair(catalog.get(b_id), catalog.get(a_id), ds))
            seen.add((b_id, a_id))
    by_patch: dict[str, list[Dataset]] = {}
    for ds in catalog:
        if ds.role in ("truth", "prediction") and ds.patch and ds.vintage:
            by_patch.setdefault(ds.patch, []).append(ds)
    for group in by_patch.values():
        group.sort(key=lambda d: (d.vintage or "", d.id))
        for i, b in enumerate(group):
            for a in group[i + 1:]:
                if a.vintage != b.vintage and (b.id, a.id) not in seen:
                    pairs.append(Pair(b, a))
                    seen.add((b.id, a.id))
    return pairs


def store_upload(data: bytes, filename: str, kind: str) -> Path:
    """Keep an uploaded grouping or region file under the user data folder, named by its content
    hash so re-uploading the same file reuses it and nothing is overwritten in place."""
    suffix = "".join(Path(filename).suffixes[-1:]).lower()
    if kind == "regions" and suffix not in (".gpkg", ".geojson", ".json"):
        raise FlairVizError(f"{filename}: region files must be GeoPackage (.gpkg) or GeoJSON (.geojson)",
                            "export the polygon layer to one of these formats")
    if kind == "grouping" and suffix != ".toml":
        raise FlairVizError(f"{filename}: a grouping is a .toml file", f"start from {DEFAULT_GROUPING_PATH}")
    path = user_data_dir() / "change" / kind / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        atomic.write_bytes(path, data)
    return path


def class_rasters(catalog: Catalog) -> list[Dataset]:
    """Datasets a change can be computed on (ground truths and predictions)."""
    return [d for d in catalog if d.role in ("truth", "prediction")]


# -- map helpers (no web framework needed, so pages import them cheaply) -----------------------
def change_tile_url(before_id: str, after_id: str, mode: str = "flow", base_url: str | None = None) -> str:
    """Leaflet URL template of the change layer of a pair (served by ``flair_viz.change_tiles``)."""
    return tile_url(f"/change/{before_id}/{after_id}", base_url, mode=mode)


def flow_legend_html() -> str:
    """Legend of the flow mode, in the colours the tiles use."""
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.4">'
        f'<span style="display:inline-block;width:14px;height:14px;background:rgb{FLOW_COLORS[k][:3]};'
        f'border:1px solid #888"></span>{name}</div>' for k, name in FLOW_NAMES.items())
    return f'<div class="flair-legend">{rows}</div>'


# -- tiles -----------------------------------------------------------------------------------------
def colour_change(before: np.ndarray, after: np.ndarray, mode: str, grouping: ZanGrouping) -> np.ndarray:
    """(H, W, 4) RGBA for the change layer: changed pixels by new class or by flow group, rest transparent."""
    if mode == "class":
        return classes.palette_rgba()[change_codes(before, after)]
    if mode == "flow":
        pal = np.zeros((4, 4), dtype=np.uint8)
        for k, rgba in FLOW_COLORS.items():
            pal[k] = rgba
        return pal[grouping.flow_matrix()[before, after]]
    raise FlairVizError(f"Unknown change mode {mode!r}", "use mode=class (new class) or mode=flow (ZAN flow group)")
