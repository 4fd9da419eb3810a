"""The shared primitives of flair_viz.core, each checked against an independent computation."""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from flair_viz.core import classes, raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.classtile import read_class_tile
from flair_viz.core.errors import AlignmentError, InvalidInput, RasterNotFound, UnreadableRaster
from flair_viz.core.locks import lock_path, locked
from flair_viz.core.names import safe_name
from flair_viz.core.stamps import file_stamp
from tests.helpers import WORLD_M, write_tif

# -- class LUT -----------------------------------------------------------------------------------
HUB_TO_1 = {i: classes.BY_KEY[key].value for i, key in enumerate(classes.FLAIRHUB_ORDER)}
F1_TO_1 = {v: v for v in range(1, 20)}


@pytest.mark.parametrize("nomenclature,table", [("flair1", F1_TO_1), ("flairhub", HUB_TO_1)])
@pytest.mark.parametrize("nodata", [None, 0, 7, 255, 3.5, -1])
def test_class_lut_matches_a_python_table_and_honours_nodata(nomenclature, table, nodata):
    lut = classes.class_lut(nomenclature, nodata)
    expected = [0 if v == nodata else table.get(v, 0) for v in range(256)]
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert lut.tolist() == expected


def test_to_flair1_zeroes_values_outside_the_byte_range_and_nodata():
    raw = np.array([[-1, 0, 5, 19], [20, 255, 300, 7]], dtype=np.int16)
    out = classes.to_flair1(raw, "flair1", nodata=7)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 5, 19], [0, 0, 0, 0]]
    hub = np.array([0, 18, 19, 255], dtype=np.uint8)
    assert classes.to_flair1(hub, "flairhub").tolist() == [HUB_TO_1[0], HUB_TO_1[18], 0, 0]


def test_unknown_nomenclature_is_an_invalid_input():
    with pytest.raises(InvalidInput, match="nomenclature 'cosia2'"):
        classes.class_lut("cosia2")


# -- class tile --------------------------------------------------------------------------------------
Z = 18
TILE_RES = WORLD_M / (256 * 2**Z)
X0, Y0 = 132_000, 95_000  # an arbitrary tile near Montpellier at z18


def _mercator_raster(path, data, nodata=None):
    """A raster in EPSG:3857 whose pixels are exactly the z18 tile pixels, starting at tile (X0, Y0)."""
    left, top = -WORLD_M / 2 + X0 * 256 * TILE_RES, WORLD_M / 2 - Y0 * 256 * TILE_RES
    extra = {"nodata": nodata} if nodata is not None else {}
    return write_tif(path, data, crs="EPSG:3857", origin=(left, top), res=TILE_RES, **extra)


@pytest.fixture()
def hub_raster(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 25, (384, 512), dtype=np.uint8)  # 19..24 are not FLAIR-HUB classes
    data[:10, :10] = 9  # declared nodata below
    path = _mercator_raster(tmp_path / "hub.tif", data, nodata=9)
    return Dataset(id="HUB", path=path, role="truth", nomenclature="flairhub"), path


def _expected(path, window, nodata):
    """rasterio's read of the same window, mapped through the Python table (no LUT code involved)."""
    with rasterio.open(path) as ds:
        raw = ds.read(1, window=window, boundless=True, fill_value=nodata)
    return np.vectorize(lambda v: 0 if v == nodata else HUB_TO_1.get(int(v), 0))(raw).astype(np.uint8)


def test_read_class_tile_equals_a_rasterio_read_of_the_same_window(hub_raster):
    ds, path = hub_raster
    full = read_class_tile(ds, "WebMercatorQuad", Z, X0 + 1, Y0)
    np.testing.assert_array_equal(full, _expected(path, Window(256, 0, 256, 256), 9))
    first = read_class_tile(ds, "WebMercatorQuad", Z, X0, Y0)
    assert (first[:10, :10] == 0).all()  # declared nodata -> 0
    np.testing.assert_array_equal(first, _expected(path, Window(0, 0, 256, 256), 9))


def test_read_class_tile_is_zero_outside_the_raster_and_none_off_it(hub_raster):
    ds, path = hub_raster
    half = read_class_tile(ds, "WebMercatorQuad", Z, X0, Y0 + 1)  # rows 256..384 exist, the rest do not
    np.testing.assert_array_equal(half[:128], _expected(path, Window(0, 256, 256, 128), 9))
    assert (half[128:] == 0).all()
    assert read_class_tile(ds, "WebMercatorQuad", Z, X0 + 10, Y0) is None


def test_read_class_tile_names_a_truncated_or_missing_file(hub_raster, tmp_path):
    ds, path = hub_raster
    data = path.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableRaster) as exc:
        read_class_tile(Dataset(id="CUT", path=tmp_path / "cut.tif", role="truth"), "WebMercatorQuad", Z, X0, Y0)
    assert "cut.tif" in exc.value.problem and exc.value.fix
    with pytest.raises(RasterNotFound, match="gone.tif"):
        read_class_tile(Dataset(id="GONE", path=tmp_path / "gone.tif", role="truth"), "WebMercatorQuad", Z, X0, Y0)


