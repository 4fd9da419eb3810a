"""``flair-viz catalog list --json`` run in process on real rasters: kinds, Lambert-93 bounds, bad files listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from flair_viz.cli.main import main
from flair_viz.core.vrt import write_vrt
from tests.helpers import DEMO, DEMO_CATALOG, app_client

FIELDS = {"id", "role", "kind", "domain", "zone", "vintage", "bounds", "title", "nomenclature", "bands", "simulated"}
PATCH = "000473"
FLAIR_PATCH_DIR = DEMO / "flair" / "D004_2021" / "Z6_NU"


def list_json(capsys, catalog: Path) -> list[dict]:
    """Run the CLI; the whole of stdout must be one JSON array."""
    assert main(["catalog", "list", "--json", "--catalog", str(catalog)]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def to_3857(src: Path, dst: Path) -> Path:
    """Reproject a Lambert-93 raster to Web Mercator with rasterio, as a user's scene might come."""
    with rasterio.open(src) as s:
        transform, width, height = calculate_default_transform(s.crs, "EPSG:3857", s.width, s.height, *s.bounds)
        prof = s.profile | dict(crs="EPSG:3857", transform=transform, width=width, height=height)
        with rasterio.open(dst, "w", **prof) as d:
            reproject(rasterio.band(s, 1), rasterio.band(d, 1), resampling=Resampling.nearest)
    return dst


