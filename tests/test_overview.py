"""The overview map: footprint tiles coloured by domain, date or a stored per-patch score, and the click lookup.

Every expected colour is computed here independently: scores from the written arrays with plain numpy,
tile pixels from the Web Mercator formula and PROJ (tests.helpers.tile_pixel_centres), never from the
renderer's own arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from flair_viz import metrics
from flair_viz.core.catalog import Catalog
from flair_viz.overview import colours as oc
from flair_viz.overview.footprints import footprints, patch_at
from flair_viz.web import overview as web_overview
from tests.helpers import TMS, app_client, decode_png, tile_pixel_centres, write_tif

SIDE, RES = 64, 1.6  # 64 px at 1.6 m: a 102.4 m FLAIR footprint with small files
ULX, ULY = 721104.0, 6249288.0  # Hérault, as the demo zone
GRID = [(r, c) for r in range(2) for c in range(3)]  # domain A: a 2 x 3 block of adjacent patches
FAR = (5, 8)  # domain B: one patch 500 m south-east, alone
TO_3857 = Transformer.from_crs("EPSG:2154", "EPSG:3857", always_xy=True)
TO_LONLAT = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)


def _masks(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth of four class quarters; the prediction wrong on the first ``6 * i`` rows (one patch: one score)."""
    truth = np.zeros((SIDE, SIDE), np.uint8)
    truth[:32, :32], truth[:32, 32:], truth[32:, :32], truth[32:, 32:] = 1, 6, 10, 18
    pred = truth.copy()
    pred[: 6 * i] = 2
    return truth, pred


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A scanned FLAIR tree (two domains), stored predictions, a metrics store filled by the one engine."""
    root = tmp_path_factory.mktemp("overview")
    patches = []  # (pid, domain, row, col, truth, pred)
    for i, (r, c) in enumerate([*GRID, FAR]):
        domain, zone = ("D034_2021", "Z4_UU") if (r, c) != FAR else ("D013_2019", "Z1_UA")
        pid = f"9{i:05d}"
        truth, pred = _masks(i)
        origin = (ULX + c * SIDE * RES, ULY - r * SIDE * RES)
        img = np.full((5, SIDE, SIDE), 100 + i, np.uint8)
        write_tif(root / "data" / "flair" / domain / zone / "img" / f"IMG_{pid}.tif", img, origin=origin, res=RES)
        write_tif(root / "data" / "flair" / domain / zone / "msk" / f"MSK_{pid}.tif", truth, origin=origin, res=RES)
        write_tif(root / "preds" / f"PRED_{pid}.tif", pred, origin=origin, res=RES)
        patches.append((pid, domain, r, c, truth, pred))
    cat_path = root / "data" / "catalog.toml"
    cat_path.write_text('data_root = "."\n\n[[scan]]\npath = "flair"\n', encoding="utf-8")
    store = root / "metrics.parquet"
    metrics.evaluate(metrics.folder_pairs(root / "data" / "flair", root / "preds", model="m1"), store=store)
    return {"root": root, "catalog": cat_path, "store": store, "patches": patches}


def _centre(r: int, c: int) -> tuple[float, float]:
    return ULX + (c + 0.5) * SIDE * RES, ULY - (r + 0.5) * SIDE * RES


def _pixel(x93: float, y93: float, zoom: int):
    """(tile, row, col) of the tile pixel whose centre is nearest the EPSG:2154 point: PROJ + the tile formula."""
    lon, lat = TO_LONLAT.transform(x93, y93)
    tile = TMS.tile(lon, lat, zoom)
    mx, my = TO_3857.transform(x93, y93)
    cx, cy = tile_pixel_centres(tile)
    row = int(np.argmin(np.abs(cy[:, 0] - my)))
    col = int(np.argmin(np.abs(cx[0] - mx)))
    return tile, row, col


def _miou_full(truth: np.ndarray, pred: np.ndarray) -> float:
    cm = np.bincount(((truth.astype(np.int64) - 1) * 19 + (pred.astype(np.int64) - 1)).ravel(),
                     minlength=361).reshape(19, 19)
    tp = np.diag(cm).astype(float)
    den = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(den > 0, tp / np.where(den > 0, den, 1), np.nan)
    return float(np.nanmean(iou))


def _hex_rgba(h: str) -> list[int]:
    return [int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16), oc.ALPHA]


def test_footprints_come_from_the_patch_index(tree):
    fp = footprints(Catalog.load(tree["catalog"]))
    assert sorted(fp.table["id"]) == sorted(f"IMG_{p[0]}" for p in tree["patches"])
    for pid, _, r, c, _, _ in tree["patches"]:
        i = int(np.flatnonzero(fp.table["id"].to_numpy() == f"IMG_{pid}")[0])
        np.testing.assert_allclose(fp.l93[i], [ULX + c * 102.4, ULY - (r + 1) * 102.4, ULX + (c + 1) * 102.4,
                                               ULY - r * 102.4], atol=1e-6)


def test_miou_tile_pixels_have_the_colour_of_each_patch_score(tree, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tree["store"]))
    client = app_client(tree["catalog"])
    seen_bins = set()
    for pid, _, r, c, truth, pred in tree["patches"]:
        expected = _miou_full(truth, pred)
        b = min(int(np.floor(expected * 10)), 9)
        seen_bins.add(b)
        tile, row, col = _pixel(*_centre(r, c), zoom=17)
        rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                                     params={"color_by": "miou", "model": "m1", "protocol": "full"}))
        assert rgba[row, col].tolist() == _hex_rgba(oc.SCORE_COLOURS[b]), (pid, expected)
    assert len(seen_bins) >= 3  # the patches really differ, so a constant colour would fail


def test_outside_footprints_is_transparent_and_a_patch_edge_is_exact(tree):
    client = app_client(tree["catalog"])
    # 20 m west of the block's west edge, at the first row's centre: no footprint there.
    tile, row, col = _pixel(ULX - 20, _centre(0, 0)[1], zoom=17)
    rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    assert rgba[row, col, 3] == 0
    mx, _ = TO_3857.transform(ULX, _centre(0, 0)[1])
    cx, _ = tile_pixel_centres(tile)
    inside = cx[row] > mx + 2  # pixel centres 2 m east of the edge are in patch (0, 0), west of it outside
    outside = cx[row] < mx - 2
    assert (rgba[row, inside & (cx[row] < mx + 90), 3] > 0).all()
    assert (rgba[row, outside, 3] == 0).all()
    assert rgba[..., 3].any()


def test_adjacent_patches_are_separated_by_a_darker_one_pixel_border(tree):
    """Where patch (0, 0) meets patch (0, 1), the last pixel column of (0, 0) is its colour at 60 %, the next is (0, 1)."""
    from flair_viz.overview.render import OUTLINE_SHADE

    client = app_client(tree["catalog"])
    border_x = ULX + SIDE * RES
    tile, row, _ = _pixel(border_x, _centre(0, 0)[1], zoom=17)
    rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    mx, _ = TO_3857.transform(border_x, _centre(0, 0)[1])
    cx, _ = tile_pixel_centres(tile)
    west = int(np.flatnonzero(cx[row] < mx)[-1])  # the last pixel centre west of the border
    colour = _hex_rgba(oc.DOMAIN_COLOURS[0 if tree["patches"][0][1] < tree["patches"][-1][1] else 1])
    assert rgba[row, west].tolist() == [int(v * OUTLINE_SHADE) for v in colour[:3]] + [oc.ALPHA]
    assert rgba[row, west - 5].tolist() == colour and rgba[row, west + 5].tolist() == colour


def test_domain_and_date_colouring(tree):
    client = app_client(tree["catalog"])
    domains = sorted({p[1] for p in tree["patches"]})
    for pid, domain, r, c, _, _ in tree["patches"][:1] + tree["patches"][-1:]:
        tile, row, col = _pixel(*_centre(r, c), zoom=17)
        url = f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        got = decode_png(client.get(url, params={"color_by": "domain"}))[row, col].tolist()
        assert got == _hex_rgba(oc.DOMAIN_COLOURS[domains.index(domain)])
        years = sorted({d.split("_")[-1] for d in domains})
        got = decode_png(client.get(url, params={"color_by": "date"}))[row, col].tolist()
        assert got == _hex_rgba(oc.DATE_COLOURS[0 if domain.endswith("2019") else -1]), years
    legend = client.get("/overview/legend", params={"color_by": "domain"}).json()
    assert [e["label"] for e in legend["entries"]] == domains and legend["patches"] == len(tree["patches"])


def test_confusion_count_colour_matches_numpy_count(tree, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tree["store"]))
    client = app_client(tree["catalog"])
    for pid, _, r, c, truth, pred in tree["patches"][2:5]:
        count = int(((truth == 1) & (pred == 2)).sum())  # truth building predicted pervious
        b = int(np.searchsorted(oc.CONFUSION_EDGES, count, side="right") - 1)
        tile, row, col = _pixel(*_centre(r, c), zoom=17)
        rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                                     params={"color_by": "confusion", "model": "m1", "protocol": "full",
                                             "truth_class": 1, "pred_class": 2}))
        assert rgba[row, col].tolist() == _hex_rgba(oc.CONFUSION_COLOURS[b]), (pid, count)


def test_patch_without_a_score_is_grey_and_unknown_model_is_all_grey(tree, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tree["store"]))
    client = app_client(tree["catalog"])
    tile, row, col = _pixel(*_centre(0, 0), zoom=17)
    rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                                 params={"color_by": "oa", "model": "never-evaluated"}))
    assert rgba[row, col].tolist() == list(oc.NO_SCORE)


def test_low_zoom_draws_every_patch_as_a_dot(tree):
    """Below a pixel, each patch is the 3 x 3 square around the pixel holding its centre: nothing more."""
    client = app_client(tree["catalog"])
    tile, _, _ = _pixel(*_centre(*FAR), zoom=9)  # a 102 m patch is half a pixel here
    rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    expected = np.zeros((256, 256), bool)
    for _, _, r, c, _, _ in tree["patches"]:
        t, row, col = _pixel(*_centre(r, c), zoom=9)
        assert t == tile
        expected[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2] = True
    np.testing.assert_array_equal(rgba[..., 3] > 0, expected)


def test_bad_requests_name_the_fix(tree):
    client = app_client(tree["catalog"])
    r = client.get("/overview/tiles/WebMercatorQuad/17/0/0.png", params={"color_by": "miou"})
    assert r.status_code == 400 and "model" in r.json()["detail"] and r.json()["fix"]
    r = client.get("/overview/tiles/WebMercatorQuad/17/0/0.png",
                   params={"color_by": "iou", "model": "m1", "protocol": "full", "cls": 25})
    assert r.status_code == 400 and "1..19" in r.json()["detail"]
    assert client.get("/overview/tiles/WebMercatorQuad/3/0/0.png", params={"color_by": "bogus"}).status_code == 422
    assert client.get("/overview/tiles/WebMercatorQuad/3/0/0.png", params={"path": "/etc/passwd"}).status_code == 400


def test_click_lookup_finds_the_patch_under_the_click(tree):
    fp = footprints(Catalog.load(tree["catalog"]))
    ids = fp.table["id"].to_numpy()
    for pid, _, r, c, _, _ in tree["patches"]:
        lon, lat = TO_LONLAT.transform(*_centre(r, c))
        assert ids[patch_at(fp, lon, lat)] == f"IMG_{pid}"
        # 40 m inside the patch's north-east corner is still that patch
        lon, lat = TO_LONLAT.transform(ULX + (c + 1) * 102.4 - 40, ULY - r * 102.4 - 40)
        assert web_overview.clicked_patch(fp, {"lat": lat, "lng": lon}, zoom=17) == {"patch": f"IMG_{pid}"}
    lon, lat = TO_LONLAT.transform(ULX - 30, ULY - 50)  # 30 m west of the block
    assert patch_at(fp, lon, lat) is None
    assert ids[patch_at(fp, lon, lat, tolerance_m=35)] == f"IMG_{tree['patches'][0][0]}"
    assert web_overview.clicked_patch(fp, {"lat": lat, "lng": lon}, zoom=18) is None
    # at zoom 9 a 3 px dot spans ~650 m: the same click now hits the patch drawn as a dot
    assert web_overview.clicked_patch(fp, {"lat": lat, "lng": lon}, zoom=9) == {"patch": f"IMG_{tree['patches'][0][0]}"}
    assert web_overview.clicked_patch(fp, None, 9) is None


def test_vectorised_scores_equal_metrics_scores_per_patch(tree):
    """The overview's per-patch mIoU/OA/IoU equal metrics.scores on each stored matrix (both protocols)."""
    fp = footprints(Catalog.load(tree["catalog"]))
    table = metrics.MetricsTable.read(tree["store"])
    for protocol in ("flair1", "full"):
        got = {m: oc.patch_values(fp, table, "m1", m, protocol, cls=1) for m in ("miou", "oa", "iou")}
        for i, patch in enumerate(fp.table["patch"]):
            row = int(np.flatnonzero(table.meta["patch"].to_numpy() == patch)[0])
            sc = metrics.scores(table.matrices[row], protocol)
            np.testing.assert_allclose([got["miou"][i], got["oa"][i], got["iou"][i]], [sc.miou, sc.oa, sc.iou[0]])


