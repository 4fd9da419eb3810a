"""Byte-based export and import on SelectionStore: what the Annotate page's download and upload use."""

from __future__ import annotations

import io
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from flair_viz.annotate import selections as S
from flair_viz.core.errors import InvalidInput

X0, Y0 = 961436.8, 6329262.4


def _store(tmp_path: Path, name: str = "sel.gpkg") -> S.SelectionStore:
    store = S.SelectionStore(tmp_path / name)
    rows = gpd.GeoDataFrame({"id": ["a", "b"], "note": ["roofs", "é ü"], "status": ["to annotate", "done"],
                             "score": [0.5, float("nan")]},
                            geometry=[shapely.box(X0, Y0 - 102.4, X0 + 102.4, Y0),
                                      shapely.box(X0 + 102.4, Y0 - 102.4, X0 + 204.8, Y0)], crs="EPSG:2154")
    store.upsert(rows)
    return store


def _read(data: bytes, suffix: str, tmp_path: Path) -> gpd.GeoDataFrame:
    """Read the bytes as a user's GIS would, from a file of that name (not through SelectionStore)."""
    if suffix == "csv":
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        return gpd.GeoDataFrame(df.drop(columns="geometry"), geometry=shapely.from_wkt(df["geometry"]), crs="EPSG:2154")
    path = tmp_path / f"download.{suffix}"
    path.write_bytes(data)
    return gpd.read_file(path)


@pytest.mark.parametrize("fmt", ["gpkg", ".geojson", "CSV"])
def test_export_bytes_hold_every_selection(tmp_path: Path, fmt: str) -> None:
    store = _store(tmp_path)
    data = store.export_bytes(fmt)
    got = _read(data, fmt.lower().lstrip("."), tmp_path)
    assert sorted(got["id"]) == ["a", "b"]
    assert dict(zip(got["id"], got["note"])) == {"a": "roofs", "b": "é ü"}
    want = store.load().set_index("id").geometry
    for rid, geom in zip(got["id"], got.geometry):
        assert geom.equals_exact(want[rid], 1e-6)
    assert not list(tmp_path.glob("selections.*"))  # nothing left beside the store


def test_import_bytes_merges_by_id_and_uses_only_the_file_name(tmp_path: Path) -> None:
    data = _store(tmp_path, "source.gpkg").export_bytes("geojson")
    target = S.SelectionStore(tmp_path / "target.gpkg")
    assert target.import_bytes(data, "../../evil/selections.geojson") == (2, 0)
    assert sorted(target.load()["id"]) == ["a", "b"]
    assert not (tmp_path.parent / "evil").exists()
    assert target.import_bytes(data, "again.geojson") == (0, 2)  # same `updated`: the import wins the tie
    assert len(target.load()) == 2


def test_import_and_export_bytes_refuse_unknown_formats(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(InvalidInput, match="unknown format"):
        store.export_bytes("shp")
    with pytest.raises(InvalidInput, match="unknown format"):
        store.import_bytes(b"x", "selections.shp")
    with pytest.raises(InvalidInput, match="no 'geometry' column"):
        store.import_bytes(b"id,note\na,b\n", "plain.csv")
