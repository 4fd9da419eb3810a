"""Regions chosen for annotation, kept in a GeoPackage that survives restarts and crashes.

One layer, EPSG:2154 polygons, one row per region. Every change rewrites the whole layer into a
temporary GeoPackage beside the real one and then renames it over (``flair_viz.core.atomic``): a crash
mid-write leaves the previous file intact, never a half-written one. The one file lock
(:func:`flair_viz.core.locks.locked`) serialises writers (two browser tabs, or the CLI while the
app runs) so no change is lost to a race.

Exports (GeoPackage, GeoJSON, CSV with WKT geometry) carry the same columns in EPSG:2154, as files
or as bytes (:meth:`SelectionStore.export_bytes`, for a download button), and
:meth:`SelectionStore.import_file` / :meth:`~SelectionStore.import_bytes` merge an export back by
``id``: for an ID present on both sides, the row with the later ``updated`` time wins (the
imported one on a tie).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry
from pyogrio.errors import DataLayerError, DataSourceError

from flair_viz.annotate.grid import FLAIR_CELL_M, Grid, cell_id, snap
from flair_viz.annotate.ranking import summarise_region
from flair_viz.annotate.scenes import Scene, scene_at, scene_grid
from flair_viz.annotate.scoring import COMPONENTS
from flair_viz.core import config
from flair_viz.core.errors import InvalidInput, Mismatch, NotFound, Unreadable, first_line
from flair_viz.core.geotable import CRS, FORMATS, now, table_edits, write_table
from flair_viz.core.locks import locked

LAYER = "selections"
STATUSES: tuple[str, ...] = ("to annotate", "in progress", "done")
SOURCES: tuple[str, ...] = ("candidate", "drawn")
TEXT_COLUMNS: tuple[str, ...] = ("id", "source", "dataset", "note", "status", "created", "updated")
COLUMNS: tuple[str, ...] = ("id", "source", "dataset", *COMPONENTS, "score", "note", "status", "created", "updated")


def default_path() -> Path:
    """``$FLAIR_VIZ_SELECTIONS`` or ``selections.gpkg`` in the user data folder."""
    return config.settings().selections or config.user_data_dir() / "selections.gpkg"


def empty() -> gpd.GeoDataFrame:
    data: dict[str, pd.Series] = {c: pd.Series(dtype="str") for c in TEXT_COLUMNS}
    data.update({c: pd.Series(dtype="float64") for c in (*COMPONENTS, "score")})
    return gpd.GeoDataFrame({c: data[c] for c in COLUMNS}, geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)


def normalise(frame: pd.DataFrame | gpd.GeoDataFrame, what: str = "selections") -> gpd.GeoDataFrame:
    """Coerce a frame to the selection schema, refusing rows that annotators could not use."""
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame:
        raise InvalidInput(f"{what} has no geometry", "give a GeoPackage/GeoJSON, or a CSV with a WKT 'geometry' column")
    gdf = frame.copy()
    if gdf.crs is None:
        gdf = gdf.set_crs(CRS)
    elif not gdf.crs.equals(CRS):
        gdf = gdf.to_crs(CRS)
    if gdf.geometry.name != "geometry":
        gdf = gdf.rename_geometry("geometry")
    if "id" not in gdf or gdf["id"].isna().any() or (gdf["id"].astype(str).str.strip() == "").any():
        raise InvalidInput(f"{what}: every region needs an 'id'", "export selections from FLAIR Viz, or add an id column")
    gdf["id"] = gdf["id"].astype(str)
    dup = gdf["id"][gdf["id"].duplicated()].unique().tolist()
    if dup:
        raise InvalidInput(f"{what}: duplicate ids {dup[:5]}", "give each region a unique id")
    kinds = set(gdf.geometry.geom_type.dropna())
    if gdf.geometry.isna().any() or not kinds <= {"Polygon", "MultiPolygon"}:
        raise InvalidInput(f"{what}: regions must be polygons, found {sorted(kinds) or 'empty geometries'}",
                            "draw rectangles or polygons, not points or lines")
    for c in ("source", "dataset", "note"):
        gdf[c] = gdf[c].fillna("").astype(str) if c in gdf else ""
    gdf["source"] = gdf["source"].replace("", "drawn")
    bad_src = sorted(set(gdf["source"]) - set(SOURCES))
    if bad_src:
        raise InvalidInput(f"{what}: unknown source(s) {bad_src}", f"use one of {', '.join(SOURCES)}")
    gdf["status"] = gdf["status"].fillna(STATUSES[0]).astype(str) if "status" in gdf else STATUSES[0]
    bad = sorted(set(gdf["status"]) - set(STATUSES))
    if bad:
        raise InvalidInput(f"{what}: unknown status(es) {bad}", f"use one of: {', '.join(STATUSES)}")
    for c in (*COMPONENTS, "score"):
        gdf[c] = pd.to_numeric(gdf[c], errors="coerce").astype("float64") if c in gdf else np.nan
    stamp = now()
    for c in ("created", "updated"):
        gdf[c] = gdf[c].fillna(stamp).astype(str) if c in gdf else stamp
    out = gpd.GeoDataFrame(gdf[list(COLUMNS)], geometry=gdf.geometry.values, crs=CRS)
    return out.reset_index(drop=True)


def read_file(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read a selection file or an export (GPKG, GeoJSON, or CSV with WKT in EPSG:2154)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"File not found: {path}", "check the path of the export to import")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"Cannot read {path.name}: unknown format", f"use one of {', '.join(FORMATS)}")
    try:
        if fmt == "CSV":
            df = pd.read_csv(path, dtype={c: "str" for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
            if "geometry" not in df:
                raise InvalidInput(f"{path.name} has no 'geometry' column", "export it from FLAIR Viz (WKT geometry)")
            try:
                geoms = shapely.from_wkt(df["geometry"].fillna("").replace("", None))
            except shapely.errors.GEOSException as exc:
                raise InvalidInput(f"{path.name}: a geometry is not valid WKT ({exc})", "fix or remove that row") from None
            return normalise(gpd.GeoDataFrame(df.drop(columns="geometry"), geometry=geoms, crs=CRS), path.name)
        if fmt == "GPKG":
            layer = LAYER if LAYER in _layers(path) else None
            return normalise(gpd.read_file(path, layer=layer, engine="pyogrio"), path.name)
        # keep ISO timestamps as text: GDAL would otherwise parse them and change their format
        return normalise(gpd.read_file(path, engine="pyogrio", DATE_AS_STRING="YES"), path.name)
    except (DataSourceError, DataLayerError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise Unreadable(f"Cannot read {path.name}: {first_line(exc)}",
                            "the file is corrupt or not a selection export; export it again") from None


def _layers(path: Path) -> list[str]:
    import pyogrio

    return [name for name, _ in pyogrio.list_layers(path)]


def write_file(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write selections atomically: the final name holds either the old file or the complete new one."""
    return write_table(normalise(gdf), path, fmt, layer=LAYER)


