"""Candidate scoring, the FLAIR grid, selection persistence, export/import, crash safety and the CLI.

Expected values are recomputed independently (plain Python loops over pixels, explicit geometry),
never copied from the code under test.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from flair_viz import annotate as A
from flair_viz.annotate import selections as S
from flair_viz.core.errors import FlairVizError
from tests.helpers import REPO, kill_while_present, start_server, stop_server

X0, Y0 = 961436.8, 6329262.4  # a real FLAIR patch origin (IMG_000473)
RES = 0.2


def _affine(x0: float = X0, y0: float = Y0, res: float = RES) -> rasterio.Affine:
    return rasterio.Affine(res, 0, x0, 0, -res, y0)


# ------------------------------------------------------------------------------------------------
# Scores on a hand-made probability array
# ------------------------------------------------------------------------------------------------
# 2 x 4 pixels, 3 classes; with cell_m = 0.4 m (2 px) that is a 1 x 2 grid: cell 0 = columns 0-1, cell 1 = columns 2-3.
PIXELS = [  # (row, col): probabilities of values 1, 2, 3
    [(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.6, 0.3, 0.1), (0.2, 0.2, 0.6)],
    [(1 / 3, 1 / 3, 1 / 3), (0.0, 0.9, 0.1), (0.1, 0.1, 0.8), (0.0, 0.0, 1.0)],
]
TRUTH = [[1, 2, 0, 3],   # 0 = nodata: excluded from the GT share
         [3, 2, 1, 1]]
PIXELS_B = [
    [(0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)],
    [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)],
]


def _proba(pixels) -> np.ndarray:
    return np.array(pixels, dtype=np.float32).transpose(2, 0, 1)


def _hand(pixels, truth, pixels_b) -> dict[int, dict[str, float]]:
    """Per-cell components, pixel by pixel in plain Python."""
    out: dict[int, dict[str, list]] = {0: {}, 1: {}}
    for r in range(2):
        for c in range(4):
            p = pixels[r][c]
            cell = out[c // 2]
            ent = -sum(v * math.log(v) for v in p if v > 0) / math.log(3)
            top = sorted(p, reverse=True)
            pred = 1 + p.index(max(p))
            pred_b = 1 + pixels_b[r][c].index(max(pixels_b[r][c]))
            cell.setdefault("entropy", []).append(ent)
            cell.setdefault("margin", []).append(top[0] - top[1])
            cell.setdefault("pred", []).append(pred)
            cell.setdefault("models", []).append(pred != pred_b)
            if truth[r][c] != 0:
                cell.setdefault("gt", []).append(pred != truth[r][c])
    return {k: {"entropy": sum(v["entropy"]) / 4, "margin": 1 - sum(v["margin"]) / 4,
                "gt": sum(v["gt"]) / len(v["gt"]), "models": sum(v["models"]) / 4, "pred": v["pred"]}
            for k, v in out.items()}


def test_components_match_hand_computation() -> None:
    cells = A.score_cells(_proba(PIXELS), _affine(), dataset="T", truth=np.array(TRUTH, np.uint8),
                          proba_b=_proba(PIXELS_B), cell_m=0.4)
    hand = _hand(PIXELS, TRUTH, PIXELS_B)
    assert list(cells["col"]) == [0, 1] and list(cells["row"]) == [0, 0]
    for i in (0, 1):
        for comp in ("entropy", "margin", "gt", "models"):
            assert cells[comp].iloc[i] == pytest.approx(hand[i][comp], abs=1e-6), (i, comp)
        for v in (1, 2, 3):
            assert cells[f"px_{v}"].iloc[i] == hand[i]["pred"].count(v)


def test_uint8_probabilities_are_renormalised_like_floats() -> None:
    p = _proba(PIXELS)
    as_u8 = np.round(p * 255).astype(np.uint8)
    a = A.score_cells(p, _affine(), cell_m=0.4)
    b = A.score_cells(as_u8, _affine(), cell_m=0.4)
    assert np.allclose(a["entropy"], b["entropy"], atol=5e-3)
    assert np.allclose(a["margin"], b["margin"], atol=5e-3)
    # an all-zero pixel is nodata: not counted
    as_u8[:, 0, 0] = 0
    c = A.score_cells(as_u8, _affine(), cell_m=0.4)
    assert list(c["valid_px"]) == [3, 4]


def test_rare_share_and_combined_score_by_hand() -> None:
    cells = A.score_cells(_proba(PIXELS), _affine(), dataset="T", truth=np.array(TRUTH, np.uint8),
                          proba_b=_proba(PIXELS_B), cell_m=0.4)
    hand = _hand(PIXELS, TRUTH, PIXELS_B)
    preds = hand[0]["pred"] + hand[1]["pred"]
    freq = {v: preds.count(v) / len(preds) for v in range(1, 20)}
    threshold = 0.3
    rare = {v for v, f in freq.items() if f < threshold}
    weights = {"entropy": 1, "margin": 0.5, "gt": 2, "models": 0, "rare": 1}
    ranked = A.rank(cells, weights, rare_below=threshold)
    hand_rare = {i: sum(p in rare for p in hand[i]["pred"]) / 4 for i in (0, 1)}
    by_col = ranked.set_index("col")
    for i in (0, 1):
        assert by_col.loc[i, "rare"] == pytest.approx(hand_rare[i])
    # two cells: min-max gives 1 to the larger, 0 to the smaller (0 to both when equal)
    vals = {c: [hand[i][c] if c != "rare" else hand_rare[i] for i in (0, 1)] for c in A.COMPONENTS}
    expected = []
    for i in (0, 1):
        s = 0.0
        for c, w in weights.items():
            lo, hi = min(vals[c]), max(vals[c])
            s += w * ((vals[c][i] - lo) / (hi - lo) if hi > lo else 0.0)
        expected.append(s / sum(weights.values()))
    for i in (0, 1):
        assert by_col.loc[i, "score"] == pytest.approx(expected[i])
    assert list(ranked["score"]) == sorted(ranked["score"], reverse=True)


def test_missing_truth_counts_as_zero_and_weights_are_checked() -> None:
    cells = A.score_cells(_proba(PIXELS), _affine(), cell_m=0.4)
    assert cells["gt"].isna().all() and cells["models"].isna().all()
    only_gt = A.rank(cells, {"gt": 1})
    assert (only_gt["score"] == 0).all()
    with pytest.raises(FlairVizError, match="weights are 0"):
        A.rank(cells, {c: 0 for c in A.COMPONENTS})
    with pytest.raises(FlairVizError) as err:
        A.parse_weights("entropy=1,bogus=2")
    assert err.value.fix
    assert A.parse_weights("gt=2, rare=0.5") == {"entropy": 1, "margin": 1, "gt": 2, "models": 1, "rare": 0.5}
    with pytest.raises(FlairVizError, match="logits"):
        A.score_cells(_proba(PIXELS) * 5 - 2, _affine(), cell_m=0.4)


def test_spacing_rule_skips_close_cells() -> None:
    rng = np.random.default_rng(3)
    p = rng.random((4, 64, 64)).astype(np.float32)
    cells = A.score_cells(p, _affine(), cell_m=1.6)  # 8 px cells: an 8 x 8 grid
    ranked = A.rank(cells)
    spacing = 4.0
    picked = A.pick(ranked, top=6, spacing_m=spacing)
    # independent greedy pass over the same order
    expect: list[tuple[float, float]] = []
    for geom in ranked.geometry:
        c = (geom.centroid.x, geom.centroid.y)
        if all(math.dist(c, e) >= spacing for e in expect):
            expect.append(c)
        if len(expect) == 6:
            break
    assert [(g.centroid.x, g.centroid.y) for g in picked.geometry] == expect
    assert len(A.pick(ranked, top=6)) == 6


# ------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------
def test_cells_align_to_the_flair_grid_from_the_scene_origin() -> None:
    w, h = 1024, 768  # 2 full columns; 1.5 rows -> a partial second row
    p = np.zeros((3, h, w), np.float32)
    cls = np.zeros((h, w), int)
    cls[:512, 512:] = 1
    cls[512:, :] = 2
    p[cls, *np.indices((h, w))] = 1.0
    cells = A.score_cells(p, _affine(), dataset="G")
    assert len(cells) == 4
    for _, cell in cells.iterrows():
        minx, miny, maxx, maxy = cell.geometry.bounds
        assert maxx - minx == pytest.approx(102.4) and maxy - miny == pytest.approx(102.4)
        assert (minx - X0) / 102.4 == pytest.approx(cell["col"]) and (Y0 - maxy) / 102.4 == pytest.approx(cell["row"])
        # every pixel went to the cell holding its centre
        r, c = cell["row"], cell["col"]
        block = cls[r * 512:(r + 1) * 512, c * 512:(c + 1) * 512]
        assert cell["valid_px"] == block.size
        for v in (1, 2, 3):
            assert cell[f"px_{v}"] == int((block == v - 1).sum())
    assert sorted(cells["coverage"]) == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert set(cells["cell_id"]) == {"G_r000_c000", "G_r000_c001", "G_r001_c000", "G_r001_c001"}


def test_snap_and_fine_candidates_land_on_flair_cells() -> None:
    grid = A.Grid.for_scene(_affine(), 1024, 1024, "EPSG:2154")
    drawn = shapely.box(X0 + 10, Y0 - 150, X0 + 120, Y0 - 20)  # overlaps all four cells
    snapped = A.snap(drawn, grid)
    assert snapped.bounds == pytest.approx((X0, Y0 - 204.8, X0 + 204.8, Y0))
    assert snapped.area == pytest.approx(4 * 102.4 ** 2)
    inner = shapely.box(X0 + 110, Y0 - 90, X0 + 150, Y0 - 30)  # inside cell (0, 1) only
    assert A.snap(inner, grid).bounds == pytest.approx((X0 + 102.4, Y0 - 102.4, X0 + 204.8, Y0))
    with pytest.raises(FlairVizError):
        A.snap(shapely.box(0, 0, 1, 1), grid)
    # a 25.6 m candidate in the fine grid -> its FLAIR cell
    fine = A.Grid.for_scene(_affine(), 1024, 1024, "EPSG:2154", cell_m=25.6)
    rec = S.candidate_region({"dataset": "G", "row": 5, "col": 2, "cell_m": 25.6, "geometry": fine.polygon(5, 2),
                              "score": 0.7, "entropy": 0.1})
    assert rec["id"] == "G_r001_c000"  # row 5 // 4 = 1, col 2 // 4 = 0
    assert rec["geometry"].bounds == pytest.approx((X0, Y0 - 204.8, X0 + 102.4, Y0 - 102.4))


def test_drawn_geojson_is_reprojected_snapped_and_scored(tmp_path: Path) -> None:
    from pyproj import Transformer

    from flair_viz.core.raster import RasterInfo

    info = RasterInfo(path=Path("scene.tif"), count=5, width=1024, height=1024, dtype="uint8",
                      crs=rasterio.CRS.from_epsg(2154), transform=_affine(), bounds=(X0, Y0 - 204.8, X0 + 204.8, Y0),
                      nodata=None)
    sc = A.Scene("S", info, None)
    grid = A.scene_grid(sc)
    scored = gpd.GeoDataFrame({"entropy": [0.1, 0.2, 0.3, 0.4], "score": [1.0, 0.5, 0.0, 0.25]},
                              geometry=[grid.polygon(r, c) for r, c in ((0, 0), (0, 1), (1, 0), (1, 1))], crs="EPSG:2154")
    drawn = shapely.box(X0 + 52.4, Y0 - 60, X0 + 122.4, Y0 - 10)  # 50 m x 50 m in cell (0,0), 20 m x 50 m in (0,1)
    to_wgs = Transformer.from_crs(2154, 4326, always_xy=True)
    ring = [to_wgs.transform(x, y) for x, y in drawn.exterior.coords]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    store = S.SelectionStore(tmp_path / "sel.gpkg")
    free_id, = store.add_drawn_features([feature], [sc], snap_to_grid=False, scored=scored)
    snap_id, = store.add_drawn_features([feature], [sc], snap_to_grid=True, scored=scored)
    got = store.load().set_index("id")
    assert got.loc[free_id, "geometry"].symmetric_difference(drawn).area < 1e-3  # back in EPSG:2154, unsnapped
    assert got.loc[free_id, "entropy"] == pytest.approx((0.1 * 2500 + 0.2 * 1000) / 3500, rel=1e-4)
    assert got.loc[free_id, "score"] == pytest.approx((1.0 * 2500 + 0.5 * 1000) / 3500, rel=1e-4)
    assert got.loc[snap_id, "geometry"].bounds == pytest.approx((X0, Y0 - 102.4, X0 + 204.8, Y0))
    assert got.loc[snap_id, "entropy"] == pytest.approx(0.15)  # two whole cells, equal areas
    assert set(got["dataset"]) == {"S"}
    far = {"type": "Feature",
           "geometry": {"type": "Polygon", "coordinates": [[(2, 45), (2.001, 45), (2.001, 45.001), (2, 45)]]}}
    with pytest.raises(FlairVizError, match="outside every scored scene"):
        store.add_drawn_features([far], [sc], snap_to_grid=True)


# ------------------------------------------------------------------------------------------------
# Persistence, export and import
# ------------------------------------------------------------------------------------------------
def _store_with_regions(tmp_path: Path) -> S.SelectionStore:
    store = S.SelectionStore(tmp_path / "sel.gpkg")
    grid = A.Grid.for_scene(_affine(), 1024, 1024, "EPSG:2154")
    ranked = A.rank(A.score_cells(np.random.default_rng(0).random((3, 1024, 1024)).astype(np.float32),
                                  _affine(), dataset="G"), top=2)
    store.add_candidates(ranked)
    store.add_drawn(shapely.box(X0 + 10, Y0 - 150, X0 + 120, Y0 - 20), grid=grid, note="snapped")
    store.add_drawn(shapely.box(X0 + 1, Y0 - 3, X0 + 2, Y0 - 1), note="free, é ✓")  # unsnapped
    return store


def test_selections_persist_edit_and_survive_a_new_store(tmp_path: Path) -> None:
    store = _store_with_regions(tmp_path)
    first = store.load()
    assert len(first) == 4 and set(first["source"]) == {"candidate", "drawn"}
    rid = first["id"].iloc[0]
    store.edit({rid: {"status": "in progress", "note": "check roofs"}})
    again = S.SelectionStore(tmp_path / "sel.gpkg").load()  # a "restarted app"
    row = again.set_index("id").loc[rid]
    assert row["status"] == "in progress" and row["note"] == "check roofs"
    assert row["updated"] > row["created"]
    with pytest.raises(FlairVizError):
        store.edit({rid: {"status": "finished"}})
    # re-adding a candidate keeps the analyst's note and status
    store.upsert(again[again["id"] == rid].assign(note="", status="to annotate"))
    kept = store.load().set_index("id").loc[rid]
    assert kept["status"] == "in progress" and kept["note"] == "check roofs"
    store.remove([rid])
    assert rid not in set(store.load()["id"])
    # the page's table: edit one note, tick one removal, leave the rest untouched
    shown = store.load().drop(columns="geometry").assign(remove=False)
    edited = shown.copy()
    keep_id, drop_id = edited["id"].iloc[0], edited["id"].iloc[1]
    edited.loc[0, "note"] = "edited in table"
    edited.loc[0, "status"] = "done"
    edited.loc[1, "remove"] = True
    assert store.apply_table(shown, edited) == (1, 1)
    after = store.load().set_index("id")
    assert drop_id not in after.index and len(after) == len(shown) - 1
    assert after.loc[keep_id, "note"] == "edited in table" and after.loc[keep_id, "status"] == "done"
    untouched = [i for i in shown["id"] if i not in (keep_id, drop_id)]
    assert (after.loc[untouched, "note"] == shown.set_index("id").loc[untouched, "note"]).all()


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".csv"])
def test_export_round_trips_through_geopandas_in_epsg2154(tmp_path: Path, suffix: str) -> None:
    store = _store_with_regions(tmp_path)
    ref = store.load()
    out = store.export(tmp_path / f"export{suffix}")
    if suffix == ".csv":
        df = pd.read_csv(out, keep_default_na=False)
        back = gpd.GeoDataFrame(df, geometry=shapely.from_wkt(df["geometry"]), crs="EPSG:2154")
    else:
        back = gpd.read_file(out)
        assert back.crs.to_epsg() == 2154
    assert list(back["id"]) == list(ref["id"])
    assert back.geometry.geom_equals_exact(ref.geometry, 1e-6).all()
    assert list(back["note"]) == list(ref["note"]) and list(back["status"]) == list(ref["status"])
    assert np.allclose(pd.to_numeric(back["score"].replace("", np.nan)), ref["score"], equal_nan=True)
    # snapped regions sit on the 102.4 m grid of the scene
    for geom in back[back["note"] == "snapped"].geometry:
        for x, y in geom.exterior.coords:
            assert (x - X0) / 102.4 == pytest.approx(round((x - X0) / 102.4), abs=1e-9)
            assert (Y0 - y) / 102.4 == pytest.approx(round((Y0 - y) / 102.4), abs=1e-9)
    # importing the export into an empty store restores every row
    other = S.SelectionStore(tmp_path / "other.gpkg")
    assert other.import_file(out) == (len(ref), 0)
    restored = other.load()
    assert restored.drop(columns="geometry").equals(ref.drop(columns="geometry"))


def test_import_merges_by_id_and_refuses_bad_files(tmp_path: Path) -> None:
    store = _store_with_regions(tmp_path)
    out = store.export(tmp_path / "old.geojson")
    rid = store.load()["id"].iloc[1]
    time.sleep(0.01)
    store.edit({rid: {"note": "newer"}})
    added, replaced = store.import_file(out)  # the export is older for rid: it must not win
    assert added == 0 and replaced == 3
    assert store.load().set_index("id").loc[rid, "note"] == "newer"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,status,geometry\nx,finished,\"POLYGON ((0 0, 1 0, 1 1, 0 0))\"\n")
    with pytest.raises(FlairVizError, match="status"):
        store.import_file(bad)
    points = tmp_path / "pts.csv"
    points.write_text("id,geometry\nx,POINT (1 2)\n")
    with pytest.raises(FlairVizError, match="polygons"):
        store.import_file(points)


CHILD = textwrap.dedent("""
    import sys, shapely, geopandas as gpd
    from flair_viz.annotate import selections as S
    store = S.SelectionStore(sys.argv[1])
    mode, final = sys.argv[2], sys.argv[3]
    i = 0
    while True:
        i += 1
        if mode == "export":
            store.export(final)
        else:
            store.edit({"r0": {"note": f"v{i}"}})
