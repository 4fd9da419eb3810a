"""Issue 22, part 3: inputs are checked before any work, by one check shared by the CLI, batch jobs and tiles.

Real files only: small GeoTIFFs written with rasterio in ``tmp_path``, and the real FLAIR-1 masks of
``data/demo/flair1`` (their ``LOCAL_CS["RGF93 v1 / Lambert-93"]`` CRS is the quirk under test).
Expected numbers come from an independent numpy computation, never from the code under test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from flair_viz.change.compute import compute_change
from flair_viz.cli.main import main
from flair_viz.core import atomic, raster
from flair_viz.core.errors import InvalidInput, InvalidRaster, UnreadableRaster
from flair_viz.metrics.confusion import confusion
from flair_viz.metrics.evaluate import evaluate
from flair_viz.metrics.pairs import Pair
from tests.helpers import DEMO, app_client, centre_tile, clear_live_caches, write_tif
from tests.model_fixtures import make_model

FLAIR1_MASKS = DEMO / "flair1" / "D034_2021" / "Z6_NU" / "msk"
REAL_MASK = FLAIR1_MASKS / "MSK_025668.tif"


def _image(path: Path, dtype=np.uint8, seed: int = 0, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    hi = {np.uint8: 255, np.uint16: 4095}.get(dtype, 1)
    data = rng.integers(0, hi, (5, size, size)).astype(dtype) if hi > 1 else rng.random((5, size, size)).astype(dtype)
    return write_tif(path, data)


def _error_lines(capsys) -> str:
    return capsys.readouterr().err


# -- outputs: same file, folder ------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["output", "proba", "hard link"])
def test_predict_never_overwrites_its_input(where, tmp_path, model_dir, capsys):
    make_model(model_dir, "tiny")
    image = _image(tmp_path / "scene.tif")
    before = image.read_bytes()
    if where == "hard link":  # another name of the same file is the same file
        os.link(image, tmp_path / "alias.tif")
        argv = [str(image), str(tmp_path / "alias.tif")]
    elif where == "output":
        argv = [str(image), str(image)]
    else:
        argv = [str(image), str(tmp_path / "pred.tif"), "--proba", str(image)]
    assert main(["predict", "--model", "tiny", *argv, "--quiet"]) == 2
    err = _error_lines(capsys)
    assert "overwrite the input" in err and "fix" in err.lower()
    assert image.read_bytes() == before
    assert not (tmp_path / "pred.tif").exists()


def test_predict_output_naming_a_folder_is_refused_before_inference(tmp_path, model_dir, capsys):
    make_model(model_dir, "tiny")
    image = _image(tmp_path / "scene.tif")
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["predict", "--model", "tiny", str(image), str(folder), "--quiet"]) == 2
    err = _error_lines(capsys)
    assert "existing folder" in err and str(folder / "prediction.tif") in err
    assert list(folder.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_check_outputs_refuses_folders_inputs_and_paths_under_a_file(tmp_path):
    src = write_tif(tmp_path / "a.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(InvalidInput, match="overwrite the input"):
        atomic.check_outputs([tmp_path / "x.tif", tmp_path / "sub" / ".." / "a.tif"], [src])
    with pytest.raises(InvalidInput, match="which is a file"):
        atomic.check_output(src / "out.tif", [])
    assert atomic.check_output(tmp_path / "new" / "out.tif", [src]) == tmp_path / "new" / "out.tif"


def test_change_out_folder_holding_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    out = tmp_path / "out"
    rng = np.random.default_rng(3)
    before = write_tif(out / "change.tif", rng.integers(1, 20, (32, 32)).astype(np.uint8))
    after = write_tif(tmp_path / "b.tif", rng.integers(1, 20, (32, 32)).astype(np.uint8))
    kept = before.read_bytes()
    assert main(["change", str(before), str(after), "--out", str(out), "--catalog", str(tmp_path / "none.toml")]) == 2
    assert "overwrite the input" in _error_lines(capsys)
    assert before.read_bytes() == kept and sorted(p.name for p in out.iterdir()) == ["change.tif"]


# -- images: 8-bit as FLAIR models expect -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_validate_and_check_image_refuse_non_8_bit_images(dtype, tmp_path, capsys):
    img = _image(tmp_path / "img.tif", dtype)
    with pytest.raises(InvalidRaster, match=f"{np.dtype(dtype).name}; FLAIR models expect uint8") as exc:
        raster.check_image(img)
    assert "gdal_translate -ot Byte" in exc.value.fix
    cat = tmp_path / "catalog.toml"
    cat.write_text('data_root = "."\n[[dataset]]\nid = "IMG"\npath = "img.tif"\nrole = "image"\n', encoding="utf-8")
    assert main(["catalog", "validate", "--catalog", str(cat)]) == 2
    out = capsys.readouterr()
    assert f"{np.dtype(dtype).name}; FLAIR models expect uint8" in out.out + out.err


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_live_prediction_tile_of_a_non_8_bit_image_is_a_named_4xx(dtype, tmp_path, model_dir):
    make_model(model_dir, "tiny")
    _image(tmp_path / "img.tif", dtype, size=256)
    cat = tmp_path / "catalog.toml"
    cat.write_text('data_root = "."\n[[dataset]]\nid = "IMG"\npath = "img.tif"\nrole = "image"\n', encoding="utf-8")
    clear_live_caches()
    t = centre_tile(tmp_path / "img.tif", 19)
    r = app_client(cat).get(f"/datasets/IMG/predict/tiny/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 400, r.text
    body = r.json()
    assert f"is {np.dtype(dtype).name}; FLAIR models expect uint8" in body["detail"] and "gdal_translate" in body["fix"]


def test_predict_cli_refuses_a_uint16_image(tmp_path, model_dir, capsys):
    make_model(model_dir, "tiny")
    img = _image(tmp_path / "img.tif", np.uint16)
    assert main(["predict", "--model", "tiny", str(img), str(tmp_path / "p.tif"), "--quiet"]) == 2
    assert "uint16; FLAIR models expect uint8" in _error_lines(capsys)
    assert not (tmp_path / "p.tif").exists()


# -- class rasters: integer codes only -----------------------------------------------------------------
def test_evaluate_refuses_a_float_class_raster_instead_of_truncating_it(tmp_path):
    rng = np.random.default_rng(5)
    truth = rng.integers(1, 20, (64, 64)).astype(np.uint8)
    pred_float = truth.astype(np.float32) + 0.4  # 3.4 is not class 3
    t = write_tif(tmp_path / "MSK_1.tif", truth)
    p = write_tif(tmp_path / "PRED_1.tif", pred_float)
    with pytest.raises(InvalidRaster, match="float32 .*floating-point.*truncated"):
        evaluate([Pair(patch="1", truth=t, pred=p, model="m")])
    with pytest.raises(InvalidRaster, match="float32"):
        confusion(truth, pred_float)
    # the same values as integers are counted: 64 x 64 on the diagonal (independent of the counter)
    p8 = write_tif(tmp_path / "PRED_2.tif", truth)
    run = evaluate([Pair(patch="2", truth=t, pred=p8, model="m")])
    assert int(np.trace(run.table.matrices[0])) == truth.size


def test_change_and_check_mask_share_the_integer_rule(tmp_path):
    f = write_tif(tmp_path / "f.tif", np.full((8, 8), 3.4, np.float32))
    u = write_tif(tmp_path / "u.tif", np.full((8, 8), 3, np.uint8))
    for call in (lambda: compute_change(f, u), lambda: raster.check_mask(f, scan_values=False)):
        with pytest.raises(InvalidRaster, match="float32 .*truncated") as exc:
            call()
        assert "gdal_translate -ot Byte" in exc.value.fix


# -- the FLAIR-1 mask CRS quirk, resampling included --------------------------------------------------
def _coarse_pair_of_the_real_mask(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 0.6 m EPSG:2154 class raster over the real mask (0.2 m, LOCAL_CS), and both arrays."""
    with rasterio.open(REAL_MASK) as ds:
        assert ds.crs.to_epsg() is None and "LOCAL_CS" in ds.crs.to_wkt()  # the quirk is really there
        fine, t = ds.read(1), ds.transform
    coarse = np.random.default_rng(7).integers(1, 20, (170, 170)).astype(np.uint8)
    path = tmp_path / "coarse.tif"
    with rasterio.open(path, "w", driver="GTiff", width=170, height=170, count=1, dtype="uint8", crs="EPSG:2154",
                       transform=from_origin(t.c, t.f, 0.6, 0.6)) as dst:
        dst.write(coarse, 1)
    return path, fine, coarse