@pytest.fixture()
def tmp_catalog(tmp_path) -> Path:
    """A patch (image + mask), a VRT mosaic over its mask, a 3857 scene, and truncated, non-TIFF and missing files."""
    img = shutil.copy(FLAIR_PATCH_DIR / "img" / f"IMG_{PATCH}.tif", tmp_path / f"IMG_{PATCH}.tif")
    msk = shutil.copy(FLAIR_PATCH_DIR / "msk" / f"MSK_{PATCH}.tif", tmp_path / f"MSK_{PATCH}.tif")
    write_vrt([Path(msk)], tmp_path / "MOSAIC_demo.vrt")
    to_3857(Path(msk), tmp_path / "scene_3857.tif")
    (tmp_path / "truncated.tif").write_bytes(Path(img).read_bytes()[:300])  # cut inside its header
    (tmp_path / "notes.tif").write_text("this is not a tiff", encoding="utf-8")
    entries = [
        dict(id="IMG_P", path=Path(img).name, role="image", patch=PATCH, domain="D004_2021", zone="Z6_NU",
             vintage="2021-07-09", bands=["R", "G", "B", "NIR", "elevation"]),
        dict(id="MSK_P", path=Path(msk).name, role="truth", patch=PATCH, domain="D004_2021", zone="Z6_NU"),
        dict(id="MOSAIC_demo", path="MOSAIC_demo.vrt", role="prediction", title="mosaic"),
        dict(id="SCENE_3857", path="scene_3857.tif", role="truth"),
        dict(id="TRUNCATED", path="truncated.tif", role="image", bands=["R", "G", "B", "NIR", "elevation"]),
        dict(id="NOT_A_TIFF", path="notes.tif", role="truth"),
        dict(id="MISSING", path="missing.tif", role="truth"),
    ]
    lines = ['data_root = "."']
    for e in entries:
        lines.append("[[dataset]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    cat = tmp_path / "catalog.toml"
    cat.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cat


def test_demo_catalog_lists_every_dataset_with_its_header_bounds(capsys):
    rows = list_json(capsys, DEMO_CATALOG)
    from flair_viz.core.catalog import Catalog

    assert len(rows) == len(list(Catalog.load(DEMO_CATALOG))) and all(FIELDS <= set(r) and "error" not in r for r in rows)
    by_id = {r["id"]: r for r in rows}
    zone = [r for r in rows if r["kind"] == "patch" and (r["domain"], r["zone"]) == ("D034_2021", "Z6_NU")
            and r["role"] == "image"]
    assert len(zone) == 25  # the real FLAIR-1 demo zone (data/demo/flair1)
    assert by_id["IMG_000473"]["kind"] == "patch" and by_id["BDORTHO_RGB"]["kind"] == "scene"
    assert (by_id["IMG_000473"]["domain"], by_id["IMG_000473"]["zone"]) == ("D004_2021", "Z6_NU")
    with rasterio.open(FLAIR_PATCH_DIR / "img" / "IMG_000473.tif") as ds:
        assert by_id["IMG_000473"]["bounds"] == pytest.approx(list(ds.bounds), abs=1e-6)
    with rasterio.open(DEMO / "bdortho" / "test_data_rgb.tif") as ds:  # Lambert-93 WKT without an EPSG code
        assert by_id["BDORTHO_RGB"]["bounds"] == pytest.approx(list(ds.bounds), abs=1e-6)


def test_kinds_and_bounds_on_patch_mosaic_and_reprojected_scene(capsys, tmp_catalog):
    by_id = {r["id"]: r for r in list_json(capsys, tmp_catalog)}
    kinds = {k: by_id[k]["kind"] for k in ("IMG_P", "MSK_P", "MOSAIC_demo", "SCENE_3857")}
    assert kinds == {"IMG_P": "patch", "MSK_P": "patch", "MOSAIC_demo": "mosaic", "SCENE_3857": "scene"}
    folder = tmp_catalog.parent
    for ds_id, name in (("IMG_P", f"IMG_{PATCH}.tif"), ("MOSAIC_demo", "MOSAIC_demo.vrt")):
        with rasterio.open(folder / name) as ds:
            assert by_id[ds_id]["bounds"] == pytest.approx(list(ds.bounds), abs=1e-6), ds_id
    with rasterio.open(folder / "scene_3857.tif") as ds:
        assert ds.crs.to_epsg() == 3857
        expected = transform_bounds(ds.crs, "EPSG:2154", *ds.bounds)
        mercator = list(ds.bounds)
    got = by_id["SCENE_3857"]["bounds"]
    assert got == pytest.approx(list(expected), abs=1e-6)
    assert got != pytest.approx(mercator, abs=1.0)  # really reprojected, not the Web Mercator numbers
    assert np.allclose(got, by_id["MSK_P"]["bounds"], atol=2.0)  # the same patch, a resampling away


def test_unreadable_and_missing_files_are_listed_with_an_error(capsys, tmp_catalog):
    rows = list_json(capsys, tmp_catalog)
    assert [r["id"] for r in rows] == ["IMG_P", "MSK_P", "MOSAIC_demo", "SCENE_3857", "TRUNCATED", "NOT_A_TIFF",
                                    "MISSING"]
    by_id = {r["id"]: r for r in rows}
    for ds_id, name in (("TRUNCATED", "truncated.tif"), ("NOT_A_TIFF", "notes.tif"), ("MISSING", "missing.tif")):
        r = by_id[ds_id]
        assert r["bounds"] is None and r["kind"] == "scene"
        assert ds_id in r["error"] and name in r["error"] and "Fix:" in r["error"]
    assert all("error" not in by_id[k] for k in ("IMG_P", "MSK_P", "MOSAIC_demo", "SCENE_3857"))


def test_text_table_stays_the_default(capsys):
    assert main(["catalog", "list", "--catalog", str(DEMO_CATALOG)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:5] == ["id", "role", "domain", "zone", "vintage"]
    assert "IMG_000473" in out and not out.lstrip().startswith("[")


def test_tile_server_datasets_give_the_same_kind_and_fields_without_bounds(capsys, tmp_catalog):
    cli = {r["id"]: r for r in list_json(capsys, tmp_catalog)}
    served = app_client(tmp_catalog).get("/datasets").json()
    assert {d["id"]: d["kind"] for d in served} == {k: r["kind"] for k, r in cli.items()}
    for d in served:  # a request reads no file: the broken ones are listed just the same
        assert {k: v for k, v in cli[d["id"]].items() if k not in ("bounds", "error")} == d