def test_overview_url_and_views(tree):
    fp = footprints(Catalog.load(tree["catalog"]))
    url = web_overview.overview_url("http://t", "iou", "m1", "full", cls=3)
    assert url.startswith("http://t/overview/tiles/WebMercatorQuad/{z}/{x}/{y}.png?")
    assert "color_by=iou" in url and "model=m1" in url and "cls=3" in url
    assert "model" not in web_overview.overview_url("http://t", "domain", "m1")
    views = web_overview.view_choices(fp)
    assert views[0] == web_overview.ALL and "D034_2021 / Z4_UU" in views
    w, s, e, n = web_overview.view_bounds(fp, "D034_2021 / Z4_UU")
    lon0, lat0 = TO_LONLAT.transform(ULX, ULY - 2 * 102.4)
    lon1, lat1 = TO_LONLAT.transform(ULX + 3 * 102.4, ULY)
    np.testing.assert_allclose([w, s, e, n], [lon0, lat0, lon1, lat1], atol=2e-5)


def test_overview_page_on_the_demo_catalog(tile_server, tmp_path, monkeypatch):
    """The page runs on the shipped catalog: one footprint per aerial patch, a legend, and scores after evaluation."""
    from streamlit.testing.v1 import AppTest

    from tests.helpers import DEMO_CATALOG, REPO, default_model_id

    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tmp_path / "metrics.parquet"))
    cat = Catalog.load(DEMO_CATALOG)
    from flair_viz.core import stack

    dalles = sum(len(stack.dalles(d, "rgb")) for d in cat if d.extra.get("stack"))  # the demo's BD ORTHO stack
    n = len(footprints(cat)) - dalles
    assert dalles >= 1 and n >= 25
    at = AppTest.from_file(str(REPO / "pages/5_Overview.py"), default_timeout=180).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    want = f"{n:,} patch footprints and {dalles} BD ORTHO dalle{'s' if dalles > 1 else ''},"
    assert any(want in c.value for c in at.caption), [c.value for c in at.caption]
    assert any("Outline of France: Natural Earth" in c.value for c in at.caption)
    from flair_viz.overview import outline

    monkeypatch.setattr(outline, "OUTLINE_FILE", tmp_path / "no-world-atlas.json")
    at.run()  # no outline file: the map still shows, with a note
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("No outline of France" in c.value for c in at.caption)
    monkeypatch.undo()
    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tmp_path / "metrics.parquet"))
    assert "D034_2021 / Z6_NU" in at.selectbox(key="overview_view").options
    at.radio(key="overview_color").set_value("miou").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="overview_model").value == default_model_id()
    assert any("DEMO" in w.value for w in at.warning)
    assert metrics.MetricsTable.read(tmp_path / "metrics.parquet").meta["model"].eq(default_model_id()).any()


