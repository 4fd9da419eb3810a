"""The shared test helpers are themselves checked: the tile-to-pixel mapper every tile test compares the
server with, against morecantile's tile bounds and rasterio's own index; the PNG decoder on a known image."""

from __future__ import annotations

import io

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer

from tests.helpers import DEMO, TMS, centre_tile, decode_png, tile_at, tile_pixel_centres, tile_to_raster

MSK = DEMO / "flair" / "D004_2021" / "Z6_NU" / "msk" / "MSK_000473.tif"


@pytest.mark.parametrize("zoom", [3, 15, 19, 21])
def test_tile_pixel_centres_follow_morecantile_bounds(zoom):
    tile = centre_tile(MSK, zoom)
    b = TMS.xy_bounds(tile)
    mx, my = tile_pixel_centres(tile, size=256)
    px = (b.right - b.left) / 256
    np.testing.assert_allclose(mx[0, 0], b.left + px / 2, atol=1e-6)
    np.testing.assert_allclose(my[0, 0], b.top - px / 2, atol=1e-6)
    np.testing.assert_allclose(mx[-1, -1], b.right - px / 2, atol=1e-6)
    np.testing.assert_allclose(my[-1, -1], b.bottom + px / 2, atol=1e-6)
    assert (np.diff(mx, axis=1) > 0).all() and (np.diff(my, axis=0) < 0).all()  # columns east, rows south


def test_tile_to_raster_agrees_with_rasterio_index():
    tile = centre_tile(MSK, 20)
    col, row = tile_to_raster(tile, MSK)
    mx, my = tile_pixel_centres(tile)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 256, (50, 2))
    with rasterio.open(MSK) as ds:
        x, y = Transformer.from_crs("EPSG:3857", ds.crs, always_xy=True).transform(mx[picks[:, 0], picks[:, 1]],
                                                                                 my[picks[:, 0], picks[:, 1]])
        want = [ds.index(a, b) for a, b in zip(x, y)]
    got = list(zip(np.floor(row[picks[:, 0], picks[:, 1]]).astype(int),
                   np.floor(col[picks[:, 0], picks[:, 1]]).astype(int)))
    assert [tuple(map(int, w)) for w in want] == got
    inside = [(r, c) for r, c in got if 0 <= r < 512 and 0 <= c < 512]
    assert len(inside) > 25  # a z20 tile at the patch centre lies mostly over the patch


def test_centre_tile_holds_the_raster_centre_and_tile_at_a_corner():
    with rasterio.open(MSK) as ds:
        b, crs = ds.bounds, ds.crs
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform((b.left + b.right) / 2,
                                                                               (b.bottom + b.top) / 2)
    t = centre_tile(MSK, 18)
    tb = TMS.bounds(t)
    assert tb.left <= lon < tb.right and tb.bottom < lat <= tb.top
    corner = tile_at(b.left + 0.1, b.top - 0.1, crs, 22)
    col, row = tile_to_raster(corner, MSK)
    assert ((np.floor(col) == 0) & (np.floor(row) == 0)).any()  # that tile shows the raster's first pixel


class _Resp:
    def __init__(self, status: int, content: bytes, ctype: str = "image/png") -> None:
        self.status_code, self.content, self.headers, self.text = status, content, {"content-type": ctype}, ""


def test_decode_png_returns_rgba_and_refuses_errors():
    rgba = np.random.default_rng(1).integers(0, 256, (8, 5, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    np.testing.assert_array_equal(decode_png(_Resp(200, buf.getvalue())), rgba)
    with pytest.raises(AssertionError):
        decode_png(_Resp(404, b"{}", "application/json"))
    with pytest.raises(AssertionError):
        decode_png(_Resp(200, buf.getvalue(), "image/jpeg"))
