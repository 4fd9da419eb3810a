"""Corrections: the GeoPackage store (add, brush strokes, edit, delete, restarts), bad input, FLAIR mask export."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer

from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, NotFound
from flair_viz.correct import export, store
from tests.helpers import write_tif

ORIGIN = (961436.8, 6329262.4)
TO_WGS84 = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)


def scene_catalog(tmp_path: Path, size: int = 512, bands: int = 5, name: str = "IMG_900001") -> Catalog:
    """A catalog with one 0.2 m image at ORIGIN (and a second image far away)."""
    rng = np.random.default_rng(0)
    write_tif(tmp_path / f"{name}.tif", rng.integers(0, 255, (bands, size, size), dtype=np.uint8), origin=ORIGIN)
    write_tif(tmp_path / "FAR.tif", rng.integers(0, 255, (5, 64, 64), dtype=np.uint8), origin=(700000.0, 6600000.0))
    names = '["R", "G", "B", "NIR", "elevation"]' if bands == 5 else '["R", "G", "B"]'
    text = (f'data_root = "."\n[[dataset]]\nid = "{name}"\npath = "{name}.tif"\nrole = "image"\nbands = {names}\n'
            '[[dataset]]\nid = "FAR"\npath = "FAR.tif"\nrole = "image"\nbands = ["R", "G", "B", "NIR", "elevation"]\n')
    (tmp_path / "catalog.toml").write_text(text)
    return Catalog.load(tmp_path / "catalog.toml")


def box_px(r0: int, c0: int, r1: int, c1: int) -> shapely.Polygon:
    """A box over pixel rows r0..r1, cols c0..c1 of the image at ORIGIN (EPSG:2154)."""
    x0, y0 = ORIGIN
    return shapely.box(x0 + c0 * 0.2, y0 - r1 * 0.2, x0 + c1 * 0.2, y0 - r0 * 0.2)


def as_feature(geom: shapely.Geometry) -> dict:
    return {"type": "Feature", "properties": {},
            "geometry": shapely.geometry.mapping(shapely.transform(geom, lambda xy: np.column_stack(TO_WGS84.transform(*xy.T))))}


def test_store_add_edit_delete_survive_a_restart(tmp_path):
    path = tmp_path / "c.gpkg"
    foot = box_px(0, 0, 512, 512)
    ids = store.CorrectionStore(path).add_features(
        [as_feature(box_px(10, 10, 50, 60)),
         {"type": "Feature", "geometry": shapely.geometry.mapping(shapely.transform(
             shapely.LineString([(ORIGIN[0] + 20, ORIGIN[1] - 20), (ORIGIN[0] + 40, ORIGIN[1] - 20)]),
             lambda xy: np.column_stack(TO_WGS84.transform(*xy.T))))}],
        6, dataset_id="IMG_900001", footprint=foot, model_id="m1", note="roof", brush_m=1.0)
    assert len(ids) == 2
    assert [name for name, _ in pyogrio.list_layers(path)] == ["corrections"]
    gdf = store.CorrectionStore(path).load()  # a new store: what a restarted app reads
    assert gdf.crs.to_epsg() == 2154 and list(gdf.columns) == [*store.COLUMNS, "geometry"]
    assert gdf["class"].tolist() == [6, 6] and set(gdf["dataset_id"]) == {"IMG_900001"}
    assert set(gdf["model_id"]) == {"m1"} and all(gdf["created"].str.endswith("Z"))
    poly = gdf.set_index("id").geometry[ids[0]]
    assert poly.symmetric_difference(box_px(10, 10, 50, 60)).area < 0.01  # round trip through WGS84
    brush = gdf.set_index("id").geometry[ids[1]]
    assert brush.geom_type == "Polygon" and abs(brush.area - (20 * 2 + np.pi)) < 0.2  # 20 m line, 1 m either side

    s = store.CorrectionStore(path)
    s.edit({ids[0]: {"class": 10, "note": "water"}})
    s.remove([ids[1]])
    gdf = store.CorrectionStore(path).load()
    assert gdf["id"].tolist() == [ids[0]] and gdf["class"].tolist() == [10] and gdf["note"].tolist() == ["water"]
    with pytest.raises(NotFound):
        s.edit({"nope": {"class": 3}})


def test_table_edits_only_what_changed(tmp_path):
    s = store.CorrectionStore(tmp_path / "c.gpkg")
    a = s.add(box_px(0, 0, 10, 10), 3, dataset_id="X")
    b = s.add(box_px(20, 20, 30, 30), 4, dataset_id="X")
    view = s.load().drop(columns="geometry")
    view.insert(0, "remove", False)
    edited = view.copy()
    edited.loc[edited["id"] == a, "class"] = 7
    edited.loc[edited["id"] == b, "remove"] = True
    assert s.apply_table(view, edited) == (1, 1)
    gdf = s.load()
    assert gdf["id"].tolist() == [a] and gdf["class"].tolist() == [7]


@pytest.mark.parametrize("bad", [0, 20, 2.5, "water", None])
def test_a_class_outside_1_to_19_is_refused_and_nothing_is_written(tmp_path, bad):
    path = tmp_path / "c.gpkg"
    with pytest.raises(InvalidInput, match="FLAIR-1 class"):
        store.CorrectionStore(path).add(box_px(0, 0, 10, 10), bad, dataset_id="X")
    assert not path.exists()


def test_a_file_with_a_bad_class_is_refused_on_read(tmp_path):
    path = tmp_path / "hand.gpkg"
    gpd.GeoDataFrame({"class": [25]}, geometry=[box_px(0, 0, 5, 5)], crs="EPSG:2154").to_file(path, layer="corrections")
    with pytest.raises(InvalidInput, match="row 1: class 25"):
        store.read_file(path)


def test_a_correction_outside_its_image_is_refused(tmp_path):
    path = tmp_path / "c.gpkg"
    s = store.CorrectionStore(path)
    s.add(box_px(0, 0, 10, 10), 3, dataset_id="X", footprint=box_px(0, 0, 512, 512))
    before = path.read_bytes()
    with pytest.raises(InvalidInput, match="outside image X"):
        s.add_features([as_feature(box_px(600, 600, 700, 700))], 3, dataset_id="X", footprint=box_px(0, 0, 512, 512))
    assert path.read_bytes() == before


def test_export_writes_flair_masks_on_the_image_grid(tmp_path):
    cat = scene_catalog(tmp_path, size=1024)
    s = store.CorrectionStore(tmp_path / "c.gpkg")
    s.add(box_px(100, 480, 200, 560), 2, dataset_id="IMG_900001")  # straddles cells (0,0) and (0,1)
    s.add(box_px(150, 500, 170, 520), 10, dataset_id="IMG_900001")  # painted over the first
    out = tmp_path / "masks"
    paths = export.export_masks(s.load(), cat, out)
    assert sorted(p.name for p in paths) == ["MSK_IMG_900001_r000_c000.tif", "MSK_IMG_900001_r000_c001.tif"]
    with rasterio.open(tmp_path / "IMG_900001.tif") as img:
        img_transform, img_crs = img.transform, img.crs
    # independent: pixel (r, c) of the scene is class 10 in the small box, 2 in the big one, else 0
    rows, cols = np.mgrid[0:1024, 0:1024]
    expected = np.zeros((1024, 1024), np.uint8)
    expected[(rows >= 100) & (rows < 200) & (cols >= 480) & (cols < 560)] = 2
    expected[(rows >= 150) & (rows < 170) & (cols >= 500) & (cols < 520)] = 10
    for p, c0 in zip(sorted(paths), (0, 512)):
        with rasterio.open(p) as m:
            assert (m.width, m.height, m.count, m.dtypes[0], m.nodata) == (512, 512, 1, "uint8", 0)
            assert m.crs == img_crs and m.res == (0.2, 0.2)
            assert m.transform.almost_equals(img_transform @ rasterio.Affine.translation(c0, 0), precision=1e-6)
            np.testing.assert_array_equal(m.read(1), expected[0:512, c0:c0 + 512])


def test_export_mask_of_a_flair_patch_lies_exactly_on_the_image(tmp_path):
    scene_catalog(tmp_path, size=512)
    s = store.CorrectionStore(tmp_path / "c.gpkg")
    s.add(box_px(5, 5, 40, 40), 18, dataset_id="IMG_900001")
    from flair_viz.cli.main import main

    assert main(["corrections", "export", "--grid", "flair", "--out", str(tmp_path / "m"), "--corrections",
                 str(s.path), "--catalog", str(tmp_path / "catalog.toml")]) == 0
    (mask,) = (tmp_path / "m").glob("MSK_*.tif")
    with rasterio.open(mask) as m, rasterio.open(tmp_path / "IMG_900001.tif") as img:
        assert m.transform == img.transform and m.crs == img.crs and m.bounds == img.bounds
        assert int((m.read(1) == 18).sum()) == 35 * 35


def test_export_of_an_empty_layer_or_an_outside_shape_says_so(tmp_path):
    cat = scene_catalog(tmp_path)
    with pytest.raises(InvalidInput, match="empty"):
        export.export_masks(store.empty(), cat, tmp_path / "m")
    s = store.CorrectionStore(tmp_path / "c.gpkg")
    s.add(shapely.box(100000, 6000000, 100010, 6000010), 3, dataset_id="")
    with pytest.raises(InvalidInput, match="outside every image"):
        export.export_masks(s.load(), cat, tmp_path / "m")
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
