"""Bounded requests: every tile-server route refuses, before reading, a zoom or a size whose cost has no bound.

Before these checks a z0 tile of one 512 px patch cost 130 s of CPU and one ``buffer=`` took the server from
1 GB to 11.8 GB. Each case runs on the real app (``create_app`` on the demo catalog, through FastAPI's
TestClient); the expected zoom ranges are computed here from the files' geometry (pixel size, latitude,
overviews), not taken from the code that enforces them, and the caps are read from the settings table.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import transform_bounds

from flair_viz.core import config
from flair_viz.core.tiling import CACHE_CONTROL
from tests.helpers import WORLD_M, app_client, centre_tile, clear_live_caches, decode_png

IMG, MSK, PRED, SIM = "IMG_000473", "MSK_000473", "PRED_000473_demo-unet-r18", "MSK_000473_SIM2024"
ZONE = "ZONE_D034_2021_Z6_NU"  # a scanned zone mosaic (VRT) with overviews
DEMO_MODEL = "demo-unet-r18"
TOP_ZOOM = 24  # WebMercatorQuad's last zoom: zooming in costs only the tile's own pixels


@pytest.fixture(scope="module")
def client():
    return app_client()


def dataset_path(client, ds_id: str):
    return client.app.state.catalog.get().get(ds_id).path


def expected_low_zoom(path) -> int:
    """The lowest zoom a dataset should be served at, from its geometry alone.

    Its stored pixel size on the Web Mercator grid is the ground size over cos(latitude); the zoom of that
    resolution is log2(world width / 256 / size); each overview halves the resolution once more; and the
    settings table allows ``max_zoom_out`` levels below the coarsest one."""
    with rasterio.open(path) as src:
        res, b, overviews = src.res[0], src.bounds, src.overviews(1)
        crs = src.crs if src.crs and src.crs.to_epsg() else "EPSG:2154"  # FLAIR-1 masks' LOCAL_CS is Lambert-93
    _, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform((b.left + b.right) / 2,
                                                                               (b.bottom + b.top) / 2)
    native = round(math.log2(WORLD_M / 256 / (res / math.cos(math.radians(lat)))))
    coarsest = native - round(math.log2(max(overviews, default=1)))
    return coarsest - config.settings().max_zoom_out


def tile_urls(client, z: int) -> dict[str, str]:
    """One tile URL per route family that reads catalog rasters, at zoom ``z`` over the demo patch 000473."""
    t = centre_tile(dataset_path(client, IMG), z)
    zxy = f"WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    return {"aerial": f"/datasets/{IMG}/tiles/{zxy}",
            "predict": f"/datasets/{IMG}/predict/{DEMO_MODEL}/tiles/{zxy}",
            "confusion": f"/datasets/{MSK}/confusion/{PRED}/tiles/{zxy}?truth_class=1&pred_class=2",
            "change": f"/change/{MSK}/{SIM}/tiles/{zxy}"}


# -- zoom range per dataset ---------------------------------------------------------------------------------
def test_the_demo_patch_and_zone_ranges_follow_their_overviews(client):
    """The patch has no overviews, the zone mosaic has four levels: its range reaches four zooms further out."""
    patch, zone = expected_low_zoom(dataset_path(client, IMG)), expected_low_zoom(dataset_path(client, ZONE))
    assert zone == patch - 4
    for ds_id, low in ((IMG, patch), (ZONE, zone)):
        path = dataset_path(client, ds_id)
        ok = centre_tile(path, low)
        r = client.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{ok.z}/{ok.x}/{ok.y}.png")
        assert r.status_code == 200, (ds_id, low, r.text[:200])
        out = centre_tile(path, low - 1)
        r = client.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{out.z}/{out.x}/{out.y}.png")
        assert r.status_code == 400
        assert f"Zoom {low - 1} is outside the zoom range of dataset {ds_id} ({low}..{TOP_ZOOM}" in r.json()["detail"]
        assert f"zoom in to {low} or more" in r.json()["fix"] and "Overview" in r.json()["fix"]


@pytest.mark.parametrize("ds_id", [IMG, MSK, ZONE, ZONE + "_MSK", PRED, "GERS_NAF_2016", "BDORTHO_RGB",
                                   "CHANGE_MSK_000473_SIM2024"])
def test_a_client_following_the_tilejson_is_never_refused(client, ds_id):
    """TileJSON's minzoom (rio-tiler's: where the whole dataset fits one tile) lies inside the served range."""
    minzoom = client.get(f"/datasets/{ds_id}/WebMercatorQuad/tilejson.json").json()["minzoom"]
    t = centre_tile(dataset_path(client, ds_id), minzoom)
    r = client.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 200, (ds_id, minzoom, r.text[:200])


@pytest.mark.parametrize("route", ["aerial", "predict", "confusion", "change"])
def test_a_zoom_below_the_range_is_refused_with_the_range_and_the_fix_on_every_route(client, route):
    low = expected_low_zoom(dataset_path(client, IMG))
    for z in (0, low - 1):  # z0 of one patch once cost 130 s of CPU
        r = client.get(tile_urls(client, z)[route])
        assert r.status_code == 400, (route, z, r.status_code, r.text[:200])
        body = r.json()
        assert f"Zoom {z} is outside the zoom range" in body["detail"] and f"{low}..{TOP_ZOOM}" in body["detail"]
        assert f"zoom in to {low} or more" in body["fix"]


def predicted() -> list:
    """The prediction caches on disk: every tile the server predicts, live or cut from a scene, is written there."""
    cache = config.cache_dir()
    return [p for d in ("predict-tiles", "predictions") for p in (cache / d).rglob("*") if p.is_file()]


def test_a_refused_zoom_predicts_nothing(client):
    clear_live_caches()
    low = expected_low_zoom(dataset_path(client, IMG))
    assert client.get(tile_urls(client, low - 1)["predict"]).status_code == 400
    assert not predicted()


def test_the_overview_layer_serves_every_zoom(client):
    """Footprints are boxes drawn from a table, not raster reads: the Overview page stays usable at z0."""
    r = client.get("/overview/tiles/WebMercatorQuad/0/0/0.png")
    assert r.status_code == 200 and r.headers["cache-control"] == CACHE_CONTROL


# -- caps on size parameters ----------------------------------------------------------------------------------
def caps() -> config.Settings:
    return config.settings()


def oversize_requests(client) -> list[tuple[str, str, str]]:
    """(URL, parameter, settings field) of a request one over each cap."""
    s = caps()
    t = centre_tile(dataset_path(client, IMG), 19)
    tile = f"/datasets/{IMG}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    zxy = f"WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
    return [
        (f"{tile}?tilesize={s.max_tilesize + 1}", "tilesize", "max_tilesize"),
        (f"/datasets/{IMG}/WebMercatorQuad/tilejson.json?tilesize={s.max_tilesize * 2}", "tilesize", "max_tilesize"),
        (f"{tile}?buffer={s.max_buffer + 1}", "buffer", "max_buffer"),
        (f"{tile}?padding={s.max_buffer + 1}", "padding", "max_buffer"),
        (f"/datasets/{IMG}/preview.png?max_size={s.max_image_px + 1}", "max_size", "max_image_px"),
        (f"/datasets/{IMG}/preview.png?width={s.max_image_px + 1}&height=64", "width", "max_image_px"),
        (f"/datasets/{IMG}/preview.png?width=64&height={s.max_image_px + 1}", "height", "max_image_px"),
        (f"/datasets/{IMG}/preview/{s.max_image_px + 1}x64.png", "width", "max_image_px"),
        (f"/datasets/{IMG}/statistics?max_size={s.max_image_px + 1}", "max_size", "max_image_px"),
        (f"/datasets/{IMG}/statistics?histogram_bins={s.max_bins + 1}", "histogram_bins", "max_bins"),
        (f"/datasets/{MSK}/confusion/{PRED}/tiles/{zxy}?truth_class=1&pred_class=2&tilesize={s.max_tilesize * 2}",
         "tilesize", "max_tilesize"),
        (f"/overview/tiles/{zxy}?tilesize={s.max_tilesize * 2}", "tilesize", "max_tilesize"),
    ]


def test_every_size_over_its_cap_is_refused_naming_the_cap_and_its_setting(client):
    s = caps()
    for url, param, field in oversize_requests(client):
        r = client.get(url)
        assert r.status_code == 400, (url, r.status_code, r.text[:200])
        body = r.json()
        assert f"({param} <= {getattr(s, field)})" in body["detail"], (url, body)
        assert f"{param}={getattr(s, field)} or less" in body["fix"] and config.env_name(field) in body["fix"]


def footprint(client, ds_id: str) -> dict:
    """The dataset's footprint as a GeoJSON Feature in lon/lat (what ``POST /statistics`` takes)."""
    with rasterio.open(dataset_path(client, ds_id)) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return {"type": "Feature", "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}


def test_one_side_alone_is_refused(client):
    """Given one side, the other follows the area's shape (a feature can be any shape), with no bound."""
    for r in (client.get(f"/datasets/{IMG}/preview.png?width=100"),
              client.post(f"/datasets/{IMG}/statistics?width=100", json=footprint(client, IMG))):
        assert r.status_code == 400 and "width=100 without height=" in r.json()["detail"]
        assert "give both width and height" in r.json()["fix"]


def test_categories_and_histogram_edges_are_counted_against_the_bins_cap(client):
    n = caps().max_bins + 1
    r = client.get(f"/datasets/{MSK}/statistics?" + "&".join(f"c={i}" for i in range(n)))
    assert r.status_code == 400 and f"{n} categories (c=)" in r.json()["detail"]
    r = client.get(f"/datasets/{MSK}/statistics?histogram_bins=" + ",".join(str(i) for i in range(n + 1)))
    assert r.status_code == 400 and f"histogram_bins={n}" in r.json()["detail"]


def test_the_caps_come_from_the_settings_table(client, monkeypatch):
    """An operator lowers a cap with its variable: the next request obeys it, with no restart."""
    t = centre_tile(dataset_path(client, IMG), 19)
    url = f"/datasets/{IMG}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?tilesize=512"
    assert client.get(url).status_code == 200
    monkeypatch.setenv(config.env_name("max_tilesize"), "256")
    r = client.get(url)
    assert r.status_code == 400 and "(tilesize <= 256)" in r.json()["detail"]
    low = expected_low_zoom(dataset_path(client, IMG))
    monkeypatch.setenv(config.env_name("max_zoom_out"), "2")
    lower = centre_tile(dataset_path(client, IMG), low + 1)  # allowed with 4 levels out, not with 2
    r = client.get(f"/datasets/{IMG}/tiles/WebMercatorQuad/{lower.z}/{lower.x}/{lower.y}.png")
    assert r.status_code == 400 and f"({low + 2}..{TOP_ZOOM}" in r.json()["detail"]


# -- normal requests still answer --------------------------------------------------------------------------------
def test_requests_at_the_caps_still_answer(client):
    s = caps()
    t = centre_tile(dataset_path(client, IMG), 19)
    r = client.get(f"/datasets/{IMG}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?tilesize={s.max_tilesize}")
    assert r.status_code == 200 and decode_png(r).shape[:2] == (s.max_tilesize, s.max_tilesize)
    r = client.get(f"/datasets/{IMG}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?buffer={s.max_buffer}")
    assert r.status_code == 200 and decode_png(r).shape[:2] == (256 + 2 * s.max_buffer,) * 2
    r = client.get(f"/datasets/{IMG}/preview.png?width={s.max_image_px}&height=32")
    assert r.status_code == 200 and decode_png(r).shape[:2] == (32, s.max_image_px)
    r = client.get(f"/datasets/{MSK}/statistics?histogram_bins={s.max_bins}")
    assert r.status_code == 200 and len(r.json()["b1"]["histogram"][0]) == s.max_bins


def test_a_feature_without_a_size_keeps_native_pixels_up_to_the_cap(client):
    """Under the cap a feature is read at its native size, as before; over it, at most the cap on a side
    (before, the zone's 2560 x 2560 px were all read, and a département's would have been too)."""
    cap = caps().max_image_px
    for ds_id in (IMG, ZONE):
        with rasterio.open(dataset_path(client, ds_id)) as src:
            native = src.width * src.height
        r = client.post(f"/datasets/{ds_id}/statistics?dst_crs=EPSG:2154", json=footprint(client, ds_id))
        assert r.status_code == 200, r.text[:200]
        read = r.json()["properties"]["statistics"]["b1"]["valid_pixels"]
        if native <= cap * cap:
            assert read == native
        else:
            assert 0.9 * cap * cap <= read <= cap * cap < native


@pytest.mark.parametrize("route", ["aerial", "confusion", "change"])
def test_tiles_at_the_native_zoom_still_answer_with_the_one_cache_policy(client, route):
    r = client.get(tile_urls(client, 19)[route])
    assert r.status_code == 200, r.text[:200]
    if route != "aerial":  # titiler's own tiles keep titiler's headers
        assert r.headers["cache-control"] == CACHE_CONTROL
    assert decode_png(r).shape[2] == 4


# -- a client that has gone ----------------------------------------------------------------------------------------
def asgi_get(app, url: str, connected: bool) -> int:
    """GET ``url`` straight through the ASGI interface, as uvicorn calls the app; ``connected=False`` is a client
    that has closed its connection (uvicorn's receive then answers ``http.disconnect``)."""
    path, _, query = url.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if connected and not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if connected:
            await anyio.sleep_forever()  # an open connection sends nothing more
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, receive, send)

    # in a thread of its own: the suite's browser tests (Playwright's sync API) keep an event loop running in the
    # main thread, where anyio.run refuses to start another
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, run).result()
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_work_for_a_client_that_has_gone_is_dropped_before_it_starts(client):
    clear_live_caches()
    urls = tile_urls(client, 19)
    assert asgi_get(client.app, urls["change"], connected=True) == 200  # the harness answers a present client
    for route in ("aerial", "predict", "confusion", "change"):
        assert asgi_get(client.app, urls[route], connected=False) == 499, route
    assert not predicted()  # the live prediction never ran