# -- grid offset ---------------------------------------------------------------------------------------
def _info(tmp_path, name, origin, res=0.2, crs="EPSG:2154", size=(8, 6)):
    return raster.describe(write_tif(tmp_path / name, np.ones(size, np.uint8), crs=crs, origin=origin, res=res))


@pytest.mark.parametrize("dcol,drow", [(0, 0), (3, 2), (-5, 7), (1000, -1000)])
def test_grid_offset_finds_integer_shifts(tmp_path, dcol, drow):
    a = _info(tmp_path, "a.tif", (1000.0, 2000.0))
    # b's top-left corner is dcol pixels east and drow pixels south of a's, plus float noise far below a pixel
    b = _info(tmp_path, "b.tif", (1000.0 + dcol * 0.2 + 1e-7, 2000.0 - drow * 0.2 - 1e-7))
    assert raster.grid_offset(a, b) == (dcol, drow)
    assert raster.grid_offset(b, a) == (-dcol, -drow)


def test_grid_offset_is_none_across_phase_resolution_or_crs(tmp_path):
    a = _info(tmp_path, "a.tif", (1000.0, 2000.0))
    assert raster.grid_offset(a, _info(tmp_path, "phase.tif", (1000.02, 2000.0))) is None  # a tenth of a pixel
    assert raster.grid_offset(a, _info(tmp_path, "res.tif", (1000.0, 2000.0), res=0.5)) is None
    assert raster.grid_offset(a, _info(tmp_path, "crs.tif", (1000.0, 2000.0), crs="EPSG:32631")) is None


def test_check_same_grid_needs_offset_zero_and_the_same_size(tmp_path):
    a = _info(tmp_path, "a.tif", (1000.0, 2000.0))
    raster.check_same_grid(a, _info(tmp_path, "same.tif", (1000.0 + 1e-7, 2000.0)))
    with pytest.raises(AlignmentError, match="same pixel grid"):
        raster.check_same_grid(a, _info(tmp_path, "shift.tif", (1000.2, 2000.0)))
    with pytest.raises(AlignmentError, match="same pixel grid"):
        raster.check_same_grid(a, _info(tmp_path, "size.tif", (1000.0, 2000.0), size=(8, 7)))


# -- file stamp, lock, names --------------------------------------------------------------------------
def test_file_stamp_is_path_size_mtime_and_changes_on_replace(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    st = os.stat(p)
    assert file_stamp(p) == {"path": str(p.resolve()), "size": 3, "mtime_ns": st.st_mtime_ns}
    before = file_stamp(p)
    p.write_bytes(b"abcd")
    assert file_stamp(p) != before and file_stamp(p)["size"] == 4


def test_locked_excludes_another_holder_until_released(tmp_path):
    target = tmp_path / "sub" / "catalog.toml"
    assert lock_path(target) == tmp_path / "sub" / ".catalog.toml.lock"
    order: list[str] = []

    def other() -> None:
        with locked(target):
            order.append("other")

    with locked(target):
        with open(lock_path(target), "a") as fh, pytest.raises(BlockingIOError):
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.2)
        order.append("first")
    t.join(5)
    assert order == ["first", "other"]


@pytest.mark.parametrize("text,expected", [
    ("ölé 1", "ole_1"), ("Été 2021/Z1", "Ete_2021_Z1"), ("demo-unet.r18", "demo-unet.r18"),
    ("..hidden..", "hidden"), ("日本", "unnamed"), ("a" * 150, "a" * 100),
])
def test_safe_name_keeps_ascii_word_characters(text, expected):
    out = safe_name(text)
    assert out == expected
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", out)


# -- truth of a patch ---------------------------------------------------------------------------------
def _ds(ds_id, role, vintage=None, simulated=False, patch="P1"):
    return Dataset(id=ds_id, path=f"{ds_id}.tif", role=role, patch=patch, vintage=vintage, simulated=simulated)


def test_truth_of_prefers_a_real_mask_of_the_same_vintage(tmp_path):
    pred = _ds("PRED", "prediction", "2021-06-01")
    sim_same = _ds("SIM", "truth", "2021-06-01", simulated=True)
    real_other = _ds("OLD", "truth", "2019-05-01")
    real_same = _ds("REAL", "truth", "2021-06-01")
    other_patch = _ds("ELSE", "truth", "2021-06-01", patch="P2")
    cat = Catalog(tmp_path, [other_patch, sim_same, real_other, real_same, pred])
    assert cat.truth_of(pred).id == "REAL"
    cat.remove("REAL")
    assert cat.truth_of(pred).id == "OLD"  # real beats simulated, even of another vintage
    cat.remove("OLD")
    assert cat.truth_of(pred).id == "SIM"
    assert cat.truth_of(_ds("NOPATCH", "prediction", patch=None)) is None
    assert cat.truth_of(_ds("LONE", "prediction", patch="P3")) is None
