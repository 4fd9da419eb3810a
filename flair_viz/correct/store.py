"""Corrections painted on the map, kept in a GeoPackage layer ``corrections`` that survives restarts.

One row per shape: an EPSG:2154 polygon, the FLAIR-1 class (1..19) the analyst says it is, the
image it was painted on (``dataset_id``), the model whose mistake it corrects (``model_id``), when
(``created``) and a ``note``. Brush strokes (lines) are stored as the polygon the brush covered.

Writes use the selections' machinery (:mod:`flair_viz.core.geotable`): the whole layer is rewritten into a
temporary GeoPackage and renamed over (``write_table``, atomic), under the one file lock,
so two tabs or the CLI never lose each other's changes and a crash never leaves half a file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
import shapely.geometry
from pyogrio.errors import DataLayerError, DataSourceError

from flair_viz.core import classes, config
from flair_viz.core.errors import InvalidInput, NotFound, Unreadable, first_line
from flair_viz.core.geotable import CRS, now, table_edits, write_table
from flair_viz.core.locks import locked

LAYER = "corrections"
TEXT_COLUMNS: tuple[str, ...] = ("id", "dataset_id", "model_id", "created", "note")
COLUMNS: tuple[str, ...] = ("id", "class", "dataset_id", "model_id", "created", "note")
DEFAULT_BRUSH_M = 1.0  # a brush stroke covers this many metres either side of the line (10 px at 0.2 m)


def default_path() -> Path:
    """``$FLAIR_VIZ_CORRECTIONS`` or ``corrections.gpkg`` in the user data folder."""
    return config.settings().corrections or config.user_data_dir() / "corrections.gpkg"


def empty() -> gpd.GeoDataFrame:
    data = {c: pd.Series(dtype="str") for c in TEXT_COLUMNS}
    data["class"] = pd.Series(dtype="int64")
    return gpd.GeoDataFrame({c: data[c] for c in COLUMNS}, geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)


def check_class(value: object, what: str = "a correction") -> int:
    """A FLAIR-1 class value 1..19, or an InvalidInput that lists the classes."""
    try:
        v = int(value)  # type: ignore[arg-type]
        ok = float(value) == v  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok, v = False, -1
    if not ok or not 1 <= v <= classes.N_CLASSES:
        raise InvalidInput(f"{what}: class {value!r} is not a FLAIR-1 class (1..{classes.N_CLASSES})",
                           "pick a class from the palette: " + ", ".join(f"{c.value} {c.name}"
                                                                        for c in classes.FLAIR1_CLASSES))
    return v


def normalise(frame: gpd.GeoDataFrame, what: str = "corrections") -> gpd.GeoDataFrame:
    """Coerce a frame to the corrections schema, refusing rows a fine-tune could not use."""
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame:
        raise InvalidInput(f"{what} has no geometry", "give the corrections GeoPackage written by FLAIR Viz")
    gdf = frame.copy()
    gdf = gdf.set_crs(CRS) if gdf.crs is None else gdf.to_crs(CRS)
    if gdf.geometry.name != "geometry":
        gdf = gdf.rename_geometry("geometry")
    if "class" not in gdf:
        raise InvalidInput(f"{what} has no 'class' column", "give each correction a FLAIR-1 class 1..19")
    gdf["class"] = [check_class(v, f"{what}, row {i + 1}") for i, v in enumerate(gdf["class"])]
    kinds = set(gdf.geometry.geom_type.dropna())
    if gdf.geometry.isna().any() or gdf.geometry.is_empty.any() or not kinds <= {"Polygon", "MultiPolygon"}:
        raise InvalidInput(f"{what}: corrections must be polygons, found {sorted(kinds) or 'empty geometries'}",
                           "draw polygons, rectangles or brush strokes")
    if "id" not in gdf:
        gdf["id"] = [f"corr-{uuid.uuid4().hex[:12]}" for _ in range(len(gdf))]
    stamp = now()
    for c in TEXT_COLUMNS:
        gdf[c] = gdf[c].fillna("").astype(str) if c in gdf else ""
    gdf.loc[gdf["created"] == "", "created"] = stamp
    dup = gdf["id"][gdf["id"].duplicated()].unique().tolist()
    if dup:
        raise InvalidInput(f"{what}: duplicate ids {dup[:5]}", "give each correction a unique id")
    out = gpd.GeoDataFrame(gdf[list(COLUMNS)], geometry=gdf.geometry.values, crs=CRS)
    out["class"] = out["class"].astype("int64")
    return out.reset_index(drop=True)


def read_file(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read a corrections GeoPackage (layer ``corrections``, or its only layer)."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise NotFound(f"Corrections file not found: {path}",
                       "draw corrections on the Explore page first, or give the path of a corrections .gpkg")
    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
        layer = LAYER if LAYER in layers else None
        return normalise(gpd.read_file(path, layer=layer, engine="pyogrio"), path.name)
    except (DataSourceError, DataLayerError) as exc:
        raise Unreadable(f"Cannot read corrections {path.name}: {first_line(exc)}",
                         "the file is corrupt or not a GeoPackage; draw the corrections again") from None


def shape_from_feature(feature: Mapping, brush_m: float = DEFAULT_BRUSH_M, crs: str = "EPSG:4326") -> shapely.Geometry:
    """A drawn GeoJSON feature (polygon, rectangle, or a line = a brush stroke) as an EPSG:2154 polygon."""
    try:
        g = shapely.geometry.shape(feature["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
        raise InvalidInput("A drawn shape could not be read", "draw it again as a polygon or a brush stroke") from None
    g = gpd.GeoSeries([g], crs=crs).to_crs(CRS).iloc[0]
    if g.geom_type in ("LineString", "MultiLineString"):
        if brush_m <= 0:
            raise InvalidInput(f"Brush width must be positive (got {brush_m} m)", "use a brush of 0.2 m or more")
        g = g.buffer(brush_m, cap_style="round")
    if g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(f"A correction must be a polygon or a brush stroke, not a {g.geom_type}",
                           "draw a polygon, a rectangle or a line (brush)")
    return g if g.is_valid else shapely.make_valid(g)


class CorrectionStore:
    """The corrections GeoPackage. Every change rewrites it atomically under the lock."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def load(self) -> gpd.GeoDataFrame:
        """All corrections (an empty, typed frame when none were saved yet)."""
        return read_file(self.path) if self.path.exists() else empty()

    def _change(self, fn: Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
        with locked(self.path):
            gdf = normalise(fn(self.load()))
            write_table(gdf, self.path, "GPKG", layer=LAYER)
            return gdf

    def add(self, geom: shapely.Geometry, klass: int, *, dataset_id: str, footprint: shapely.Geometry | None = None,
            model_id: str = "", note: str = "") -> str:
        """Store one EPSG:2154 polygon with its class; with ``footprint`` (the image's), refuse one outside it."""
        klass = check_class(klass)
        if footprint is not None and not geom.intersects(footprint):
            raise InvalidInput(f"The correction lies outside image {dataset_id}",
                               "draw the correction over the image shown on the map")
        if footprint is not None:
            geom = geom.intersection(footprint)
        cid = f"corr-{uuid.uuid4().hex[:12]}"
        row = {"id": cid, "class": klass, "dataset_id": dataset_id, "model_id": model_id, "created": now(),
               "note": note}
        new = gpd.GeoDataFrame([row], geometry=[geom], crs=CRS)
        self._change(lambda cur: _concat([cur, new]))
        return cid

    def add_features(self, features: Iterable[Mapping], klass: int, *, dataset_id: str,
                     footprint: shapely.Geometry | None = None, model_id: str = "", note: str = "",
                     brush_m: float = DEFAULT_BRUSH_M) -> list[str]:
        """Store shapes drawn on the web map (GeoJSON in EPSG:4326), all with class ``klass``; all or none."""
        geoms = [shape_from_feature(f, brush_m) for f in features]
        klass = check_class(klass)
        if footprint is not None:
            for g in geoms:
                if not g.intersects(footprint):
                    raise InvalidInput(f"A correction lies outside image {dataset_id}",
                                       "draw the correction over the image shown on the map")
            geoms = [g.intersection(footprint) for g in geoms]
        rows = [{"id": f"corr-{uuid.uuid4().hex[:12]}", "class": klass, "dataset_id": dataset_id,
                 "model_id": model_id, "created": now(), "note": note} for _ in geoms]
        if not rows:
            return []
        new = gpd.GeoDataFrame(rows, geometry=geoms, crs=CRS)
        self._change(lambda cur: _concat([cur, new]))
        return [r["id"] for r in rows]

    def edit(self, changes: Mapping[str, Mapping[str, object]]) -> gpd.GeoDataFrame:
        """Change the class or note of corrections by ID; unknown IDs and other fields are errors."""
        def fn(cur: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            missing = sorted(set(changes) - set(cur["id"]))
            if missing:
                raise NotFound(f"Unknown correction id(s) {missing[:5]}", "reload the corrections list")
            for cid, fields in changes.items():
                bad = set(fields) - {"class", "note"}
                if bad:
                    raise InvalidInput(f"Cannot edit {sorted(bad)} of a correction", "only class and note can be edited")
                i = cur.index[cur["id"] == cid]
                if "class" in fields:
                    cur.loc[i, "class"] = check_class(fields["class"])
                if "note" in fields:
                    cur.loc[i, "note"] = "" if fields["note"] is None else str(fields["note"])
            return cur

        return self._change(fn)

    def remove(self, ids: Iterable[str]) -> gpd.GeoDataFrame:
        ids = set(ids)
        return self._change(lambda cur: cur[~cur["id"].isin(ids)])

    def apply_table(self, before: pd.DataFrame, after: pd.DataFrame) -> tuple[int, int]:
        """Save what a person changed in the corrections table (class, note, ``remove``); returns (edited, removed)."""
        changes, gone = table_edits(before, after, ("class", "note"))
        if changes:
            self.edit(changes)
        if gone:
            self.remove(gone)
        return len(changes), len(gone)


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=CRS)
