"""The tile server through FastAPI's TestClient: georeferencing, palettes, presets and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from flair_viz.core import classes, raster
from tests.helpers import REPO, app_client, centre_tile, decode_png, start_server, stop_server, tile_to_raster


def source_values_at_tile_pixels(path, tile, band_indexes, cols, rows):
    """Independent check: the source pixel (row, col) under each sampled tile pixel, and the source bands."""
    fc, fr = tile_to_raster(tile, path)
    rc = list(zip(np.floor(fr[rows, cols]).astype(int), np.floor(fc[rows, cols]).astype(int)))
    with rasterio.open(path) as ds:
        data = ds.read(band_indexes)
    inside = [(i, r, c) for i, (r, c) in enumerate(rc) if 0 <= r < data.shape[1] and 0 <= c < data.shape[2]]
    return data, inside, rc


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
    tile = centre_tile(cat_path, 21)
    img = decode_png(client.get(f"/datasets/IMG_000473/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?preset={preset}"))
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
    tile = centre_tile(path, 21)
    img = decode_png(client.get(f"/datasets/MSK_000473/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    rng = np.random.default_rng(2)
    cols, rows = rng.integers(0, 256, 300), rng.integers(0, 256, 300)
    data, inside, _ = source_values_at_tile_pixels(path, tile, [1], cols, rows)
    pal = classes.palette_rgba()
    matches = sum((img[rows[i], cols[i]] == pal[data[0, r, c]]).all() for i, r, c in inside)
    assert len(inside) > 50 and matches / len(inside) > 0.9


def test_flair1_local_cs_mask_tiles_answer_on_the_image_grid(client):
    """FLAIR-1 masks write Lambert-93 as LOCAL_CS, which PROJ cannot take to Web Mercator: served as EPSG:2154."""
    zone = REPO / "data/demo/flair1/D034_2021/Z6_NU"
    msk, img = zone / "msk/MSK_025663.tif", zone / "img/IMG_025663.tif"
    with rasterio.open(msk) as ds:
        assert ds.crs.to_epsg() is None  # the quirk is really there
    assert raster.tile_source(msk).startswith("vrt://") and raster.tile_source(img) == str(img)
    tile = centre_tile(img, 20)  # geometry from the image, which has the same grid and a real EPSG:2154
    resp = client.get(f"/datasets/MSK_025663/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
    assert resp.status_code == 200, resp.text
    got = decode_png(resp)
    fc, fr = tile_to_raster(tile, img)
    with rasterio.open(msk) as ds:
        data = ds.read(1)
    rows, cols = np.floor(fr).astype(int), np.floor(fc).astype(int)
    inside = (rows >= 1) & (rows < 511) & (cols >= 1) & (cols < 511)
    want = classes.palette_rgba()[data[rows[inside], cols[inside]]]
    assert inside.sum() > 10_000 and (got[inside] == want).all(axis=1).mean() > 0.9


def test_elevation_preset_and_missing_band(client):
    tile = centre_tile("data/demo/flair/D004_2021/Z6_NU/img/IMG_000473.tif", 21)
    url = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    elev = decode_png(client.get(f"/datasets/IMG_000473/{url}?preset=elevation"))
    rgb = decode_png(client.get(f"/datasets/IMG_000473/{url}?preset=rgb"))
    assert not np.array_equal(elev, rgb)
    r = client.get("/datasets/BDORTHO_RGB/info")
    assert r.status_code == 200
    r = client.get("/datasets/BDORTHO_RGB/tiles/WebMercatorQuad/19/0/0.png?preset=irc")
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
    c = app_client(token="s3cret")
    assert c.get("/datasets").status_code == 401
    assert c.get("/datasets?token=wrong").status_code == 401
    assert c.get("/datasets?token=s3cret").status_code == 200
    assert c.get("/datasets", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # health probes need no token, and reveal nothing of the data: only whether the server is up and still
    # predicting the demo zone ahead (the launcher waits for that)
    assert c.get("/healthz").json() == {"ok": True, "warming": False}


def test_tile_urls_carry_the_token_when_one_is_set(monkeypatch):
    """The UI's layers must keep working against a token-protected server."""
    from flair_viz.web import change_map, explore
    from flair_viz.web import maps as webmap

    monkeypatch.delenv("FLAIR_VIZ_TOKEN", raising=False)
    assert "token" not in webmap.dataset_tile_url("IMG_1", "http://t")
    monkeypatch.setenv("FLAIR_VIZ_TOKEN", "s3cret")
    urls = [webmap.dataset_tile_url("IMG_1", "http://t", preset="irc"),
            explore.prediction_url("http://t", "IMG_1", "m", "entropy"),
            explore.confusion_url("http://t", "MSK_1", "PRED_1", 3, 2),
            change_map.change_tile_url("A", "B", "flow", "http://t")]
    for url in urls:
        assert url.startswith("http://t/") and "/tiles/WebMercatorQuad/{z}/{x}/{y}.png?" in url
        assert "token=s3cret" in url
    assert "preset=irc" in urls[0] and "layer=entropy" in urls[1] and "mode=flow" in urls[3]


def test_ui_json_calls_carry_the_token(monkeypatch):
    """fetch_json (model list, device) authenticates against a token-protected server."""
    from flair_viz.core.errors import FlairVizError
    from flair_viz.web.client import fetch_json

    proc, url = start_server("--token", "tok")
    try:
        monkeypatch.delenv("FLAIR_VIZ_TOKEN", raising=False)
        with pytest.raises(FlairVizError, match="401"):
            fetch_json(url, "/datasets")
        monkeypatch.setenv("FLAIR_VIZ_TOKEN", "tok")
        assert {d["id"] for d in fetch_json(url, "/datasets")} >= {"IMG_000473"}
    finally:
        stop_server(proc)
