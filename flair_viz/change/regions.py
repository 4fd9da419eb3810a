"""Regions to break a change down by: polygons (communes, parcels) from a GeoPackage or GeoJSON.

Each pixel counts in at most one region (where polygons overlap, the later one wins) and pixels in
none count in an "outside every region" row, so the region rows always sum to the whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
from rasterio.windows import Window

from flair_viz.core.errors import InvalidInput, NotFound, Unreadable, first_line

NAME_FIELDS = ("name", "nom", "NOM", "NOM_COM", "nom_com", "libelle", "id", "insee_com", "INSEE_COM", "code")


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
        raise NotFound(f"Region file not found: {p}", fix)
    try:
        gdf = gpd.read_file(p)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise Unreadable(f"Cannot read regions from {p.name}: {first_line(exc)}", fix) from None
    if name_field is None:
        name_field = next((c for c in NAME_FIELDS if c in gdf.columns), None)
    if name_field is not None and name_field not in gdf.columns:
        raise InvalidInput(f"Region file {p.name} has no column {name_field!r}",
                           f"use one of {', '.join(c for c in gdf.columns if c != gdf.geometry.name)}")
    if gdf.empty:
        raise InvalidInput(f"Region file {p.name} holds no geometries", fix)
    names = [str(v) for v in gdf[name_field]] if name_field else [f"region {i + 1}" for i in range(len(gdf))]
    gdf, notes = _repair(gdf, names, p.name)
    if gdf.crs is None:
        raise InvalidInput(f"Region file {p.name} has no CRS", "save it with its CRS (e.g. EPSG:2154 or EPSG:4326)")
    if not gdf.crs.equals(crs):
        notes.append(f"regions reprojected from {gdf.crs.to_string()} to the raster CRS")
        gdf = gdf.to_crs(crs)
    return Regions(names=tuple(names), geometries=tuple(gdf.geometry), source=str(p), name_field=name_field,
                   notes=tuple(notes))


def _names(names: list[str], which: Any) -> str:
    picked = [names[i] for i in range(len(names)) if which[i]]
    return ", ".join(picked[:10]) + (f" and {len(picked) - 10} more" if len(picked) > 10 else "")


def _repair(gdf: Any, names: list[str], file_name: str) -> tuple[Any, list[str]]:
    """Invalid polygons repaired with ``make_valid`` (their polygonal part) and reported by name; empty,
    missing or non-polygon geometries refused by name: a region is never dropped silently."""
    import shapely

    geoms = gdf.geometry.array
    missing = gdf.geometry.isna().to_numpy() | gdf.geometry.is_empty.to_numpy()
    if missing.any():
        raise InvalidInput(f"Region file {file_name}: regions {_names(names, missing)} have no geometry",
                           "draw their polygons or delete those rows, then export the layer again")
    invalid = ~gdf.geometry.is_valid.to_numpy()
    notes: list[str] = []
    if invalid.any():
        fixed = [shapely.make_valid(g) if bad else g for g, bad in zip(geoms, invalid)]
        # make_valid may return a collection with lines or points beside the polygons: keep the area only
        fixed = [_polygonal(g) for g in fixed]
        lost = [g is None for g in fixed]
        if any(lost):
            raise InvalidInput(f"Region file {file_name}: regions {_names(names, lost)} have invalid geometries with "
                               "no area left once repaired", "fix or redraw those polygons (QGIS: Fix geometries)")
        gdf = gdf.set_geometry(fixed, crs=gdf.crs)
        notes.append(f"repaired {int(invalid.sum())} invalid region geometries with make_valid: "
                     f"{_names(names, invalid)}")
    if not gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        bad = (~gdf.geom_type.isin(["Polygon", "MultiPolygon"])).to_numpy()
        raise InvalidInput(f"Region file {file_name}: regions {_names(names, bad)} are "
                           f"{sorted(set(gdf.geom_type[bad]))}, not polygons",
                           "give a GeoPackage (.gpkg) or GeoJSON of polygons (e.g. communes) with a CRS")
    return gdf, notes


def _polygonal(g: Any) -> Any:
    """The polygonal part of a geometry (None when it has no area)."""
    import shapely

    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g if not g.is_empty else None
    parts = [p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    return shapely.union_all(parts) if parts else None


def rasterize_regions(regions: Regions, win: Window, transform: rasterio.Affine) -> np.ndarray:
    """Region index (1..n, 0 outside) per pixel; where polygons overlap the later one wins, so each
    pixel counts once and the region totals add up to the whole."""
    wt = rasterio.windows.transform(win, transform)
    shape = (int(win.height), int(win.width))
    return rasterio.features.rasterize(((g, i + 1) for i, g in enumerate(regions.geometries)), out_shape=shape,
                                       transform=wt, fill=0, dtype="uint32")