class SelectionStore:
    """The selections GeoPackage. Every method that changes it rewrites it atomically under a lock."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def load(self) -> gpd.GeoDataFrame:
        """All selections (an empty, typed frame when none were saved yet)."""
        if not self.path.exists():
            return empty()
        return read_file(self.path)

    def _save(self, gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        write_file(gdf, self.path, "GPKG")
        return gdf

    def _change(self, fn: Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
        with locked(self.path):
            return self._save(normalise(fn(self.load())))

    # -- changes ------------------------------------------------------------------------------
    def upsert(self, rows: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """Add regions; an existing ID keeps its note, status and created time and gets the new geometry and scores."""
        new = normalise(rows, "new regions")

        def fn(cur: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            old = cur.set_index("id")
            for col in ("note", "status", "created"):
                keep = new["id"].map(old[col]) if len(old) else pd.Series(np.nan, index=new.index)
                mask = keep.notna() & ((new[col] == "") | (col != "note"))
                new.loc[mask, col] = keep[mask]
            return _concat([cur[~cur["id"].isin(new["id"])], new])

        return self._change(fn)

    def add_candidates(self, candidates: pd.DataFrame, note: str = "") -> list[str]:
        """Select ranked cells; cells of a finer grid are snapped to the FLAIR cell that holds them."""
        rows = [candidate_region(c, note) for c in candidates.to_dict("records")]
        if not rows:
            return []
        frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=candidates.crs if hasattr(candidates, "crs") else CRS)
        # several fine cells may fall in one FLAIR cell: keep the best-scored one
        frame = frame.sort_values("score", ascending=False, na_position="last").drop_duplicates("id")
        self.upsert(frame)
        return frame["id"].tolist()

    def add_drawn(self, geom: shapely.Geometry, *, grid: Grid | None = None, dataset: str = "", note: str = "",
                  crs: str = CRS, scored: gpd.GeoDataFrame | None = None) -> str:
        """Store a drawn polygon (EPSG:2154 unless ``crs`` says otherwise), snapped to ``grid`` when one is given.

        With ``scored`` (all combined cells), the region gets the area-weighted components and score of the cells it covers.
        """
        g = gpd.GeoSeries([geom], crs=crs).to_crs(CRS).iloc[0]
        if g is None or g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon"):
            raise InvalidInput("A drawn region must be a rectangle or a polygon", "draw a rectangle or a polygon")
        if not g.is_valid:
            g = shapely.make_valid(g)
        if grid is not None:
            g = snap(g, grid)
        rid = f"drawn-{uuid.uuid4().hex[:12]}"
        row = {"id": rid, "source": "drawn", "dataset": dataset, "note": note}
        if scored is not None and len(scored):
            row.update(summarise_region(g, scored.to_crs(CRS)))
        self.upsert(gpd.GeoDataFrame([row], geometry=[g], crs=CRS))
        return rid

    def add_drawn_features(self, features: Iterable[Mapping], scenes: Iterable[Scene], *, snap_to_grid: bool,
                           note: str = "", scored: gpd.GeoDataFrame | None = None) -> list[str]:
        """Store shapes drawn on the web map (GeoJSON in EPSG:4326), each tied to the scene it overlaps most."""
        scenes = list(scenes)
        geoms = []
        for feat in features:
            try:
                g = shapely.geometry.shape(feat["geometry"])
            except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
                raise InvalidInput("A drawn shape could not be read", "draw it again as a rectangle or polygon") from None
            geoms.append(gpd.GeoSeries([g], crs="EPSG:4326").to_crs(CRS).iloc[0])
        ids = []
        for g in geoms:
            sc = scene_at(g, scenes)
            if snap_to_grid and sc is None:
                raise Mismatch("A drawn region lies outside every scored scene, so it has no grid to snap to",
                                    "draw over a scene's image, or untick 'snap to the FLAIR grid'")
            ids.append(self.add_drawn(g, grid=scene_grid(sc) if snap_to_grid and sc else None,
                                      dataset=sc.dataset if sc else "", note=note, scored=scored))
        return ids

    def edit(self, changes: Mapping[str, Mapping[str, str]]) -> gpd.GeoDataFrame:
        """Change notes and statuses by ID (what the selection table edits); unknown IDs are an error."""
        def fn(cur: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            missing = sorted(set(changes) - set(cur["id"]))
            if missing:
                raise NotFound(f"Unknown selection id(s) {missing[:5]}", "reload the selection list")
            stamp = now()
            for rid, fields in changes.items():
                bad = set(fields) - {"note", "status"}
                if bad:
                    raise InvalidInput(f"Cannot edit {sorted(bad)} of a selection", "only note and status can be edited")
                i = cur.index[cur["id"] == rid]
                for k, v in fields.items():
                    cur.loc[i, k] = "" if v is None else str(v)
                cur.loc[i, "updated"] = stamp
            return cur

        return self._change(fn)

    def apply_table(self, before: pd.DataFrame, after: pd.DataFrame) -> tuple[int, int]:
        """Save what a person changed in the selection table (note, status, a ``remove`` tick); returns (edited, removed).

        Only differences between the table as shown and as edited are written, so a stale table
        cannot overwrite changes made meanwhile in other columns or rows.
        """
        changes, gone = table_edits(before, after, ("note", "status"))
        if changes:
            self.edit(changes)
        if gone:
            self.remove(gone)
        return len(changes), len(gone)

    def remove(self, ids: Iterable[str]) -> gpd.GeoDataFrame:
        ids = set(ids)
        return self._change(lambda cur: cur[~cur["id"].isin(ids)])

    # -- exchange -----------------------------------------------------------------------------
    def export(self, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Export all selections (GPKG, GeoJSON or CSV with WKT, in EPSG:2154), atomically."""
        return write_file(self.load(), path, fmt)

    def export_bytes(self, fmt: str) -> bytes:
        """All selections as the bytes of an export file (``gpkg``, ``geojson`` or ``csv``): a download button's data."""
        suffix = "." + fmt.lower().lstrip(".")
        if suffix not in FORMATS:
            raise InvalidInput(f"Cannot export to {fmt!r}: unknown format", f"use one of {', '.join(FORMATS)}")
        with tempfile.TemporaryDirectory() as tmp:  # GDAL writes a GeoPackage to a file, not to memory
            return self.export(Path(tmp) / f"selections{suffix}").read_bytes()

    def import_bytes(self, data: bytes, filename: str) -> tuple[int, int]:
        """Merge an uploaded export (its bytes and its file name, which says the format); returns (added, replaced)."""
        name = Path(filename).name  # never a path from the browser
        if not name:
            raise InvalidInput("The uploaded file has no name", "upload a .gpkg, .geojson or .csv export")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            return self.import_file(path)

    def import_file(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Merge an export back by ID (later ``updated`` wins); returns (added, replaced)."""
        incoming = read_file(path)
        counts = [0, 0]

        def fn(cur: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            old_updated = cur.set_index("id")["updated"]
            known = incoming["id"].isin(old_updated.index)
            newer = incoming["updated"] >= incoming["id"].map(lambda i: old_updated.get(i, ""))
            take = incoming[~known | newer]
            counts[0], counts[1] = int((~known).sum()), int((known & newer).sum())
            return _concat([cur[~cur["id"].isin(take["id"])], take])

        self._change(fn)
        return counts[0], counts[1]


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=CRS)


def candidate_region(cell: Mapping, note: str = "") -> dict:
    """A ranked cell as a selection row on the FLAIR grid (its 102.4 m cell, whatever grid it was scored on)."""
    cell_m = float(cell.get("cell_m", FLAIR_CELL_M))
    geom = cell["geometry"]
    row, col = int(cell["row"]), int(cell["col"])
    minx, _, _, maxy = geom.bounds
    fine = Grid(round(minx - col * cell_m, 6), round(maxy + row * cell_m, 6), cell_m, row + 1, col + 1, None)
    flair = fine.flair()
    frow, fcol = flair.cell_of(*geom.centroid.coords[0])
    rec = {"id": cell_id(str(cell["dataset"]), frow, fcol), "source": "candidate", "dataset": str(cell["dataset"]),
           "note": note, "geometry": flair.polygon(frow, fcol)}
    rec.update({c: float(cell[c]) if c in cell and pd.notna(cell[c]) else np.nan for c in (*COMPONENTS, "score")})
    return rec
