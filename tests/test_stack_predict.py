"""Prediction of a [[stack]] by catalog ID, against prediction of the original 5-band mosaic it was cut from: the
issue's goal (equal classes on >= 99.9 % of pixels) through ``flair-viz predict ID OUT.tif``, through batch
prediction on Dask in blocks (``predict --out``), and through live prediction tiles of the tile server.

The stack is real FLAIR-1 pixels cut into lossless JP2 RGB and IRC dalles on grids that follow neither the patch
grid nor each other, plus an elevation GeoTIFF (the ``delivery`` fixture of tests/test_stack.py); the original is
the same 1024 x 1024 px block written as one tiled 5-band GeoTIFF and registered as a plain [[dataset]].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair_viz.cli.main import main
from flair_viz.core.catalog import Catalog
from tests.test_stack import FULL, delivery, write  # noqa: F401  (delivery: the fixture)

GOAL = 0.999  # the goal: predicted classes equal on >= 99.9 % of pixels


def stack_catalog(root: Path, img: np.ndarray, transform) -> Path:
    """The delivery's stack and the original 5-band mosaic, both by ID, in one catalog at the data root; and GAPPY,
    the stack without its second row of RGB dalles (rows 300..599: a gap across the whole image)."""
    if not (root / "mosaic.tif").exists():
        write(root / "mosaic.tif", img, transform, tiled=True, blockxsize=256, blockysize=256)
    path = root / "predict_catalog.toml"
    gappy = 'id = "GAPPY"\nrgb = "ortho/rvb/RVB_[069]*.jp2"\nirc = "ortho/irc"\nelevation = "ndsm.tif"'
    path.write_text(f'data_root = "."\n\n[[dataset]]\nid = "ORIGINAL"\npath = "mosaic.tif"\nrole = "image"\n\n'
                    f"[[stack]]\n{FULL}\n\n[[stack]]\n{gappy}\n", encoding="utf-8")
    return path


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def read_class(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture()
def tiny(model_dir):
    from tests.model_fixtures import make_model

    make_model(model_dir, "tiny", "safetensors")
    return "tiny"


def test_predict_takes_a_stack_by_its_catalog_id(delivery, tiny, tmp_path):  # noqa: F811
    root, img, transform = delivery
    cat = stack_catalog(root, img, transform)
    args = ["predict", "--model", tiny, "--quiet", "--catalog", str(cat)]
    assert main([*args, "HERAULT_2021", str(tmp_path / "by_id.tif")]) == 0
    assert main([*args, str(root / "mosaic.tif"), str(tmp_path / "by_file.tif")]) == 0
    got, want = read_class(tmp_path / "by_id.tif"), read_class(tmp_path / "by_file.tif")
    assert got.shape == (1024, 1024) and (want > 0).all() and len(np.unique(want)) > 1
    assert agreement(got, want) >= GOAL
    with rasterio.open(tmp_path / "by_id.tif") as a, rasterio.open(root / "mosaic.tif") as b:
        assert a.transform.almost_equals(b.transform) and a.crs == b.crs


def test_predict_by_id_refuses_what_it_cannot_predict(delivery, tiny, tmp_path, capsys):  # noqa: F811
    root, img, transform = delivery
    cat = stack_catalog(root, img, transform)
    args = ["predict", "--model", tiny, "--quiet", "--catalog", str(cat)]
    assert main([*args, "HERAULT_2012", str(tmp_path / "x.tif")]) == 2
    err = capsys.readouterr().err
    assert "'HERAULT_2012' is neither an image file nor a dataset ID of the catalog" in err
    assert "flair-viz catalog list" in err and not (tmp_path / "x.tif").exists()
    # an output over one of the stack's dalles is an output over its input
    dalle = root / "ortho" / "irc" / "IRC_0_0.jp2"
    before = dalle.read_bytes()
    assert main([*args, "HERAULT_2021", str(dalle)]) == 2
    assert "is the input" in capsys.readouterr().err and dalle.read_bytes() == before
    # a folder names many scenes: --out
    assert main([*args, str(root / "ortho"), str(tmp_path / "y.tif")]) == 2
    assert "add --out DIR" in capsys.readouterr().err
    # a missing file is still named as a file
    assert main([*args, str(tmp_path / "nowhere.tif"), str(tmp_path / "z.tif")]) == 2
    assert "File not found" in capsys.readouterr().err


def test_batch_prediction_of_a_stack_runs_in_blocks_on_dask(delivery, tiny, tmp_path):  # noqa: F811
    """Both images in one Dask run, split into blocks of windows (--block-px 512 on 1024 px): the stack's classes
    equal the original mosaic's, and the whole-file prediction's."""
    from distributed import Client, LocalCluster

    from flair_viz.core import scenes
    from flair_viz.predict import batch

    root, img, transform = delivery
    catalog = Catalog.load(stack_catalog(root, img, transform))
    found = scenes.expand(["HERAULT_2021", "ORIGINAL", "GAPPY"], catalog)
    assert [s.bands for s in found] == [("R", "G", "B", "NIR", "elevation"), None, ("R", "G", "B", "NIR", "elevation")]
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        res = batch.batch_predict(found, tiny, tmp_path / "out", client, progress=False, mosaic=False, block_px=512)
    merged = {t["output"]: t["blocks"] for t in res.tasks if "blocks" in t}
    assert set(merged) == {str(o) for o in res.outputs} and min(merged.values()) >= 4  # blocks, then one COG each
    stack_pred, original_pred, gappy_pred = (read_class(o) for o in res.outputs)
    assert (original_pred > 0).all() and agreement(stack_pred, original_pred) >= GOAL
    args = ["predict", "--model", tiny, "--quiet", "--catalog", str(root / "predict_catalog.toml")]
    assert main([*args, "HERAULT_2021", str(tmp_path / "whole.tif")]) == 0
    assert agreement(stack_pred, read_class(tmp_path / "whole.tif")) >= GOAL
    # blocks keep the stack's mask (vrt.window_vrt carries it): the gap is nodata, as in the whole-file prediction,
    # and the windows around it see zeros there, not the gap's pixels
    assert main([*args, "GAPPY", str(tmp_path / "gappy_whole.tif")]) == 0
    gappy_whole = read_class(tmp_path / "gappy_whole.tif")
    assert (gappy_whole[300:600] == 0).all() and (gappy_whole[:300] > 0).all() and (gappy_whole[600:] > 0).all()
    assert agreement(gappy_pred, gappy_whole) >= GOAL and (gappy_pred[300:600] == 0).all()


def test_live_prediction_tiles_of_a_stack_equal_the_original_mosaics(delivery, tiny, monkeypatch):  # noqa: F811
    """The tile server's live prediction of the stack and of the original mosaic, tile for tile at two zooms."""
    from tests.helpers import app_client, centre_tile, clear_live_caches, decode_png

    root, img, transform = delivery
    cat = stack_catalog(root, img, transform)
    ds = Catalog.load(cat).get("HERAULT_2021")
    clear_live_caches()
    client = app_client(cat)
    compared = 0
    for z in (18, 19):
        t = centre_tile(ds.path, z)
        tiles = [decode_png(client.get(f"/datasets/{i}/predict/{tiny}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"))
                 for i in ("HERAULT_2021", "ORIGINAL")]
        seen = tiles[0][..., 3] > 0
        assert np.array_equal(seen, tiles[1][..., 3] > 0) and seen.mean() > 0.5
        same = (tiles[0][..., :3] == tiles[1][..., :3]).all(axis=-1)
        assert same[seen].mean() >= GOAL and len(np.unique(tiles[1][seen][:, 0])) > 1
        compared += int(seen.sum())
    clear_live_caches()
    assert compared > 50_000
