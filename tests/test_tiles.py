"""The tile server through FastAPI's TestClient: georeferencing, palettes, presets and refusals."""

from __future__ import annotations

import io

import morecantile
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.warp import transform as warp_transform

from flair_viz.core import classes
from flair_viz.server.app import create_app
from tests.conftest import DEMO_CATALOG

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(DEMO_CATALOG))


def centre_tile(path, zoom=21):
    with rasterio.open(path) as ds:
        cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        (lon,), (lat,) = warp_transform(ds.crs, "EPSG:4326", [cx], [cy])
    return TMS.tile(lon, lat, zoom)


def source_values_at_tile_pixels(path, tile, band_indexes, cols, rows):
    """Independent check: map tile pixel centres to source pixels with pyproj/rasterio and read them."""
    b = TMS.xy_bounds(tile)
    res = (b.right - b.left) / 256
    xs = [b.left + (c + 0.5) * res for c in cols]
    ys = [b.top - (r + 0.5) * res for r in rows]
    with rasterio.open(path) as ds:
        sx, sy = warp_transform("EPSG:3857", ds.crs, xs, ys)
        rc = [ds.index(x, y) for x, y in zip(sx, sy)]
        data = ds.read(band_indexes)
    inside = [(i, r, c) for i, (r, c) in enumerate(rc) if 0 <= r < data.shape[1] and 0 <= c < data.shape[2]]
    return data, inside, rc


