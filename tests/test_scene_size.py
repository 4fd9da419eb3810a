"""An image too large to predict whole: its coarse live-prediction tiles are refused before any work, naming
the zoom where live predictions start; tiles from that zoom are predicted as usual.

Why it matters: a coarse tile is cut from the whole image's prediction (flair_viz.predict.scene). For a BD
ORTHO stack of a département that would be days of CPU for one map view. The limit is
``FLAIR_VIZ_MAX_SCENE_MPX``; here it is set below the demo zone's size (2560² px = 6.6 megapixels).
"""

from __future__ import annotations

import math

import pytest
import rasterio
from rasterio.warp import transform

from flair_viz.core import raster
from flair_viz.predict import live, scene
from tests.helpers import app_client, centre_tile, clear_live_caches, default_model_id

ZONE = "ZONE_D034_2021_Z6_NU"


@pytest.fixture()
def client():
    clear_live_caches()
    with app_client() as c:
        yield c


def zone_path(client):
    return client.app.state.catalog.get().get(ZONE).path


def test_live_zoom_is_where_a_tile_pixel_is_at_most_three_image_pixels(client):
    info = raster.describe(zone_path(client))
    # independent: a Web Mercator tile pixel at latitude phi covers 2 pi R cos(phi) / (256 * 2^z) metres
    lon, lat = transform(info.crs, "EPSG:4326", [(info.bounds[0] + info.bounds[2]) / 2],
                         [(info.bounds[1] + info.bounds[3]) / 2])
    ground = [2 * math.pi * 6378137 * math.cos(math.radians(lat[0])) / (256 * 2 ** z) for z in range(25)]
    expected = next(z for z in range(25) if ground[z] / info.res[0] <= live.LIVE_MAX_RATIO)
    assert live.live_zoom(info, "WebMercatorQuad") == expected


def test_coarse_tile_of_a_too_large_image_is_refused_naming_the_live_zoom(client, monkeypatch):
    model = default_model_id()
    path = zone_path(client)
    info = raster.describe(path)
    assert info.width * info.height / 1e6 > 6  # the demo zone, larger than the limit set below
    monkeypatch.setenv("FLAIR_VIZ_MAX_SCENE_MPX", "6")
    z_live = live.live_zoom(info, "WebMercatorQuad")
    t = centre_tile(path, z_live - 2)
    r = client.get(f"/datasets/{ZONE}/predict/{model}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 400, r.text
    text = r.text
    assert "too large" in text and f"zoom {z_live}" in text and "FLAIR_VIZ_MAX_SCENE_MPX" in text
    assert not list(scene.config.cache_dir().rglob(f"{ZONE}.*.codes.tif"))  # nothing was predicted


def test_a_too_large_image_still_shows_live_tiles_from_its_live_zoom(client, monkeypatch):
    model = default_model_id()
    path = zone_path(client)
    monkeypatch.setenv("FLAIR_VIZ_MAX_SCENE_MPX", "6")
    z_live = live.live_zoom(raster.describe(path), "WebMercatorQuad")
    t = centre_tile(path, z_live)
    r = client.get(f"/datasets/{ZONE}/predict/{model}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 200, r.text
    with rasterio.MemoryFile(r.content) as mem, mem.open() as png:
        assert png.read(png.count)[-1].any()  # drawn pixels (alpha), not an empty tile


def test_warming_a_too_large_image_predicts_nothing(client, monkeypatch, capsys):
    monkeypatch.setenv("FLAIR_VIZ_MAX_SCENE_MPX", "6")
    ds = client.app.state.catalog.get().get(ZONE)
    assert live.warm([ds], default_model_id()) == []
    assert "too large" in capsys.readouterr().err


def test_explore_names_the_live_zoom_over_a_too_large_image_only(client, monkeypatch):
    from flair_viz.web import explore

    monkeypatch.setenv("FLAIR_VIZ_MAX_SCENE_MPX", "6")
    cat = client.app.state.catalog.get()
    zone = cat.get(ZONE)
    note = explore.live_zoom_note(zone)
    assert note and f"zoom {live.live_zoom(raster.describe(zone.path), 'WebMercatorQuad')}" in note
    assert explore.live_zoom_note(cat.get("IMG_025651")) is None  # one 512 px patch: predicted whole