def test_national_zoom_draws_each_patch_as_a_five_pixel_dot(tree):
    """At zoom 8 and coarser a patch is the 5 x 5 square around the pixel holding its centre (3 x 3 from zoom 9)."""
    from flair_viz.overview.render import NATIONAL_ZOOM

    client = app_client(tree["catalog"])
    tile, _, _ = _pixel(*_centre(*FAR), zoom=NATIONAL_ZOOM)
    rgba = decode_png(client.get(f"/overview/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"))
    expected = np.zeros((256, 256), bool)
    for _, _, r, c, _, _ in tree["patches"]:
        t, row, col = _pixel(*_centre(r, c), zoom=NATIONAL_ZOOM)
        assert t == tile
        expected[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3] = True
    np.testing.assert_array_equal(rgba[..., 3] > 0, expected)


def test_hover_lookup_names_patch_zone_and_the_score_it_is_coloured_by(tree, monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_METRICS", str(tree["store"]))
    client = app_client(tree["catalog"])
    for pid, domain, r, c, truth, pred in tree["patches"][1:3] + tree["patches"][-1:]:
        lon, lat = TO_LONLAT.transform(*_centre(r, c))
        resp = client.get("/overview/at", params={"lon": lon, "lat": lat, "zoom": 17, "color_by": "miou",
                                                  "model": "m1", "protocol": "full"})
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "*"
        got = resp.json()
        zone = "Z4_UU" if domain == "D034_2021" else "Z1_UA"
        assert got["hit"] and got["id"] == f"IMG_{pid}" and got["patch"] == pid and got["zone"] == zone
        assert got["score"] == pytest.approx(_miou_full(truth, pred))
        assert f"Patch {pid}" in got["text"] and f"{domain} / {zone}" in got["text"]
        assert f"mIoU {_miou_full(truth, pred):.3f}" in got["text"]
        # coloured by domain, the tooltip still gives the score of the page's model
        got = client.get("/overview/at", params={"lon": lon, "lat": lat, "zoom": 17, "color_by": "domain",
                                                 "score_model": "m1", "protocol": "full"}).json()
        assert got["text"] == f"Patch {pid} · {domain} / {zone} · domain {domain} · mIoU {_miou_full(truth, pred):.3f}"
        assert got["score"] == pytest.approx(_miou_full(truth, pred))
    lon, lat = TO_LONLAT.transform(ULX - 300, ULY + 300)  # 300 m off the block: nothing at zoom 17 ...
    assert client.get("/overview/at", params={"lon": lon, "lat": lat, "zoom": 17}).json() == {"hit": False}
    # ... but at zoom 6 a 5 px dot covers km: the nearest patch (the block's first) answers, coloured by domain
    got = client.get("/overview/at", params={"lon": lon, "lat": lat, "zoom": 6}).json()
    assert got["id"] == f"IMG_{tree['patches'][0][0]}" and got["score"] is None and "domain D034_2021" in got["text"]
    got = client.get("/overview/at", params={"lon": lon, "lat": lat, "zoom": 6, "color_by": "oa",
                                             "model": "never-evaluated"}).json()
    assert got["score"] is None and "n/a" in got["text"]


def _topology() -> dict:
    """Two quantised, delta-encoded arcs closing one square ring (the second used reversed), ids as world-atlas."""
    return {"type": "Topology", "transform": {"scale": [0.5, 0.25], "translate": [2.0, 44.0]},
            "arcs": [[[0, 0], [4, 0], [0, 8]],  # (2, 44) -> (4, 44) -> (4, 46)
                     [[0, 0], [0, 8], [4, 0]]],  # (2, 44) -> (2, 46) -> (4, 46): reversed closes the ring
            "objects": {"countries": {"type": "GeometryCollection", "geometries": [
                {"type": "MultiPolygon", "id": "250", "arcs": [[[0, ~1]]]},
                {"type": "Polygon", "id": "276", "arcs": [[0, ~1]]}]}}}


def test_topojson_decoding_gives_the_ring_of_the_arcs():
    from flair_viz.overview import outline

    shape = outline.country(_topology(), "250", box=None)
    ring = np.asarray(shape.geoms[0].exterior.coords)
    np.testing.assert_allclose(ring, [[2, 44], [4, 44], [4, 46], [2, 46], [2, 44]])
    assert outline.decode_geometry(_topology(), _topology()["objects"]["countries"]["geometries"][1]).area == 4.0
    assert outline.country(_topology(), "999") is None


def test_france_outline_from_the_vendored_world_atlas(tmp_path):
    """The file scripts/install.sh vendors: mainland France and Corsica, no overseas part; no file, no outline."""
    import shapely
    from shapely.geometry import shape

    from flair_viz.overview import outline

    assert outline.france_geojson(tmp_path / "missing.json") is None
    (tmp_path / "cut.json").write_text('{"type": "Topology", "arcs": [[0, 0], [1', encoding="utf-8")
    assert outline.france_geojson(tmp_path / "cut.json") is None
    (tmp_path / "other.json").write_text('{"type": "Topology", "objects": {}}', encoding="utf-8")
    assert outline.france_geojson(tmp_path / "other.json") is None
    if not outline.OUTLINE_FILE.is_file():
        pytest.fail(f"{outline.OUTLINE_FILE} is missing: run scripts/install.sh")
    france = shape(outline.france_geojson()["geometry"])
    for lon, lat in [(2.35, 48.86), (9.15, 42.31), (3.88, 43.61), (-4.49, 48.39)]:  # Paris, Corte, Montpellier, Brest
        assert france.contains(shapely.Point(lon, lat)), (lon, lat)
    for lon, lat in [(-0.13, 51.51), (6.14, 46.20), (-52.33, 4.94)]:  # London, Geneva, Cayenne
        assert not france.contains(shapely.Point(lon, lat)), (lon, lat)
    west, south, east, north = france.bounds
    assert -5.5 < west < -4.5 and 41.0 < south < 41.6 and 9.3 < east < 10 and 50.9 < north < 51.3


def test_overview_map_draws_the_outline_and_asks_the_hover_route():
    from flair_viz.overview import outline

    feature = outline.country(_topology(), "250", box=None)
    geojson = {"type": "Feature", "properties": {}, "geometry": feature.__geo_interface__}
    url = web_overview.overview_url("http://t", "miou", "m1", "full")
    assert web_overview.hover_url(url) == "http://t/overview/at?color_by=miou&model=m1&protocol=full"
    assert (web_overview.hover_url(web_overview.overview_url("http://t"), "m 2") ==
            "http://t/overview/at?color_by=domain&score_model=m+2")
    html = web_overview.overview_map((2, 44, 4, 46), url, "mIoU", geojson).get_root().render()
    assert '"coordinates": [[[[2.0, 44.0], [4.0, 44.0], [4.0, 46.0], [2.0, 46.0], [2.0, 44.0]]]]' in html
    assert "http://t/overview/at?color_by=miou" in html and "flair-overview-tip" in html
    html = web_overview.overview_map((2, 44, 4, 46), url, "mIoU", None).get_root().render()
    assert "[2.0, 44.0]" not in html
