"""Series of N vintages (`flair-viz trend`): intervals equal the pairwise `change` runs and a plain numpy
count; per-region rows and the GeoPackage; the bad-input cases; the catalog series."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Polygon, box

from flair_viz import change
from flair_viz.change import trend as trend_mod
from flair_viz.change.align import ClassSource
from flair_viz.cli import main as cli
from flair_viz.core import classes
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import AlignmentError, FlairVizError
from tests.helpers import DEMO, save_catalog, write_tif

CATALOG = DEMO / "catalog.toml"
V = {c.key: c.value for c in classes.FLAIR1_CLASSES}
FLOWS = ("artificialisation_ha", "deartificialisation_ha", "net_artificialisation_ha")


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- the demo series: trend.csv against `flair-viz change` of each interval ------------------------
def test_demo_series_mixes_real_and_simulated_and_nomenclatures():
    cat = Catalog.load(CATALOG)
    assert "gers" in cat.series_names()
    members = cat.series("gers")
    assert [d.vintage for d in members] == ["2016", "2019", "2022", "2025"]
    assert [d.simulated for d in members] == [False, False, True, True]
    assert {d.nomenclature for d in members} == {"odeon-naf", "flair1"}
    assert all("SIMULATED" in d.title for d in members if d.simulated)


def test_trend_csv_intervals_equal_pairwise_change_commands(tmp_path, capsys):
    out = tmp_path / "trend"
    assert cli.main(["trend", "--series", "gers", "--out", str(out), "--catalog", str(CATALOG)]) == 0
    assert "SIMULATED" in capsys.readouterr().out
    rows = rows_of(out / "trend.csv")
    ids = [d.id for d in Catalog.load(CATALOG).series("gers")]
    assert [(r["before"], r["after"]) for r in rows] == list(zip(ids, ids[1:]))
    assert [(r["before_source"], r["after_source"]) for r in rows] == \
        [("truth", "truth"), ("truth", "simulated"), ("simulated", "simulated")]
    cumulative = 0.0
    for r, (b, a) in zip(rows, zip(ids, ids[1:])):
        pair_out = tmp_path / f"{b}__{a}"
        assert cli.main(["change", b, a, "--out", str(pair_out), "--catalog", str(CATALOG)]) == 0
        s = json.loads((pair_out / "summary.json").read_text())
        for k in FLOWS:
            assert float(r[k]) == s["zan"][k], (r["label"], k)
        assert float(r["changed_ha"]) == s["changed_area_ha"]
        assert float(r["area_ha"]) == s["valid_area_ha"]
        cumulative += s["zan"]["net_artificialisation_ha"]
        assert float(r["cumulative_net_ha"]) == pytest.approx(cumulative, abs=1e-12)
    assert any(float(r["artificialisation_ha"]) > 0 for r in rows)
    assert any(float(r["deartificialisation_ha"]) > 0 for r in rows)


# -- a synthetic series counted with plain numpy ------------------------------------------------------
def natural_artificial() -> tuple[list[int], list[int]]:
    groups = tomllib.loads(change.DEFAULT_GROUPING_PATH.read_text())["groups"]
    return [V[k] for k in groups["natural"]], [V[k] for k in groups["artificial"]]


def synthetic_series(tmp_path: Path, n: int = 4, size: int = 300) -> list[Path]:
    rng = np.random.default_rng(11)
    cur = rng.choice([V["herbaceous"], V["agricultural"], V["deciduous"], V["building"], V["impervious"],
                      V["water"]], size=(size, size)).astype(np.uint8)
    paths = []
    for i in range(n):
        paths.append(write_tif(tmp_path / f"v{i}.tif", cur, block=128))
        cur = cur.copy()
        flip = rng.random(cur.shape) < 0.15
        cur[flip] = rng.integers(1, 20, int(flip.sum()), dtype=np.uint8)
    return paths


def test_trend_intervals_equal_a_plain_numpy_count(tmp_path):
    paths = synthetic_series(tmp_path)
    res = change.compute_trend(paths, block_size=128)  # blocks smaller than the raster: the streaming path
    nat, art = natural_artificial()
    ha = 0.2 * 0.2 / 10_000
    table = res.table()
    assert len(table) == 3 and set(table["before_source"]) == {"file"}
    total = 0.0
    for (_, r), b_path, a_path in zip(table.iterrows(), paths, paths[1:]):
        with rasterio.open(b_path) as b_ds, rasterio.open(a_path) as a_ds:
            b, a = b_ds.read(1), a_ds.read(1)
        art_ha = np.count_nonzero(np.isin(b, nat) & np.isin(a, art)) * ha
        deart_ha = np.count_nonzero(np.isin(b, art) & np.isin(a, nat)) * ha
        assert r["artificialisation_ha"] == pytest.approx(art_ha, rel=1e-12)
        assert r["deartificialisation_ha"] == pytest.approx(deart_ha, rel=1e-12)
        assert r["changed_ha"] == pytest.approx(np.count_nonzero(b != a) * ha, rel=1e-12)
        total += art_ha - deart_ha
        assert r["cumulative_net_ha"] == pytest.approx(total, rel=1e-9)
    assert art_ha > 0 and deart_ha > 0


def test_vintages_given_out_of_order_are_sorted_and_said_so():
    cat = Catalog.load(CATALOG)
    res = change.compute_trend(["GERS_SIM2022", "GERS_NAF_2016", "GERS_NAF_2019"], catalog=cat)
    assert res.labels() == ["2016→2019", "2019→2022"]
    assert any("date order" in n for n in res.notes)


# -- regions: rows sum to the whole, GeoPackage with one column per interval, invalid geometries ----
def regions_file(tmp_path: Path, with_bowtie: bool = False) -> Path:
    x0, y0 = 961436.8, 6329262.4
    geoms = [box(x0, y0 - 30, x0 + 30, y0), box(x0 + 30, y0 - 60, x0 + 60, y0 - 30)]
    names = ["Auch", "Pavie"]
    if with_bowtie:  # self-intersecting: invalid, repaired by make_valid into two triangles
        geoms.append(Polygon([(x0, y0 - 60), (x0 + 20, y0 - 40), (x0, y0 - 40), (x0 + 20, y0 - 60)]))
        names.append("Bowtie")
    path = tmp_path / "regions.gpkg"
    gpd.GeoDataFrame({"name": names}, geometry=geoms, crs="EPSG:2154").to_file(path)
    return path


def test_trend_regions_sum_to_the_whole_and_gpkg_has_a_column_per_interval(tmp_path):
    paths = synthetic_series(tmp_path, n=3)
    out = tmp_path / "out"
    assert cli.main(["trend", *map(str, paths), "--out", str(out), "--regions", str(regions_file(tmp_path, True)),
                     "--catalog", str(tmp_path / "none.toml")]) == 0
    rows = rows_of(out / "trend.csv")
    for i in ("1", "2"):
        mine = [r for r in rows if r["interval"] == i]
        whole = next(r for r in mine if r["region"] == "(all)")
        parts = [r for r in mine if r["region"] != "(all)"]
        assert {r["region"] for r in parts} == {"Auch", "Pavie", "Bowtie", "(outside every region)"}
        for k in (*FLOWS, "area_ha", "changed_ha"):
            assert sum(float(r[k]) for r in parts) == pytest.approx(float(whole[k]), abs=1e-9)
    g = gpd.read_file(out / "regions.gpkg")
    assert list(g["name"]) == ["Auch", "Pavie", "Bowtie"] and g.geometry.is_valid.all()
    for label in ("v0_tif_v1_tif", "v1_tif_v2_tif"):
        assert f"artificialisation_ha_{label}" in g.columns
    auch = g[g["name"] == "Auch"].iloc[0]
    csv_auch = [float(r["artificialisation_ha"]) for r in rows if r["region"] == "Auch"]
    assert [auch["artificialisation_ha_v0_tif_v1_tif"], auch["artificialisation_ha_v1_tif_v2_tif"]] == \
        pytest.approx(csv_auch)
    assert auch["artificialisation_ha_total"] == pytest.approx(sum(csv_auch))
    summary = json.loads((out / "trend.json").read_text())
    assert summary["vintages"][0]["kind"] == "file"
    assert any("Bowtie" in n and "make_valid" in n for n in summary["notes"])  # reported, not dropped


def test_invalid_region_geometry_is_repaired_and_reported_by_name(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    res = change.compute_change(a, b, regions=regions_file(tmp_path, with_bowtie=True))
    assert any("Bowtie" in n and "make_valid" in n for n in res.summary()["alignment"]["notes"])
    table = {r["name"]: r for r in res.region_table()}
    # the repaired bowtie (two 10 m x 10 m triangles = 200 m²) still counts its pixels, none is dropped
    assert table["Bowtie"]["area_ha"] == pytest.approx(0.02, rel=0.05)
    assert sum(r["area_ha"] for r in table.values()) == pytest.approx(res.valid_area_ha())


def test_region_without_geometry_is_refused_by_name(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    path = tmp_path / "r.gpkg"
    gpd.GeoDataFrame({"name": ["Auch", "Nowhere"]}, geometry=[box(961436.8, 6329232.4, 961466.8, 6329262.4), None],
                     crs="EPSG:2154").to_file(path)
    with pytest.raises(FlairVizError) as e:
        change.compute_change(a, b, regions=path)
    assert "Nowhere" in e.value.problem and e.value.fix


def test_change_cli_writes_regions_gpkg_with_from_to_columns(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    out = tmp_path / "out"
    assert cli.main(["change", str(a), str(b), "--out", str(out), "--regions", str(regions_file(tmp_path)),
                     "--catalog", str(tmp_path / "none.toml")]) == 0
    g = gpd.read_file(out / "regions.gpkg")
    res = change.compute_change(a, b, regions=regions_file(tmp_path))
    auch = next(r for r in res.region_table() if r["name"] == "Auch")
    row = g[g["name"] == "Auch"].iloc[0]
    assert row["artificialisation_ha"] == pytest.approx(auch["artificialisation_ha"])
    ft = [c for c in g.columns if c.endswith("_ha") and "_to_" in c]
    assert "herbaceous_to_building_ha" in ft
    assert sum(row[c] for c in ft) == pytest.approx(auch["area_ha"])  # from-to cells add up to the region


# -- bad input --------------------------------------------------------------------------------------
def test_two_vintages_with_the_same_date_are_refused(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    with pytest.raises(FlairVizError) as e:
        trend_mod.check_series([ClassSource(a, vintage="2021"), ClassSource(b, vintage="2021")])
    assert "same date 2021" in e.value.problem and "one raster per date" in e.value.fix


def test_vintages_of_different_places_are_refused(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    far = write_tif(tmp_path / "far.tif", np.full((50, 50), V["building"], np.uint8), origin=(700000.0, 6600000.0))
    with pytest.raises(AlignmentError) as e:
        change.compute_trend([a, b, far])
    assert "do not overlap" in e.value.problem and "far.tif" in e.value.problem and "same place" in e.value.fix


def test_series_mixing_nomenclatures_without_mapping_is_refused(tmp_path):
    a, b = synthetic_series(tmp_path, n=2)
    with pytest.raises(FlairVizError) as e:
        trend_mod.check_series([ClassSource(a, vintage="2019"), ClassSource(b, nomenclature="corine", vintage="2022")])
    assert "corine has no mapping" in e.value.problem and "FLAIR-1" in e.value.fix


def test_cli_trend_errors_exit_2_with_a_fix(tmp_path, capsys):
    (a,) = synthetic_series(tmp_path, n=1)
    assert cli.main(["trend", str(a), "--out", str(tmp_path / "o"), "--catalog", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert "at least two vintages" in err and "fix:" in err and "Traceback" not in err
    assert cli.main(["trend", "--series", "nope", "--out", str(tmp_path / "o"), "--catalog", str(CATALOG)]) == 2
    assert "gers" in capsys.readouterr().err


def test_catalog_series_field_round_trips(tmp_path):
    (a,) = synthetic_series(tmp_path, n=1)
    cat = Catalog(tmp_path, [Dataset(id="A", path=a, role="truth", vintage="2020", series="s1")])
    save_catalog(cat, tmp_path / "c.toml")
    again = Catalog.load(tmp_path / "c.toml")
    assert again.get("A").series == "s1" and again.series_names() == ["s1"]


def test_each_interval_says_whether_its_ends_are_truth_prediction_or_simulated(tmp_path):
    a, b, c = synthetic_series(tmp_path, n=3)
    cat = Catalog(tmp_path, [Dataset(id="T2019", path=a, role="truth", vintage="2019", series="s"),
                             Dataset(id="P2022", path=b, role="prediction", vintage="2022", series="s"),
                             Dataset(id="S2025", path=c, role="truth", vintage="2025", series="s", simulated=True)])
    res = change.compute_trend([d.id for d in change.catalog_series(cat, "s")], catalog=cat)
    t = res.table()
    assert list(zip(t["before_source"], t["after_source"])) == [("truth", "prediction"), ("prediction", "simulated")]
    assert list(t["simulated"]) == [False, True]
