"""What a scan leaves out is named, kept and shown again later; the one table view of a catalog.

Real FLAIR-layout GeoTIFFs (``grid_tree``), a real file whose name is Latin-1 bytes, and the tile
server in process. Expected IDs, bounds and pixels come from the files the test wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from flair_viz.cli.main import main
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.web import browse
from tests.helpers import app_client, write_tif
from tests.test_catalog_index import SIDE, X0, Y0, N, grid_tree

ZONE = "ZONE_D034_2021_Z9_AA"


def ids_on_disk(folder: Path) -> set[str]:
    return {p.stem for p in folder.rglob("IMG_*.tif")} | {p.stem for p in folder.rglob("MSK_*.tif")}


def latin1_patch(folder: Path) -> bytes:
    """Rename patch 000001 (image and mask) to ``IMG_été`` in Latin-1, as an old disk copy leaves it."""
    zone = folder / "D034_2021" / "Z9_AA"
    for kind, prefix in (("img", "IMG"), ("msk", "MSK")):
        os.rename(zone / kind / f"{prefix}_000001.tif", os.fsencode(zone / kind) + f"/{prefix}_".encode() + b"\xe9t\xe9.tif")
    return b"\\xe9t\\xe9"  # how the raw bytes read in a message


def test_a_non_utf8_file_name_is_named_and_left_out_by_scan_list_and_the_server(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 1, 3)
    shown = latin1_patch(folder)
    good = ids_on_disk(folder)  # rglob's names of the Latin-1 files do not match IMG_*/MSK_* ids of 6 chars
    good = {i for i in good if i.isascii()}
    assert len(good) == 4
    assert main(["catalog", "scan", str(folder), "--catalog", str(tmp_path / "c.toml")]) == 2
    out = capsys.readouterr()
    assert shown.decode() in out.out and "UTF-8" in out.out and "rename" in out.err and "Traceback" not in out.err
    assert good <= {d.id for d in Catalog.load(tmp_path / "c.toml")}
    cat = tmp_path / "data" / "catalog.toml"  # the same folder as a [[scan]] entry, loaded by list and the server
    cat.write_text('data_root = "."\n[[scan]]\npath = "flair"\n', encoding="utf-8")
    assert main(["catalog", "list", "--catalog", str(cat)]) == 0
    out = capsys.readouterr()
    assert shown.decode() in out.err and all(i in out.out for i in good)
    resp = app_client(cat).get("/datasets")
    assert resp.status_code == 200 and good <= {d["id"] for d in resp.json()}


def test_validate_names_what_a_scan_left_out_and_a_mask_without_its_image(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 2, 2)
    zone = folder / "D034_2021" / "Z9_AA"
    (zone / "img" / "IMG_000002.tif").write_bytes(b"II*\x00 not a tiff")
    (zone / "img" / "IMG_000003.tif").unlink()  # MSK_000003 stays without its image
    cat = tmp_path / "c.toml"
    assert main(["catalog", "scan", str(folder), "--catalog", str(cat), "--root", str(tmp_path / "data")]) == 2
    scanned = capsys.readouterr().out
    assert "IMG_000002.tif" in scanned and "MSK_000003.tif" in scanned and "no image" in scanned
    assert main(["catalog", "validate", "--catalog", str(cat)]) == 2  # long after the scan, from the index
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("invalid:")]
    assert len(problems) == 2 and "IMG_000002.tif" in problems[0] + problems[1]
    assert any("MSK_000003.tif" in p and "no image" in p for p in problems)
    assert "MSK_000003" not in {d.id for d in Catalog.load(cat)}


def test_one_odd_patch_is_left_out_of_its_zone_mosaic_not_the_whole_zone(tmp_path, capsys):
    folder = tmp_path / "data" / "flair"
    origins = grid_tree(folder, 2, 2)
    left, top = origins["000003"]
    write_tif(folder / "D034_2021" / "Z9_AA" / "img" / "IMG_000003.tif", np.full((4, N, N), 7, np.uint8),
              origin=(left, top))  # 4 bands among 5-band images: one VRT cannot hold both
    cat = tmp_path / "c.toml"
    assert main(["catalog", "scan", str(folder), "--catalog", str(cat), "--root", str(tmp_path / "data")]) == 2
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("invalid:")] == \
        [line for line in out.splitlines() if "invalid:" in line and "000003" in line and "left out" in line]
    loaded = Catalog.load(cat)
    mosaic = loaded.get(ZONE)
    assert "(3 patches)" in mosaic.title and "(4 patches)" in loaded.get(f"{ZONE}_MSK").title
    with rasterio.open(mosaic.path) as vrt:
        for pid, (x, y) in origins.items():
            got = vrt.read(window=from_bounds(x, y - SIDE, x + SIDE, y, vrt.transform), masked=True)
            if pid == "000003":
                assert got.mask.all()  # a gap, shown transparent
            else:
                with rasterio.open(folder / "D034_2021" / "Z9_AA" / "img" / f"IMG_{pid}.tif") as src:
                    np.testing.assert_array_equal(got.filled(0), src.read())


def text(v) -> str | None:
    """A text cell with pandas' missing values (None, NaN, "") as None."""
    return None if v is None or v == "" or (isinstance(v, float) and np.isnan(v)) else v


def test_the_table_view_is_every_dataset_once_with_shadowing_resolved(tmp_path):
    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 1, 3)
    write_tif(tmp_path / "data" / "scene.tif", np.ones((5, N, N), np.uint8), origin=(X0, Y0))
    write_tif(tmp_path / "data" / "better.tif", np.ones((5, N, N), np.uint8), origin=(X0, Y0))
    cat_file = tmp_path / "data" / "catalog.toml"
    cat_file.write_text('data_root = "."\n[[scan]]\npath = "flair"\n\n[[dataset]]\nid = "SCENE"\npath = "scene.tif"\n'
                        'role = "image"\nvintage = "2020-06-01"\nsimulated = true\n', encoding="utf-8")
    cat = Catalog.load(cat_file)
    cat.add(Dataset("IMG_000001", Path("better.tif"), "image", patch="000001"), replace_existing=True)
    cat.remove("MSK_000002")
    t = cat.table()
    assert list(t["id"]) == [d.id for d in cat] and len(t) == len(cat) == len(ids_on_disk(folder)) - 1 + 1 + 2  # the scene, the zone's 2 mosaics
    for row in t.itertuples():
        d = cat.get(row.id)
        assert (row.role, Path(row.path), text(row.patch), text(row.vintage), bool(row.simulated)) == \
            (d.role, d.path, d.patch, d.vintage, d.simulated)
        assert row.indexed == (row.id not in ("SCENE", "IMG_000001"))
        if row.indexed:  # patches and zone mosaics (VRTs) alike: the bounds of the file
            with rasterio.open(d.path) as ds:
                assert [row.left, row.bottom, row.right, row.top] == pytest.approx(list(ds.bounds))
        else:
            assert np.isnan(row.left)
    assert t.set_index("id").loc["IMG_000001", "path"] == str((tmp_path / "data" / "better.tif").resolve())
    images = browse.image_table(cat)
    assert set(images["id"]) == {d.id for d in cat if d.role == "image"}
    assert images.set_index("id")["single"].to_dict() == \
        {d.id: bool(d.patch) and not d.extra.get("mosaic") for d in cat if d.role == "image"}
