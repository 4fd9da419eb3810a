"""Zone mosaics served by the tile server: their tiles are the patches' pixels, and live prediction has no seam.

The reference is the same 10×10 grid written as *one* GeoTIFF by the test (one array), registered as a
plain scene: a mosaic tile must equal that scene's tile exactly, and sampled tile pixels must equal the
patch files' pixels read with rasterio. For live prediction a tiny U-Net (whose receptive field spans
several 32 px patches) must give the same classes on the mosaic as on the one-array scene, while a
lone patch, whose context stops at its border, gives different ones: a seam would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from flair_viz.cli.main import main
from flair_viz.core import classes
from tests.helpers import app_client, centre_tile, clear_live_caches, decode_png, tile_to_raster, write_tif
from tests.model_fixtures import make_model
from tests.test_catalog_index import RES, X0, Y0, N, grid_tree

torch.set_num_threads(1)
MOSAIC = "ZONE_D034_2021_Z9_AA"


@pytest.fixture()
def zone(tmp_path, capsys):
    """A scanned 10×10 zone plus the same pixels as one scene file; returns (catalog, scene array)."""
    folder = tmp_path / "data" / "flair"
    grid_tree(folder)
    cat = tmp_path / "catalog.toml"
    assert main(["catalog", "scan", str(folder), "--catalog", str(cat), "--root", str(tmp_path / "data")]) == 0
    zone_dir = folder / "D034_2021" / "Z9_AA"
    whole = np.zeros((5, 10 * N, 10 * N), np.uint8)
    truth = np.zeros((10 * N, 10 * N), np.uint8)
    for r in range(10):
        for c in range(10):
            pid = f"{r * 10 + c:06d}"
            with rasterio.open(zone_dir / "img" / f"IMG_{pid}.tif") as ds:
                whole[:, r * N:(r + 1) * N, c * N:(c + 1) * N] = ds.read()
            with rasterio.open(zone_dir / "msk" / f"MSK_{pid}.tif") as ds:
                truth[r * N:(r + 1) * N, c * N:(c + 1) * N] = ds.read(1)
    write_tif(tmp_path / "data" / "whole.tif", whole, origin=(X0, Y0), res=RES)
    with cat.open("a", encoding="utf-8") as f:
        f.write('\n[[dataset]]\nid = "WHOLE"\npath = "whole.tif"\nrole = "image"\n'
                'bands = ["R", "G", "B", "NIR", "elevation"]\n')
    capsys.readouterr()
    return cat, whole, truth


def test_mosaic_tiles_are_the_patches_pixels(zone):
    cat, whole, truth = zone
    client = app_client(cat)
    vrt = client.app.state.catalog.get().get(MOSAIC).path
    t = centre_tile(vrt, 20)
    url = f"tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    mosaic = decode_png(client.get(f"/datasets/{MOSAIC}/{url}?preset=rgb"))
    np.testing.assert_array_equal(mosaic, decode_png(client.get(f"/datasets/WHOLE/{url}?preset=rgb")))
    col, row = tile_to_raster(t, vrt)  # the grid's pixel under each tile pixel, then the patch file holding it
    fc, fr = col - np.floor(col), row - np.floor(row)
    clear = (fc > 0.2) & (fc < 0.8) & (fr > 0.2) & (fr < 0.8)
    r, c = np.floor(row[clear]).astype(int), np.floor(col[clear]).astype(int)
    assert len(set(zip(r // N, c // N))) >= 4  # the tile spans several patches, so borders are inside it
    got = mosaic[clear][:, :3]
    zone_dir = cat.parent / "data" / "flair" / "D034_2021" / "Z9_AA"
    for pr, pc in set(zip(r // N, c // N)):
        sel = (r // N == pr) & (c // N == pc)
        with rasterio.open(zone_dir / "img" / f"IMG_{pr * 10 + pc:06d}.tif") as ds:
            patch = ds.read([1, 2, 3])
        np.testing.assert_array_equal(got[sel], patch[:, r[sel] % N, c[sel] % N].T)
    masks = decode_png(client.get(f"/datasets/{MOSAIC}_MSK/{url}"))
    np.testing.assert_array_equal(masks[clear], classes.palette_rgba()[truth[r, c]])


def test_live_prediction_on_a_mosaic_has_no_seam_at_patch_borders(zone, model_dir):
    cat, _, _ = zone
    make_model(model_dir, "tiny", "safetensors")
    clear_live_caches()
    client = app_client(cat)
    vrt = client.app.state.catalog.get().get(MOSAIC).path
    t = centre_tile(vrt, 20)

    def live(ds_id: str) -> np.ndarray:
        return decode_png(client.get(f"/datasets/{ds_id}/predict/tiny/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"))

    on_mosaic, on_whole = live(MOSAIC), live("WHOLE")
    assert (on_mosaic[..., 3] == 255).mean() > 0.9 and len(np.unique(on_mosaic.reshape(-1, 4), axis=0)) >= 3
    np.testing.assert_array_equal(on_mosaic, on_whole)
    # A lone patch of the same tile lacks its neighbours' context: its classes differ near its border.
    col, row = tile_to_raster(t, vrt)
    pr, pc = int(np.floor(row[128, 128])) // N, int(np.floor(col[128, 128])) // N
    lone = live(f"IMG_{pr * 10 + pc:06d}")
    inside = lone[..., 3] == 255
    assert inside.sum() > 1000
    assert (lone[inside] != on_mosaic[inside]).any(axis=1).mean() > 0.01


def test_batch_predictions_get_a_zone_mosaic_that_explore_shows_on_the_zone(zone, model_dir):
    from flair_viz.core import vrt as vrt_mod
    from flair_viz.core.catalog import Catalog
    from flair_viz.core.scenes import Scene
    from flair_viz.predict import cards, register
    from flair_viz.web import explore

    cat_file, _, truth = zone
    make_model(model_dir, "tiny", "safetensors")
    card = cards.get_card("tiny")
    out_dir = cat_file.parent / "data" / "preds"
    cat = Catalog.load(cat_file)
    outputs = []
    for pid in ("000000", "000001", "000011"):  # three patches of the zone: stand-in class COGs (their masks)
        src = cat.get(f"MSK_{pid}")
        with rasterio.open(src.path) as ds:
            out = write_tif(out_dir / f"PRED_{pid}.tif", ds.read(1), origin=(ds.bounds.left, ds.bounds.top), res=RES)
        outputs.append((Scene(name=pid, path=cat.get(f"IMG_{pid}").path, patch=pid, domain="D034_2021",
                              zone="Z9_AA"), out))
    batch_vrt = vrt_mod.write_vrt([o for _, o in outputs], out_dir / "MOSAIC_tiny.vrt")
    register.register_mosaic(cat_file, batch_vrt, card, outputs)
    cat = Catalog.load(cat_file)
    zone_pred = cat.get(f"{MOSAIC}_PRED_tiny")
    assert (zone_pred.role, zone_pred.zone, zone_pred.extra["mosaic"]) == ("prediction", "Z9_AA", "D034_2021/Z9_AA")
    with rasterio.open(zone_pred.path) as ds:
        got = ds.read(1)
        assert ds.bounds.left == pytest.approx(X0) and ds.bounds.top == pytest.approx(Y0)
    np.testing.assert_array_equal(got[:N, :2 * N], truth[:N, :2 * N])  # patches 0 and 1, side by side
    np.testing.assert_array_equal(got[N:2 * N, N:2 * N], truth[N:2 * N, N:2 * N])  # patch 11
    assert (got[N:2 * N, :N] == 0).all()  # patch 10 was not predicted: nodata, not another patch's classes
    from flair_viz.metrics.pairs import catalog_pairs

    # metrics score each predicted patch once: the zone mosaic of predictions is not a second pair
    assert sorted(p.pred_id for p in catalog_pairs(cat)) == [f"PRED_{p}_tiny" for p in ("000000", "000001", "000011")]
    scenes = {s.image.id: s for s in explore.list_scenes(cat)}
    on_zone = scenes[MOSAIC]
    assert on_zone.kind == "mosaic" and on_zone.truth.id == f"{MOSAIC}_MSK"
    assert [p.id for p in on_zone.predictions] == [f"{MOSAIC}_PRED_tiny"]
    assert [p.id for p in scenes["IMG_000000"].predictions] == ["PRED_000000_tiny"]  # a single patch still works
    zone_scenes = [s.image.id for s in explore.list_scenes(cat) if s.zone == "Z9_AA"]
    assert zone_scenes[0] == MOSAIC and len(zone_scenes) == 101


def test_a_zone_with_missing_patches_shows_its_gaps_transparent_and_predicts_nothing_there(tmp_path, capsys, model_dir):
    """Patches missing from a zone leave gaps: FLAIR images have no nodata value, so without the mosaic's
    footprint mask the gaps read as black pixels on the map and as real pixels fed to the model."""
    from flair_viz.core import raster

    folder = tmp_path / "data" / "flair"
    grid_tree(folder, 6, 6)
    zone_dir = folder / "D034_2021" / "Z9_AA"
    gap = {(r, c) for r in (2, 3) for c in (2, 3)}  # four patches in the middle: a 12.8 m hole
    for r, c in gap:
        for kind in ("img", "msk"):
            (zone_dir / kind / f"{kind.upper()}_{r * 6 + c:06d}.tif").unlink()
    cat = tmp_path / "catalog.toml"
    assert main(["catalog", "scan", str(folder), "--catalog", str(cat), "--root", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    client = app_client(cat)
    vrt = client.app.state.catalog.get().get(MOSAIC).path
    # the one window reader: zeros and invalid in the gap, the patch files' pixels elsewhere
    data, valid = raster.read_window(vrt, [1, 2, 3, 4, 5], rasterio.windows.Window(N, N, 4 * N, 4 * N), None)
    assert not valid[N:3 * N, N:3 * N].any() and not data[:, N:3 * N, N:3 * N].any()
    with rasterio.open(zone_dir / "img" / f"IMG_{1 * 6 + 1:06d}.tif") as ds:
        np.testing.assert_array_equal(data[:, :N, :N], ds.read())
    assert valid[:N, :].all() and valid[:, :N].all()
    # map tiles: transparent in the gap, opaque on the patches
    t = centre_tile(vrt, 20)
    col, row = tile_to_raster(t, vrt)
    in_gap = np.isin((np.floor(row) // N) * 6 + np.floor(col) // N, [r * 6 + c for r, c in gap])
    on_patch = (row >= 0) & (col >= 0) & (row < 6 * N) & (col < 6 * N) & ~in_gap
    assert in_gap.sum() > 5000 and on_patch.sum() > 5000
    aerial = decode_png(client.get(f"/datasets/{MOSAIC}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?preset=rgb"))
    assert (aerial[in_gap][:, 3] == 0).mean() > 0.99 and (aerial[on_patch][:, 3] == 255).mean() > 0.99
    # live predictions: nothing in the gap, classes on the patches
    make_model(model_dir, "tiny", "safetensors")
    clear_live_caches()
    pred = decode_png(client.get(f"/datasets/{MOSAIC}/predict/tiny/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"))
    assert (pred[in_gap][:, 3] == 0).mean() > 0.99 and (pred[on_patch][:, 3] == 255).mean() > 0.99