def decode(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.array(Image.open(io.BytesIO(resp.content)).convert("RGBA"))


def test_list_info_and_tilejson(client):
    ids = {d["id"] for d in client.get("/datasets").json()}
    assert {"IMG_000473", "MSK_000473"} <= ids
    info = client.get("/datasets/IMG_000473/info").json()
    assert info["count"] == 5 if "count" in info else len(info["band_descriptions"]) == 5
    tj = client.get("/datasets/IMG_000473/WebMercatorQuad/tilejson.json").json()
    assert "/datasets/IMG_000473/tiles/WebMercatorQuad/" in tj["tiles"][0]


@pytest.mark.parametrize("preset,bands", [("rgb", [1, 2, 3]), ("irc", [4, 1, 2])])
def test_image_tile_pixels_match_source_at_same_map_coordinate(client, preset, bands):
    cat_path = "data/demo/flair/D004_2021/Z6_NU/img/IMG_000473.tif"
    tile = centre_tile(cat_path)
    img = decode(client.get(f"/datasets/IMG_000473/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?preset={preset}"))
    rng = np.random.default_rng(1)
    cols, rows = rng.integers(0, 256, 300), rng.integers(0, 256, 300)
    data, inside, rc = source_values_at_tile_pixels(cat_path, tile, bands, cols, rows)
    assert len(inside) > 50
    exact = near = 0
    for i, r, c in inside:
        got = img[rows[i], cols[i], :3]
        assert img[rows[i], cols[i], 3] == 255
        if (got == data[:, r, c]).all():
            exact += 1
        else:  # nearest-neighbour rounding at a source pixel edge: must match a neighbour
            win = data[:, max(r - 1, 0): r + 2, max(c - 1, 0): c + 2].reshape(3, -1).T
            near += int(any((got == w).all() for w in win))
    assert exact / len(inside) > 0.9, exact / len(inside)
    assert exact + near == len(inside)


def test_mask_tile_uses_class_palette_at_same_map_coordinate(client):
    path = "data/demo/flair/D004_2021/Z6_NU/msk/MSK_000473.tif"
    tile = centre_tile(path)
    img = decode(client.get(f"/datasets/MSK_000473/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    rng = np.random.default_rng(2)
    cols, rows = rng.integers(0, 256, 300), rng.integers(0, 256, 300)
    data, inside, _ = source_values_at_tile_pixels(path, tile, [1], cols, rows)
    pal = classes.palette_rgba()
    matches = sum((img[rows[i], cols[i]] == pal[data[0, r, c]]).all() for i, r, c in inside)
    assert len(inside) > 50 and matches / len(inside) > 0.9


def test_elevation_preset_and_missing_band(client):
    tile = centre_tile("data/demo/flair/D004_2021/Z6_NU/img/IMG_000473.tif")
    url = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    elev = decode(client.get(f"/datasets/IMG_000473/{url}?preset=elevation"))
    rgb = decode(client.get(f"/datasets/IMG_000473/{url}?preset=rgb"))
    assert not np.array_equal(elev, rgb)
    r = client.get("/datasets/BDORTHO_RGB/info")
    assert r.status_code == 200
    r = client.get(f"/datasets/BDORTHO_RGB/tiles/WebMercatorQuad/19/0/0.png?preset=irc")
    assert r.status_code == 400 and "no NIR band" in r.json()["detail"]


def test_unknown_id_outside_tile_and_bad_zxy_are_not_500(client):
    r = client.get("/datasets/NOPE/info")
    assert r.status_code == 404 and "Unknown dataset ID" in r.json()["detail"]
    r = client.get("/datasets/IMG_000473/tiles/WebMercatorQuad/19/1/1.png")
    assert r.status_code == 404
    for bad in ("99/1/1", "19/-1/5", "a/b/c"):
        r = client.get(f"/datasets/IMG_000473/tiles/WebMercatorQuad/{bad}.png")
        assert 400 <= r.status_code < 500, (bad, r.status_code)


@pytest.mark.parametrize("query", ["url=/etc/passwd", "file=/etc/passwd", "path=../../etc/passwd",
                                   "preset=/vsicurl/http://example.com/x.tif", "bidx=../1"])
def test_path_like_parameters_are_refused(client, query):
    r = client.get(f"/datasets/IMG_000473/info?{query}")
    assert r.status_code == 400 and "catalog ID only" in r.json()["detail"]


def test_traversal_in_the_id_never_opens_a_file(client):
    for raw in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "IMG_000473%00"):
        r = client.get(f"/datasets/{raw}/info")
        assert r.status_code in (400, 404, 422), (raw, r.status_code)
        assert "root:" not in r.text


def test_token_is_required_when_set():
    c = TestClient(create_app(DEMO_CATALOG, token="s3cret"))
    assert c.get("/datasets").status_code == 401
    assert c.get("/datasets?token=wrong").status_code == 401
    assert c.get("/datasets?token=s3cret").status_code == 200
    assert c.get("/datasets", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").json() == {"ok": True}  # health probes need no token, and reveal nothing


def test_tile_urls_carry_the_token_when_one_is_set(monkeypatch):
    """The UI's layers must keep working against a token-protected server."""
    from flair_viz import change
    from flair_viz.web import explore
    from flair_viz.web import maps as webmap

    monkeypatch.delenv("FLAIR_VIZ_TOKEN", raising=False)
    assert "token" not in webmap.dataset_tile_url("IMG_1", "http://t")
    monkeypatch.setenv("FLAIR_VIZ_TOKEN", "s3cret")
    urls = [webmap.dataset_tile_url("IMG_1", "http://t", preset="irc"),
            explore.prediction_url("http://t", "IMG_1", "m", "entropy"),
            explore.confusion_url("http://t", "MSK_1", "PRED_1", 3, 2),
            change.change_tile_url("A", "B", "flow", "http://t")]
    for url in urls:
        assert url.startswith("http://t/") and "/tiles/WebMercatorQuad/{z}/{x}/{y}.png?" in url
        assert "token=s3cret" in url
    assert "preset=irc" in urls[0] and "layer=entropy" in urls[1] and "mode=flow" in urls[3]


def test_ui_json_calls_carry_the_token(tile_server, monkeypatch):
    """fetch_json (model list, device) authenticates against a token-protected server."""
    import subprocess
    import sys
    import time
    import urllib.request

    from flair_viz.core.errors import FlairVizError
    from flair_viz.server.run import fetch_json
    from tests.conftest import REPO, free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flair_viz", "serve", "--port", str(port), "--token", "tok",
                             "--catalog", str(DEMO_CATALOG)], cwd=REPO)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        monkeypatch.delenv("FLAIR_VIZ_TOKEN", raising=False)
        with pytest.raises(FlairVizError, match="401"):
            fetch_json(f"http://127.0.0.1:{port}", "/datasets")
        monkeypatch.setenv("FLAIR_VIZ_TOKEN", "tok")
        assert {d["id"] for d in fetch_json(f"http://127.0.0.1:{port}", "/datasets")} >= {"IMG_000473"}
    finally:
        proc.terminate()
        proc.wait(10)