def _from_to_px(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Independent 19 x 19 count of (before, after) FLAIR-1 classes, 0 excluded on either side."""
    ok = (before > 0) & (after > 0)
    m = np.zeros((20, 20), np.int64)
    np.add.at(m, (before[ok], after[ok]), 1)
    return m[1:, 1:]


def test_change_resamples_a_real_flair1_mask_onto_a_coarser_grid(tmp_path):
    coarse_path, fine, coarse = _coarse_pair_of_the_real_mask(tmp_path)
    res = compute_change(coarse_path, REAL_MASK)  # the LOCAL_CS mask is warped onto the 0.6 m grid
    # nearest neighbour: the 0.6 m pixel (i, j) has its centre in the middle of 0.2 m pixel (3i + 1, 3j + 1)
    want = _from_to_px(coarse, fine[1::3, 1::3][:170, :170]) * 0.36 / 10_000
    np.testing.assert_allclose(res.from_to_ha(), want, rtol=1e-12, atol=1e-12)
    assert res.alignment.resampled
    assert any("LOCAL_CS" in n and "EPSG:2154" in n for n in res.alignment.notes)


def test_change_reprojects_onto_a_real_flair1_mask_grid(tmp_path):
    coarse_path, fine, coarse = _coarse_pair_of_the_real_mask(tmp_path)
    res = compute_change(REAL_MASK, coarse_path)  # the mask is the reference grid: warp *to* LOCAL_CS
    r = np.arange(510)  # the coarse raster covers 102 m of the mask's 102.4 m: 510 of its 512 pixels
    up = coarse[(r + 0.5).astype(int) // 3][:, (r + 0.5).astype(int) // 3]
    want = _from_to_px(fine[:510, :510], up) * 0.04 / 10_000
    np.testing.assert_allclose(res.from_to_ha(), want, rtol=1e-12, atol=1e-12)
    assert any("LOCAL_CS" in n for n in res.alignment.notes)


# -- a file that is not the format its name says ---------------------------------------------------------
def _png_named_tif(path: Path) -> Path:
    png = path.with_suffix(".png")
    with rasterio.open(png, "w", driver="PNG", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(np.full((3, 64, 64), 9, np.uint8))
    png.rename(path)
    for side in png.parent.glob(png.name + ".*"):
        side.unlink()
    return path


@pytest.mark.parametrize("route", ["/datasets/IMG/info", "/datasets/IMG/tiles/WebMercatorQuad/18/0/0.png",
                                   "/datasets/IMG/preview.png", "/datasets/IMG/statistics"])
def test_a_png_renamed_tif_in_the_catalog_is_a_named_error_not_a_python_message(route, tmp_path):
    _png_named_tif(tmp_path / "img.tif")
    cat = tmp_path / "catalog.toml"
    cat.write_text('data_root = "."\n[[dataset]]\nid = "IMG"\npath = "img.tif"\nrole = "image"\nbands = ["R", "G", "B"]\n',
                   encoding="utf-8")
    r = app_client(cat).get(route)
    assert r.status_code == 500  # Unreadable in the STATUS_CODES table
    body = r.json()
    assert body["detail"] == "img.tif is a PNG file, not the GeoTIFF its name says"
    assert "gdal_translate" in body["fix"]


def test_open_raster_names_a_renamed_png(tmp_path):
    p = _png_named_tif(tmp_path / "x.tif")
    with pytest.raises(UnreadableRaster, match="PNG file, not the GeoTIFF"):
        raster.check_image(p)
    shutil.copy(p, tmp_path / "x.png")  # under its own name it is what it says: no format complaint
    assert raster.describe(tmp_path / "x.png").count == 3
