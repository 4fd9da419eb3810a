"""``catalog scan`` into a Parquet patch index: a 10×10 zone as one mosaic, filters and get-by-ID, bad input.

Every expectation is computed from what the test wrote (origins, sizes, file names), never from the
index itself, so a wrong bound, a lost patch or a misfiled zone shows up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio

from flair_viz.cli.main import main
from flair_viz.core import index
from flair_viz.core.catalog import Catalog
from tests.helpers import write_tif

X0, Y0, RES, N = 961_000.0, 6_329_000.0, 0.2, 32  # patch origin, pixel size, patch size (px)
SIDE = N * RES
LOCAL_CS = ('LOCAL_CS["RGF93 v1 / Lambert-93",UNIT["metre",1,AUTHORITY["EPSG","9001"]],'
            'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')


def grid_tree(root: Path, rows: int = 10, cols: int = 10, domain: str = "D034_2021", zone: str = "Z9_AA",
              first: int = 0, seed: int = 0, mask_crs: str = "EPSG:2154") -> dict[str, tuple[float, float]]:
    """rows×cols adjacent patches (5-band image + mask) in FLAIR layout; returns {patch: (left, top)}."""
    rng = np.random.default_rng(seed)
    origins = {}
    for r in range(rows):
        for c in range(cols):
            pid = f"{first + r * cols + c:06d}"
            left, top = X0 + c * SIDE, Y0 - r * SIDE
            write_tif(root / domain / zone / "img" / f"IMG_{pid}.tif",
                      rng.integers(1, 256, (5, N, N), dtype=np.uint8), origin=(left, top), res=RES)
            write_tif(root / domain / zone / "msk" / f"MSK_{pid}.tif",
                      rng.integers(1, 20, (N, N), dtype=np.uint8), origin=(left, top), res=RES, crs=mask_crs)
            origins[pid] = (left, top)
    return origins


def scan(tmp_path: Path, folder: Path, *extra: str) -> tuple[int, Path]:
    cat = tmp_path / "catalog.toml"
    rc = main(["catalog", "scan", str(folder), "--catalog", str(cat), "--root", str(tmp_path / "data"), *extra])
    return rc, cat


def listing(capsys, cat: Path) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["catalog", "list", "--json", "--catalog", str(cat)]) == 0
    return {r["id"]: r for r in json.loads(capsys.readouterr().out)}


def test_a_10x10_zone_is_one_mosaic_whose_bounds_cover_every_patch(tmp_path, capsys):
    origins = grid_tree(tmp_path / "data" / "flair", mask_crs=LOCAL_CS)  # FLAIR-1's mask CRS quirk
    rc, cat = scan(tmp_path, tmp_path / "data" / "flair")
    assert rc == 0, capsys.readouterr()
    rows = listing(capsys, cat)
    mosaics = [r for r in rows.values() if r["kind"] == "mosaic"]
    assert sorted(r["id"] for r in mosaics) == ["ZONE_D034_2021_Z9_AA", "ZONE_D034_2021_Z9_AA_MSK"]
    want = [min(x for x, _ in origins.values()), min(y for _, y in origins.values()) - SIDE,
            max(x for x, _ in origins.values()) + SIDE, max(y for _, y in origins.values())]
    assert want == pytest.approx([X0, Y0 - 10 * SIDE, X0 + 10 * SIDE, Y0])
    for m in mosaics:
        assert m["bounds"] == pytest.approx(want, abs=1e-6)
        assert (m["domain"], m["zone"], m["vintage"]) == ("D034_2021", "Z9_AA", "2021")
        with rasterio.open(Catalog.load(cat).get(m["id"]).path) as ds:  # the VRT itself, not only the index
            assert list(ds.bounds) == pytest.approx(want, abs=1e-6) and ds.crs.to_epsg() == 2154
            assert ds.count == (5 if m["role"] == "image" else 1) and ds.shape == (10 * N, 10 * N)
    patches = [r for r in rows.values() if r["kind"] == "patch"]
    assert len(patches) == 200 and {r["role"] for r in patches} == {"image", "truth"}  # LOCAL_CS masks accepted
    for pid, (left, top) in list(origins.items())[::17]:
        assert rows[f"MSK_{pid}"]["bounds"] == pytest.approx([left, top - SIDE, left + SIDE, top], abs=1e-6)


def test_filter_get_by_id_patch_table_and_the_toml_kept_human(tmp_path, capsys):
    grid_tree(tmp_path / "data" / "flair", 3, 4, "D034_2021", "Z1_UU")
    grid_tree(tmp_path / "data" / "flair", 2, 2, "D051_2019", "Z2_NN", first=500, seed=1)
    cat_file = tmp_path / "catalog.toml"
    cat_file.write_text('# my notes\ndata_root = "data"\nattribution = "me"\n', encoding="utf-8")
    rc, _ = scan(tmp_path, tmp_path / "data" / "flair")
    assert rc == 0
    rc, _ = scan(tmp_path, tmp_path / "data" / "flair")  # a rescan replaces its block, never duplicates it
    text = cat_file.read_text(encoding="utf-8")
    assert rc == 0 and text.startswith("# my notes\n") and text.count("[[index]]") + text.count("index = [") == 1
    assert "[[dataset]]" not in text  # 28 patches, and not one TOML entry per file
    cat = Catalog.load(cat_file)
    assert len(cat) == 2 * (12 + 4) + 4  # images, masks, and 2 mosaics per zone
    assert {d.id for d in cat.filter(role="image", domain="D051_2019", kind="patch")} == \
        {f"IMG_{i:06d}" for i in range(500, 504)}
    assert {d.patch for d in cat.filter(role="truth", zone="Z1_UU")} == {f"{i:06d}" for i in range(12)} | {None}
    assert {d.id for d in cat.filter(year="2019", kind="mosaic")} == {"ZONE_D051_2019_Z2_NN", "ZONE_D051_2019_Z2_NN_MSK"}
    d = cat.get("MSK_000005")
    with rasterio.open(tmp_path / "data" / "flair" / "D034_2021" / "Z1_UU" / "msk" / "MSK_000005.tif") as ds:
        assert d.path.samefile(ds.name) and (d.role, d.zone, d.vintage) == ("truth", "Z1_UU", "2021")
        bounds = list(ds.bounds)
    assert cat.truth_of(cat.get("IMG_000005")).id == "MSK_000005"
    assert cat.truth_of(cat.get("ZONE_D034_2021_Z1_UU")).id == "ZONE_D034_2021_Z1_UU_MSK"
    with pytest.raises(Exception, match="Unknown dataset ID 'IMG_999999'"):
        cat.get("IMG_999999")
    table = index.patch_table(cat)
    assert list(table.columns) == ["id", "role", "domain", "zone", "vintage", "patch", "left", "bottom", "right", "top"]
    assert len(table) == 32 and table.set_index("id").loc["MSK_000005", ["left", "bottom", "right", "top"]].tolist() \
        == pytest.approx(bounds)
    parquet = next((tmp_path / "catalog.index").glob("*.parquet"))
    assert pq.read_table(parquet).num_rows == 36  # the index is real Parquet, one row per dataset


def test_broken_duplicate_and_misaligned_files_are_named_and_the_rest_indexed(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 2, 3, zone="Z1_UU")
    zone = folder / "D034_2021" / "Z1_UU"
    (zone / "img" / "IMG_000001.tif").write_bytes(b"not a tiff at all")
    good = (zone / "img" / "IMG_000002.tif").read_bytes()
    (zone / "img" / "IMG_000002.tif").write_bytes(good[: len(good) // 2])  # truncated copy
    write_tif(zone / "msk" / "MSK_000003.tif", np.ones((N, N), np.uint8), origin=(X0 + 1.0, Y0 - SIDE))
    grid_tree(folder, 1, 1, zone="Z7_XX", first=4, seed=3)  # IMG_000004 again, in another zone
    rc, cat_file = scan(tmp_path, folder)
    out = capsys.readouterr().out
    assert rc == 2
    problems = [line for line in out.splitlines() if line.startswith("invalid:")]
    assert len(problems) == 4, out
    assert any("IMG_000001.tif" in p for p in problems) and any("IMG_000002.tif" in p for p in problems)
    assert any("Patch 000003" in p and "MSK_000003.tif" in p and "same pixel grid" in p for p in problems)
    assert any("Duplicate patch ID 000004" in p and "Z7_XX" in p for p in problems)
    cat = Catalog.load(cat_file)
    ids = {d.id for d in cat if not d.extra.get("mosaic")}
    assert ids == {"IMG_000000", "MSK_000000", "IMG_000003", "IMG_000004", "MSK_000004", "IMG_000005", "MSK_000005"}
    assert cat.get("IMG_000004").zone == "Z1_UU"  # the first one found was kept


def test_a_zone_in_two_crs_is_refused_with_the_reason_and_other_zones_still_mosaic(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 2, 2, zone="Z1_UU")
    grid_tree(folder, 1, 2, zone="Z2_MIX", first=10)
    img = folder / "D034_2021" / "Z2_MIX" / "img" / "IMG_000011.tif"
    msk = folder / "D034_2021" / "Z2_MIX" / "msk" / "MSK_000011.tif"
    for p, data in ((img, np.full((5, N, N), 9, np.uint8)), (msk, np.ones((N, N), np.uint8))):
        write_tif(p, data, crs="EPSG:32631", origin=(500_000.0, 4_800_000.0))
    rc, cat_file = scan(tmp_path, folder)
    out = capsys.readouterr().out
    assert rc == 2
    refused = [line for line in out.splitlines() if "ZONE_D034_2021_Z2_MIX" in line]
    assert refused and all("2 CRSs" in line and ("IMG_000011" in line or "MSK_000011" in line) for line in refused)
    ids = {d.id for d in Catalog.load(cat_file)}
    assert {"ZONE_D034_2021_Z1_UU", "ZONE_D034_2021_Z1_UU_MSK", "IMG_000011"} <= ids
    assert "ZONE_D034_2021_Z2_MIX" not in ids


def test_domain_mosaics_cover_every_zone_of_the_domain(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 2, 2, zone="Z1_UU")
    grid_tree(folder, 1, 3, zone="Z2_UU", first=10)  # the same rows further east, as a second zone
    for p in sorted((folder / "D034_2021" / "Z2_UU").glob("*/*.tif")):
        with rasterio.open(p) as ds:
            data, left = ds.read(), ds.bounds.left
        write_tif(p, data, origin=(left + 2 * SIDE, Y0), res=RES)
    rc, cat_file = scan(tmp_path, folder, "--mosaics", "zone,domain")
    assert rc == 0, capsys.readouterr()
    rows = listing(capsys, cat_file)
    assert {i for i, r in rows.items() if r["kind"] == "mosaic"} == {
        "ZONE_D034_2021_Z1_UU", "ZONE_D034_2021_Z1_UU_MSK", "ZONE_D034_2021_Z2_UU", "ZONE_D034_2021_Z2_UU_MSK",
        "DOMAIN_D034_2021", "DOMAIN_D034_2021_MSK"}
    assert rows["DOMAIN_D034_2021"]["bounds"] == pytest.approx([X0, Y0 - 2 * SIDE, X0 + 5 * SIDE, Y0], abs=1e-6)
    assert rows["DOMAIN_D034_2021"]["zone"] is None
    with rasterio.open(Catalog.load(cat_file).get("DOMAIN_D034_2021").path) as ds, \
            rasterio.open(folder / "D034_2021" / "Z2_UU" / "img" / "IMG_000012.tif") as patch:
        np.testing.assert_array_equal(ds.read(window=rasterio.windows.Window(4 * N, 0, N, N)), patch.read())


def test_scan_entries_are_cached_by_folder_stamp_and_rescanned_when_patches_change(tmp_path):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 2, 2)
    cat_file = tmp_path / "data" / "catalog.toml"
    cat_file.write_text('data_root = "."\n[[scan]]\npath = "flair"\n', encoding="utf-8")
    first = Catalog.load(cat_file)
    assert len(first) == 8 + 2 and "ZONE_D034_2021_Z9_AA" in first
    cached = sorted((Path(first.get("ZONE_D034_2021_Z9_AA").path).parent.parent).glob("*.parquet"))
    assert len(cached) == 1
    assert len(Catalog.load(cat_file)) == 10 and len(sorted(cached[0].parent.glob("*.parquet"))) == 1  # reused
    grid_tree(folder, 1, 1, zone="Z3_NEW", first=90)
    again = Catalog.load(cat_file)
    assert "IMG_000090" in again and len(sorted(cached[0].parent.glob("*.parquet"))) == 2


def test_a_damaged_index_file_names_the_fix(tmp_path, capsys):
    grid_tree(tmp_path / "data" / "flair", 1, 2)
    rc, cat_file = scan(tmp_path, tmp_path / "data" / "flair")
    assert rc == 0
    parquet = next((tmp_path / "catalog.index").glob("*.parquet"))
    pd.DataFrame({"id": ["x"]}).to_parquet(parquet)
    capsys.readouterr()
    assert main(["catalog", "list", "--catalog", str(cat_file)]) == 2
    err = capsys.readouterr().err
    assert "lacks the columns" in err and "catalog scan" in err


def scan_with_a_broken_patch(tmp_path: Path, rows: int, cols: int) -> tuple[Path, Path, Path]:
    """(FLAIR folder, its broken image, a catalog naming the folder with [[scan]]): one patch is not a TIFF."""
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, rows, cols)
    bad = sorted(folder.rglob("IMG_*.tif"))[-1]
    bad.write_bytes(b"II*\x00 not a tiff")
    cat_file = tmp_path / "data" / "catalog.toml"
    cat_file.write_text('data_root = "."\n[[scan]]\npath = "flair"\n', encoding="utf-8")
    return folder, bad, cat_file


def test_a_broken_file_in_a_scan_folder_is_left_out_and_named(tmp_path, capsys):
    """One corrupt patch among many must not take the catalog (and every page) down: it is left out, named
    with its fix on each load (cached or not), by `catalog list` and `catalog validate`; the rest loads."""
    folder, bad, cat_file = scan_with_a_broken_patch(tmp_path, 2, 2)
    for _ in range(2):  # scanned, then from the scan cache
        cat = Catalog.load(cat_file)
        good = {p.stem for p in folder.rglob("IMG_*.tif")} - {bad.stem}
        assert good <= {d.id for d in cat} and bad.stem not in cat
        assert len(cat.problems) == 1 and bad.name in cat.problems[0] and "Fix:" in cat.problems[0]
    assert main(["catalog", "list", "--catalog", str(cat_file)]) == 0
    out = capsys.readouterr()
    assert bad.name in out.err and "IMG_" in out.out and bad.stem not in out.out
    assert main(["catalog", "validate", "--catalog", str(cat_file)]) == 2
    assert bad.name in capsys.readouterr().out