""")


@pytest.mark.parametrize("mode", ["export", "edit"])
def test_sigkill_during_a_write_leaves_the_previous_file_valid(tmp_path: Path, mode: str) -> None:
    n = 20000
    base = gpd.GeoDataFrame({"id": [f"r{i}" for i in range(n)], "note": "v0"},
                            geometry=[shapely.box(i, 0, i + 1, 1) for i in range(n)], crs="EPSG:2154")
    store = S.SelectionStore(tmp_path / "sel.gpkg")
    S.write_file(base, store.path)
    final = tmp_path / "export.gpkg" if mode == "export" else store.path
    if mode == "export":
        store.export(final)
    for stale in tmp_path.glob(f".{final.name}.*partial*"):  # only the child's own temp file may count below
        stale.unlink()
    # a 20 000-row write takes ~0.15 s: 0.02 s after its temp file appears lands inside it
    kill_while_present([sys.executable, "-c", CHILD, str(store.path), mode, str(final)], tmp_path,
                       f".{final.name}.*partial*", {**os.environ, "OMP_NUM_THREADS": "1"}, delay=0.02, timeout=30)
    back = S.read_file(final)
    assert len(back) == n and list(back["id"]) == list(base["id"])
    assert back["note"].iloc[0].startswith("v") and (back["note"].iloc[1:] == "v0").all()
    # nothing else uses the final name, and the store still works (the lock died with the process)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(final.name)) in (
        [final.name], [final.name, final.name + ".lock"])
    store.edit({"r1": {"note": "after"}})
    assert store.load().set_index("id").loc["r1", "note"] == "after"


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _mini_catalog(tmp_path: Path) -> tuple[Path, Path]:
    """One 256 x 256 FLAIR-like patch with ground truth, plus a probability GeoTIFF for it."""
    rng = np.random.default_rng(7)
    root = tmp_path / "data" / "D001_2020" / "Z1_UA"
    (root / "img").mkdir(parents=True)
    (root / "msk").mkdir()
    prof = dict(driver="GTiff", width=256, height=256, dtype="uint8", crs="EPSG:2154", transform=_affine())
    with rasterio.open(root / "img" / "IMG_000001.tif", "w", count=5, **prof) as ds:
        ds.write(rng.integers(0, 255, (5, 256, 256), dtype=np.uint8))
    with rasterio.open(root / "msk" / "MSK_000001.tif", "w", count=1, **prof) as ds:
        ds.write(rng.integers(1, 4, (1, 256, 256), dtype=np.uint8))
    proba = rng.random((19, 256, 256))
    proba = np.round(proba / proba.sum(0) * 255).astype(np.uint8)
    with rasterio.open(tmp_path / "proba.tif", "w", count=19, **prof) as ds:
        ds.write(proba)
    cat = tmp_path / "catalog.toml"
    cat.write_text('data_root = "data"\n[[scan]]\npath = "."\n')
    return cat, tmp_path / "proba.tif"


def test_score_files_streams_to_the_same_result_as_arrays(tmp_path: Path) -> None:
    cat, proba_path = _mini_catalog(tmp_path)
    truth_path = next((tmp_path / "data").glob("**/MSK_000001.tif"))
    with rasterio.open(proba_path) as ds:
        proba = ds.read()
    with rasterio.open(truth_path) as ds:
        truth = ds.read(1)
    from_files = A.score_files(str(proba_path), dataset="F", truth_path=str(truth_path), cell_m=25.6)
    from_arrays = A.score_cells(proba, _affine(), dataset="F", truth=truth, cell_m=25.6)
    cols = ["row", "col", "valid_px", "entropy", "margin", "gt", *A.COUNT_COLS]
    pd.testing.assert_frame_equal(pd.DataFrame(from_files[cols]), pd.DataFrame(from_arrays[cols]))
    assert from_files.geometry.geom_equals_exact(from_arrays.geometry, 1e-9).all()


def test_cli_candidates_writes_ranked_cells_and_fails_cleanly(tmp_path: Path, capsys) -> None:
    from flair_viz.cli.main import main

    cat, proba = _mini_catalog(tmp_path)
    out = tmp_path / "cand.gpkg"
    sel = tmp_path / "sel.gpkg"
    rc = main(["candidates", "--catalog", str(cat), "--dataset", "IMG_000001", "--proba", str(proba), "--top", "3",
               "--cell-px", "128", "--weights", "gt=2,margin=0", "--out", str(out), "--select", "--selections", str(sel)])
    assert rc == 0
    got = gpd.read_file(out)
    assert got.crs.to_epsg() == 2154 and len(got) == 3
    assert list(got["rank"]) == [1, 2, 3] and list(got["score"]) == sorted(got["score"], reverse=True)
    assert got["gt"].notna().all()  # the catalog's ground truth was used
    for geom in got.geometry:
        minx, _, _, maxy = geom.bounds
        assert (minx - X0) / 25.6 == pytest.approx(round((minx - X0) / 25.6))
    assert set(S.SelectionStore(sel).load()["id"]) <= {"IMG_000001_r000_c000"}  # 256 px = one FLAIR cell (partial)
    capsys.readouterr()
    rc = main(["candidates", "--catalog", str(cat), "--dataset", "IMG_000001", "--proba", str(proba),
               "--weights", "entropy=-1", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "fix:" in err and "Traceback" not in err
    rc = main(["candidates", "--catalog", str(cat), "--dataset", "NOPE", "--proba", str(proba), "--out", str(out)])
    assert rc == 2 and "Unknown dataset ID" in capsys.readouterr().err
    assert len(gpd.read_file(out)) == 3  # the failed runs left the earlier output alone


# ------------------------------------------------------------------------------------------------
# The Annotate page (AppTest: widgets and storage; the map itself is checked in the browser test)
# ------------------------------------------------------------------------------------------------
def test_annotate_page_reranks_selects_and_survives_a_restart(tmp_path: Path, monkeypatch, request) -> None:
    import torch
    from streamlit.testing.v1 import AppTest

    from tests.model_fixtures import make_model

    torch.set_num_threads(1)
    (tmp_path / "models").mkdir()
    make_model(tmp_path / "models", "tiny-annotate", demo=True)
    monkeypatch.setenv("FLAIR_VIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("FLAIR_VIZ_SELECTIONS", str(tmp_path / "sel.gpkg"))
    # the page asks the tile server to predict and score, so this test's server must see this test's model
    proc, url = start_server(env={"FLAIR_VIZ_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}, log=tmp_path / "server.log")
    request.addfinalizer(lambda: stop_server(proc))
    monkeypatch.setenv("FLAIR_VIZ_TILES_URL", url)
    monkeypatch.setenv("FLAIR_VIZ_TILE_PORT", url.rsplit(":", 1)[1])
    page = str(REPO / "pages" / "4_Annotate.py")

    def open_page() -> AppTest:
        at = AppTest.from_file(page, default_timeout=180)
        at.session_state["ann_model"] = "tiny-annotate"
        at.session_state["ann_scenes"] = ["IMG_000473"]
        return at.run()

    at = open_page()
    assert not at.exception and not at.error
    assert at.radio(key="ann_grid").value == 128  # a single-patch scene offers the sub-cell grid
    pick = at.multiselect(key="ann_pick")
    assert len(pick.options) == 10
    # only entropy weighted: the displayed ranking must follow the displayed entropy column
    for c in ("margin", "gt", "models", "rare"):
        at.slider(key=f"ann_w_{c}").set_value(0.0)
    at.run()
    df = at.dataframe[0].value
    assert list(df["entropy"]) == sorted(df["entropy"], reverse=True)
    assert list(df["rank"]) == list(range(1, len(df) + 1))
    best = df["id"].iloc[0]
    # select the best candidate and add it: it is stored as the FLAIR patch that holds it
    at.multiselect(key="ann_pick").set_value([best]).run()
    at.text_input(key="ann_note").set_value("roofs?").run()
    at.button(key="ann_add").click().run()
    assert not at.exception and not at.error
    stored = S.SelectionStore(tmp_path / "sel.gpkg").load()
    assert list(stored["id"]) == ["IMG_000473_r000_c000"] and list(stored["note"]) == ["roofs?"]
    assert stored.geometry.iloc[0].bounds == pytest.approx((X0, Y0 - 102.4, X0 + 102.4, Y0))
    assert {b.label for b in at.get("download_button")} == {"Download GPKG", "Download GEOJSON", "Download CSV"}
    # a fresh session (an app restart) finds the selection again
    again = open_page()
    assert any(h.value == "Selections (1)" for h in again.subheader)
