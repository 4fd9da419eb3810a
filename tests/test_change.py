"""Change between vintages: every figure is checked against an independent numpy/shapely computation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.warp
import shapely
from pyproj import Transformer
from rasterio.enums import Resampling
from shapely.geometry import box

from flair_viz import change
from flair_viz.change import outputs as change_outputs
from flair_viz.cli import main as cli
from flair_viz.core import atomic, classes
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import AlignmentError, FlairVizError
from tests.helpers import DEMO, REPO, decode_png, tile_at, tile_to_raster, write_tif

MSK_084558 = DEMO / "flair" / "D036_2020" / "Z17_UA" / "msk" / "MSK_084558.tif"
MSK_050549 = DEMO / "flair" / "D074_2020" / "Z3_UN" / "msk" / "MSK_050549.tif"
SIM_084558 = DEMO / "simulated" / "MSK_084558_simulated_2023.tif"
V = {c.key: c.value for c in classes.FLAIR1_CLASSES}


def read1(path: Path) -> tuple[np.ndarray, rasterio.Affine, object]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


def numpy_from_to(b: np.ndarray, a: np.ndarray, pixel_area_m2: float) -> np.ndarray:
    """The 19×19 matrix in ha by plain boolean counting, one class pair at a time."""
    m = np.zeros((19, 19))
    for i in range(1, 20):
        bi = b == i
        if not bi.any():
            continue
        for j in range(1, 20):
            m[i - 1, j - 1] = np.count_nonzero(bi & (a == j))
    return m * pixel_area_m2 / 10_000


def px_area(t: rasterio.Affine) -> float:
    return abs(t.a) * abs(t.e)


def perturbed(path: Path, out: Path, seed: int = 7, share: float = 0.1) -> Path:
    """A copy of a demo mask where a random share of pixels takes a random class 1..19."""
    data, t, crs = read1(path)
    rng = np.random.default_rng(seed)
    flip = rng.random(data.shape) < share
    data = data.copy()
    data[flip] = rng.integers(1, 20, int(flip.sum()), dtype=np.uint8)
    with rasterio.open(out, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint8",
                       crs=crs, transform=t) as ds:
        ds.write(data, 1)
    return out


# -- from-to matrix ------------------------------------------------------------------------------
def test_matrix_equals_numpy_count_on_demo_mask_vs_simulated_vintage():
    res = change.compute_change(MSK_084558, SIM_084558, block_size=200)  # several blocks, ragged edges
    b, t, _ = read1(MSK_084558)
    a, _, _ = read1(SIM_084558)
    expected = numpy_from_to(b, a, px_area(t))
    np.testing.assert_allclose(res.from_to_ha(), expected, rtol=1e-12, atol=0)
    assert res.changed_area_ha() > 0  # the simulated vintage really differs
    # totals equal the overlap area (full patch here: 512 × 512 × pixel area)
    overlap_ha = b.size * px_area(t) / 10_000
    assert res.from_to_ha().sum() == pytest.approx(overlap_ha, rel=1e-12)
    assert res.summary()["overlap_area_ha"] == pytest.approx(overlap_ha, rel=1e-12)
    np.testing.assert_allclose(res.totals_before_ha(), np.bincount(b.ravel(), minlength=20)[1:] * px_area(t) / 1e4)
    np.testing.assert_allclose(res.totals_after_ha(), np.bincount(a.ravel(), minlength=20)[1:] * px_area(t) / 1e4)
    np.testing.assert_allclose(res.net_change_ha(), res.totals_after_ha() - res.totals_before_ha())


def test_matrix_on_perturbed_copy_and_change_cog(tmp_path):
    after = perturbed(MSK_050549, tmp_path / "after.tif")
    res = change.compute_change(MSK_050549, after, change_cog=tmp_path / "out" / "change.tif", block_size=128)
    b, t, _ = read1(MSK_050549)
    a, _, _ = read1(after)
    np.testing.assert_allclose(res.from_to_ha(), numpy_from_to(b, a, px_area(t)), rtol=1e-12)
    cog, ct, _ = read1(tmp_path / "out" / "change.tif")
    np.testing.assert_array_equal(cog, np.where(b != a, a, 0))
    assert ct.almost_equals(t)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["change.tif"]  # no temp files left


def test_flairhub_nomenclature_gives_the_same_matrix(tmp_path):
    a, t, crs = read1(SIM_084558)
    hub = classes.flair1_to_flairhub_lut()[a]
    hub_path = write_tif(tmp_path / "hub.tif", hub, crs="EPSG:2154", origin=(t.c, t.f), res=t.a)
    flair1 = change.compute_change(MSK_084558, SIM_084558)
    from_hub = change.compute_change(MSK_084558, change.ClassSource(hub_path, nomenclature="flairhub"))
    np.testing.assert_allclose(from_hub.from_to_ha(), flair1.from_to_ha(), rtol=1e-9)


# -- ZAN flows -----------------------------------------------------------------------------------
def tiny_pair(tmp_path: Path) -> tuple[Path, Path]:
    """4×4 rasters with 10 m pixels (0.01 ha each); flows worked out by hand below."""
    h, b_, w, imp = V["herbaceous"], V["building"], V["water"], V["impervious"]
    before = np.array([[h, h, h, h],
                       [h, h, b_, b_],
                       [w, w, imp, imp],
                       [h, h, h, h]], dtype=np.uint8)
    after = np.array([[b_, b_, h, h],  # 2 px natural -> artificial
                      [imp, h, b_, h],  # 1 px natural -> artificial, 1 px artificial -> natural
                      [b_, w, imp, imp],  # 1 px neutral (water) -> artificial: not artificialisation
                      [h, h, h, V["clear_cut"]]], dtype=np.uint8)  # natural -> natural: other change
    return (write_tif(tmp_path / "b.tif", before, res=10.0), write_tif(tmp_path / "a.tif", after, res=10.0))


def test_zan_flows_by_hand(tmp_path):
    b, a = tiny_pair(tmp_path)
    res = change.compute_change(b, a)
    z = res.zan()
    assert z["artificialisation_ha"] == pytest.approx(0.03)  # 3 px × 100 m²
    assert z["deartificialisation_ha"] == pytest.approx(0.01)
    assert z["net_artificialisation_ha"] == pytest.approx(0.02)
    assert res.changed_area_ha() == pytest.approx(0.06)  # 3 + 1 + 1 + 1 px
    assert res.summary()["grouping"]["source"] == str(change.DEFAULT_GROUPING_PATH)


def test_custom_grouping_changes_flows_and_is_recorded(tmp_path):
    b, a = tiny_pair(tmp_path)
    g = tmp_path / "g.toml"
    # water counted as natural: the water -> building pixel becomes artificialisation too
    g.write_text('[groups]\nartificial = ["building", "impervious", "pervious", "swimming_pool", "greenhouse"]\n'
                 'neutral = ["snow"]\n')
    res = change.compute_change(b, a, grouping=g)
    assert res.zan()["artificialisation_ha"] == pytest.approx(0.04)
    s = res.summary()["grouping"]
    assert s["source"] == str(g) and 'neutral = ["snow"]' in s["content"]
    assert "water" in s["groups"]["natural"]


@pytest.mark.parametrize("text,needle", [
    ('[groups]\nartificial = ["building"]\nneutral = ["water"]\nnatural = ["herbaceous"]\n', "no group"),
    ('[groups]\nartificial = ["buildings"]\n', "unknown class keys"),
    ('[groups]\nartificial = ["building"]\nnatural = ["building"]\n', "more than one group"),
    ("groups = 3", "no [groups]"),
    ("[groups\n", "not valid TOML"),
])
def test_bad_grouping_is_a_clear_error(tmp_path, text, needle):
    g = tmp_path / "g.toml"
    g.write_text(text)
    with pytest.raises(FlairVizError) as e:
        change.load_grouping(g)
    assert needle in e.value.problem and e.value.fix


def test_default_grouping_matches_design():
    g = change.load_grouping()
    assert set(g.groups["artificial"]) == {"building", "impervious", "pervious", "swimming_pool", "greenhouse"}
    assert set(g.groups["neutral"]) == {"water", "snow"}
    assert set(g.groups["natural"]) == set(classes.BY_KEY) - set(g.groups["artificial"]) - set(g.groups["neutral"])


# -- alignment -----------------------------------------------------------------------------------
def test_coarser_after_is_resampled_nearest_and_reported(tmp_path):
    b, t, _ = read1(MSK_084558)
    coarse = perturbed(MSK_084558, tmp_path / "p.tif")
    small = read1(coarse)[0][::2, ::2].copy()  # 0.4 m, same origin
    after = write_tif(tmp_path / "coarse.tif", small, origin=(t.c, t.f), res=2 * t.a)
    res = change.compute_change(MSK_084558, after)
    assert res.alignment.resampled
    assert any("resampled" in n and "nearest" in n for n in res.summary()["alignment"]["notes"])
    expected_after = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # nearest onto the 0.2 m grid
    np.testing.assert_allclose(res.from_to_ha(), numpy_from_to(b, expected_after, px_area(t)), rtol=1e-12)


def test_crs_mismatch_is_resampled_and_reported(tmp_path):
    b, t, crs = read1(MSK_084558)
    dst_crs = "EPSG:3857"
    dt, w, h = rasterio.warp.calculate_default_transform(crs, dst_crs, b.shape[1], b.shape[0],
                                                         *rasterio.transform.array_bounds(b.shape[0], b.shape[1], t))
    merc = np.zeros((h, w), dtype=np.uint8)
    rasterio.warp.reproject(b, merc, src_transform=t, src_crs=crs, dst_transform=dt, dst_crs=dst_crs,
                            resampling=Resampling.nearest, dst_nodata=0)
    merc_path = tmp_path / "merc.tif"
    with rasterio.open(merc_path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=dst_crs,
                       transform=dt, nodata=0) as ds:
        ds.write(merc, 1)
    res = change.compute_change(MSK_084558, merc_path)
    assert res.alignment.resampled
    assert any("EPSG:3857" in n and "resampled" in n for n in res.alignment.notes)
    # independent: warp the Mercator raster back with rasterio.warp.reproject and count with numpy
    back = np.zeros_like(b)
    rasterio.warp.reproject(merc, back, src_transform=dt, src_crs=dst_crs, dst_transform=t, dst_crs=crs,
                            resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    np.testing.assert_allclose(res.from_to_ha(), numpy_from_to(b, back, px_area(t)), rtol=1e-12)
    # a round trip through Mercator keeps almost every pixel's class
    assert np.trace(res.from_to_ha()) > 0.97 * res.valid_area_ha()
    assert res.summary()["nodata_area_ha"] == pytest.approx(np.count_nonzero(back == 0) * px_area(t) / 1e4)


def test_no_overlap_error_gives_both_extents():
    with pytest.raises(AlignmentError) as e:
        change.compute_change(MSK_084558, MSK_050549)
    assert "606416.00" in e.value.problem and "942390.40" in e.value.problem and e.value.fix


def test_partial_overlap_is_computed_on_the_intersection(tmp_path):
    b, t, _ = read1(MSK_084558)
    a_full = read1(perturbed(MSK_084558, tmp_path / "p.tif"))[0]
    a = a_full[50:, 100:].copy()  # crop: the after raster starts 100 px east and 50 px south
    after = write_tif(tmp_path / "crop.tif", a, origin=(t.c + 100 * t.a, t.f + 50 * t.e), res=t.a)
    res = change.compute_change(MSK_084558, after)
    assert res.alignment.partial and not res.alignment.resampled
    overlap_ha = a.size * px_area(t) / 1e4
    assert res.summary()["overlap_area_ha"] == pytest.approx(overlap_ha, rel=1e-9)
    assert res.from_to_ha().sum() == pytest.approx(overlap_ha, rel=1e-9)
    np.testing.assert_allclose(res.from_to_ha(), numpy_from_to(b[50:, 100:], a, px_area(t)), rtol=1e-12)
    assert any("partial overlap" in n for n in res.alignment.notes)


def test_image_is_refused_as_a_class_raster():
    cat = Catalog.load(DEMO / "catalog.toml")
    with pytest.raises(FlairVizError, match="role 'image'"):
        change.compute_change("MSK_084558", "IMG_084558", catalog=cat)


# -- regions -------------------------------------------------------------------------------------
def reproject_geom(g, tr: Transformer):
    return shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def pixel_centres(shape: tuple[int, int], t: rasterio.Affine) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e


def test_region_breakdown_sums_to_total_and_matches_point_in_polygon(tmp_path):
    b, t, _ = read1(MSK_084558)
    a, _, _ = read1(SIM_084558)
    x0, y1 = t.c, t.f
    west = box(x0 + 3.05, y1 - 90.25, x0 + 50.05, y1 - 2.65)  # edges between pixel centres
    east = box(x0 + 50.05, y1 - 101.05, x0 + 99.85, y1 - 40.25)
    to_wgs = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    gdf = gpd.GeoDataFrame({"nom": ["west", "east"]},
                           geometry=[reproject_geom(g, to_wgs) for g in (west, east)],
                           crs="EPSG:4326")
    gj = tmp_path / "regions.geojson"
    gdf.to_file(gj, driver="GeoJSON")
    res = change.compute_change(MSK_084558, SIM_084558, regions=gj, block_size=200)
    rows = {r["name"]: r for r in res.region_table()}
    assert set(rows) == {"west", "east", "(outside every region)"}
    for key in ("area_ha", "changed_ha", "artificialisation_ha", "deartificialisation_ha"):
        total = res.valid_area_ha() if key == "area_ha" else (res.changed_area_ha() if key == "changed_ha"
                                                              else res.zan()[key])
        assert sum(r[key] for r in rows.values()) == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert any("reprojected" in n for n in res.summary()["alignment"]["notes"])
    # independent: pixel centres inside each polygon (reprojected back with pyproj), counted with numpy
    to_l93 = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True)
    xs, ys = pixel_centres(b.shape, t)
    art = change.load_grouping().flow_matrix() == change.FLOW_ARTIFICIALISATION
    for name, g in zip(gdf["nom"], gdf.geometry):
        inside = shapely.contains_xy(reproject_geom(g, to_l93), xs, ys)
        assert rows[name]["area_ha"] == pytest.approx(inside.sum() * px_area(t) / 1e4, rel=1e-9)
        exp_art = np.count_nonzero(inside & art[b, a]) * px_area(t) / 1e4
        assert rows[name]["artificialisation_ha"] == pytest.approx(exp_art, rel=1e-9, abs=1e-12)
    assert rows["west"]["artificialisation_ha"] + rows["east"]["artificialisation_ha"] > 0


def test_overlapping_regions_still_sum_to_total(tmp_path):
    _, t, _ = read1(MSK_084558)
    x0, y1 = t.c, t.f
    gdf = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[box(x0, y1 - 60, x0 + 60, y1), box(x0 + 30, y1 - 90, x0 + 90, y1 - 30)],
                           crs="EPSG:2154")
    gp = tmp_path / "r.gpkg"
    gdf.to_file(gp, driver="GPKG")
    res = change.compute_change(MSK_084558, SIM_084558, regions=gp)
    assert sum(r["area_ha"] for r in res.region_table()) == pytest.approx(res.valid_area_ha(), rel=1e-12)


def test_bad_region_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "r.geojson"
    bad.write_text("{not json")
    with pytest.raises(FlairVizError) as e:
        change.compute_change(MSK_084558, SIM_084558, regions=bad)
    assert "regions" in e.value.problem and e.value.fix


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_writes_the_same_figures(tmp_path, capsys):
    _, t, _ = read1(MSK_084558)
    gp = tmp_path / "r.gpkg"
    gpd.GeoDataFrame({"name": ["n"]}, geometry=[box(t.c, t.f - 50, t.c + 50, t.f)], crs="EPSG:2154").to_file(gp)
    out = tmp_path / "out"
    rc = cli.main(["change", "MSK_084558", "MSK_084558_SIM2023", "--out", str(out), "--regions", str(gp),
                   "--catalog", str(DEMO / "catalog.toml")])
    assert rc == 0
    published = ["change.qml", "change.tif", "flow.qml", "flow.tif", "from_to.csv", "regions.csv", "regions.gpkg",
                 "summary.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*published, atomic.SET_MANIFEST])
    assert sorted(p.name for p in atomic.check_set(out)) == published  # one complete set
    b, _, _ = read1(MSK_084558)
    a, _, _ = read1(SIM_084558)
    expected = numpy_from_to(b, a, px_area(t))
    with open(out / "from_to.csv") as fh:
        rows = list(csv.reader(fh))
    names = [c.name for c in classes.FLAIR1_CLASSES]
    assert rows[0][1:] == names and [r[0] for r in rows[1:]] == names
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), expected, rtol=1e-15)
    s = json.loads((out / "summary.json").read_text())
    art = change.load_grouping().flow_matrix() == change.FLOW_ARTIFICIALISATION
    assert s["zan"]["artificialisation_ha"] == pytest.approx(np.count_nonzero(art[b, a]) * px_area(t) / 1e4, rel=1e-12)
    assert s["simulated"] is True and "artificial" in s["grouping"]["content"]
    with open(out / "regions.csv") as fh:
        reg = list(csv.DictReader(fh))
    assert sum(float(r["area_ha"]) for r in reg) == pytest.approx(b.size * px_area(t) / 1e4, rel=1e-12)
    assert "SIMULATED" in capsys.readouterr().out


def test_cli_error_exits_2_without_traceback_or_partial_files(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["change", str(MSK_084558), str(MSK_050549), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "fix:" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_from_to_csv_keeps_sub_square_metre_precision(tmp_path):
    b, a = tiny_pair(tmp_path)
    res = change.compute_change(b, a)
    text = change_outputs.from_to_csv(res)
    values = [float(v) for line in text.splitlines()[1:] for v in line.split(",")[1:]]
    np.testing.assert_allclose(sorted(values, reverse=True)[:3], sorted(res.from_to_ha().ravel(), reverse=True)[:3],
                               rtol=1e-15)


# -- tiles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["class", "flow"])
def test_change_tile_matches_numpy_at_map_coordinates(mode, client):
    b, t, _ = read1(MSK_084558)
    a, _, _ = read1(SIM_084558)
    # the tile holding the simulated development (rows 330-490, cols 0-200)
    tile = tile_at(t.c + 20, t.f - 80, "EPSG:2154", 19)
    r = client.get(f"/change/MSK_084558/MSK_084558_SIM2023/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
                   f"?mode={mode}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = decode_png(r)  # (256, 256, 4) RGBA
    fc, fr = tile_to_raster(tile, MSK_084558)
    col, row = np.floor(fc).astype(int), np.floor(fr).astype(int)
    inside = (col >= 0) & (col < 512) & (row >= 0) & (row < 512)
    # skip tile pixels whose centre falls within 5% of a raster pixel edge (where rounding may differ)
    safe = inside & (np.abs(fc - np.round(fc)) > 0.05) & (np.abs(fr - np.round(fr)) > 0.05)
    bb = np.where(inside, b[row.clip(0, 511), col.clip(0, 511)], 0)
    aa = np.where(inside, a[row.clip(0, 511), col.clip(0, 511)], 0)
    changed = (bb != aa) & (bb > 0) & (aa > 0)
    if mode == "class":
        expected = classes.palette_rgba()[np.where(changed, aa, 0)]
    else:
        grp = {k: g for g, ks in change.load_grouping().groups.items() for k in ks}
        keys = {c.value: c.key for c in classes.FLAIR1_CLASSES}
        expected = np.zeros(bb.shape + (4,), dtype=np.uint8)
        for (i, j) in zip(*np.nonzero(changed)):
            gb, ga = grp[keys[bb[i, j]]], grp[keys[aa[i, j]]]
            flow = 1 if (gb, ga) == ("natural", "artificial") else 2 if (gb, ga) == ("artificial", "natural") else 3
            expected[i, j] = change.FLOW_COLORS[flow]
    assert changed[safe].sum() > 1000  # the tile really shows change
    np.testing.assert_array_equal(got[safe][:, 3], expected[safe][:, 3])
    opaque = safe & (expected[..., 3] > 0)
    np.testing.assert_array_equal(got[opaque][:, :3], expected[opaque][:, :3])


def test_change_tile_errors_are_json(client):
    r = client.get("/change/MSK_084558/IMG_084558/tiles/WebMercatorQuad/19/264726/184782.png")
    assert r.status_code == 400 and r.json()["fix"]
    r = client.get("/change/MSK_084558/NOPE/tiles/WebMercatorQuad/19/264726/184782.png")
    assert r.status_code == 404
    r = client.get("/change/MSK_084558/MSK_084558_SIM2023/tiles/WebMercatorQuad/19/1/1.png")
    assert r.status_code == 404  # outside both rasters


# -- page ----------------------------------------------------------------------------------------
def test_change_page_shows_the_library_figures(monkeypatch):
    from streamlit.testing.v1 import AppTest

    import ui.common

    monkeypatch.setenv("FLAIR_VIZ_CATALOG", str(DEMO / "catalog.toml"))
    monkeypatch.setattr(ui.common, "tiles_url", lambda: "http://127.0.0.1:9")  # maps are not fetched in AppTest
    at = AppTest.from_file(str(REPO / "pages" / "3_Change.py"), default_timeout=60).run()
    assert not at.exception
    cat = Catalog.load(DEMO / "catalog.toml")
    for index in (0, 1):
        pair = change.list_pairs(cat)[index]
        if index:
            at.selectbox(key="change_pair").set_value(index).run()
            assert not at.exception
        res = change.compute_change(pair.before.id, pair.after.id, catalog=cat)
        shown = {m.label: m.value for m in at.metric}
        z = res.zan()
        assert shown["Artificialisation"] == f"{z['artificialisation_ha']:.4f} ha"
        assert shown["De-artificialisation"] == f"{z['deartificialisation_ha']:.4f} ha"
        assert shown["Net artificialisation"] == f"{z['net_artificialisation_ha']:.4f} ha"
        assert shown["Area compared"] == f"{res.valid_area_ha():.4f} ha"
        assert z["artificialisation_ha"] > 0
        # the real Gers pair comes first, without the SIMULATED warning; the simulated ones keep it
        assert index or not pair.simulated
        assert any("SIMULATED" in w.value for w in at.warning) == pair.simulated
        assert any(str(change.DEFAULT_GROUPING_PATH) in e.label for e in at.expander)
    assert not at.error


def test_non_uint8_or_ungeoreferenced_rasters_are_refused(tmp_path):
    wide = write_tif(tmp_path / "u16.tif", np.ones((8, 8), dtype=np.uint16))
    with pytest.raises(FlairVizError, match="uint8"):
        change.compute_change(MSK_084558, wide)
    nocrs = write_tif(tmp_path / "nocrs.tif", np.ones((8, 8), dtype=np.uint8), crs=None)
    with pytest.raises(AlignmentError, match="no CRS"):
        change.compute_change(nocrs, MSK_084558)


def test_simulated_vintages_only_make_the_documented_changes_and_are_labelled():
    cat = Catalog.load(DEMO / "catalog.toml")
    sims = [d for d in cat if d.simulated and d.role == "truth"]
    assert len(sims) >= 4
    allowed = {(b, a) for b in (V["bare_soil"], V["brushwood"], V["herbaceous"], V["agricultural"], V["plowed"])
               for a in (V["building"], V["impervious"])}
    allowed |= {(f, V["clear_cut"]) for f in (V["coniferous"], V["deciduous"], V["mixed"])}
    allowed |= {(V["impervious"], V["herbaceous"])}
    for sim in sims:
        orig = cat.get(sim.extra["simulated_from"])
        b, tb, _ = read1(orig.path)
        a, ta, _ = read1(sim.path)
        assert ta == tb and a.shape == b.shape
        # the Gers series is simulated in FLAIR-1 values after raw ODEON codes: compare classes
        b, a = classes.to_flair1(b, orig.nomenclature), classes.to_flair1(a, sim.nomenclature)
        diff = b != a
        assert diff.any()
        pairs = set(zip(b[diff].tolist(), a[diff].tolist()))
        assert pairs <= allowed, pairs - allowed
        assert "simulated" in sim.path.name and "SIMULATED" in sim.title and sim.vintage > orig.vintage
    changes = [d for d in cat if d.role == "change" and d.simulated]
    assert {(c.extra["before"], c.extra["after"]) for c in changes} == \
        {(s.extra["simulated_from"], s.id) for s in sims if s.series is None}  # series: the trend, no stored COG
    for c in changes:  # the stored change COG is what compute_change writes for its pair
        cog, _, _ = read1(c.path)
        b = read1(cat.get(c.extra["before"]).path)[0]
        a = read1(cat.get(c.extra["after"]).path)[0]
        np.testing.assert_array_equal(cog, np.where(b != a, a, 0))


def test_uploads_are_kept_by_content_under_the_user_data_folder(_isolated_user_data):
    text = change.DEFAULT_GROUPING_PATH.read_bytes()
    p1 = change.store_upload(text, "mine.toml", "grouping")
    p2 = change.store_upload(text, "other-name.toml", "grouping")
    assert p1 == p2 and p1.read_bytes() == text and p1.is_relative_to(_isolated_user_data)
    assert change.load_grouping(p1).groups == change.load_grouping().groups
    with pytest.raises(FlairVizError, match="GeoPackage"):
        change.store_upload(b"x", "regions.shp", "regions")
