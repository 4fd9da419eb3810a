"""The Overview page in real Chromium: the outline of France under non-empty footprint tiles, a hover tooltip
naming the patch, its zone and its score, and a click that opens Explore."""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import numpy as np
import pytest

from tests.helpers import DEMO, default_model_id, open_map_page, wait_until

pytestmark = pytest.mark.e2e

FOLIUM_FRAME = "iframe[title='streamlit_folium.st_folium']"


def _middle_patch() -> dict:
    """The zone's centre patch, with its centre lon/lat from the copied index.csv (not from the app)."""
    rows = list(csv.DictReader(open(DEMO / "flair1" / "index.csv", encoding="utf-8")))
    xs, ys = sorted({float(r["ulx"]) for r in rows}), sorted({float(r["uly"]) for r in rows})
    return next(r for r in rows if float(r["ulx"]) == xs[2] and float(r["uly"]) == ys[2])


def _expected_miou(patch: str) -> float:
    """The patch's mIoU (FLAIR-1 protocol) with the default model, from metrics.scores on its own matrix."""
    from flair_viz import metrics
    from flair_viz.core.catalog import default_catalog

    table = metrics.evaluate(metrics.catalog_pairs(default_catalog())).table
    meta = table.meta
    row = int(np.flatnonzero((meta["patch"] == patch).to_numpy() & (meta["model"] == default_model_id()).to_numpy())[0])
    return metrics.scores(table.matrices[row], "flair1").miou


OUTLINE_JS = """() => {
    for (const k of Object.keys(window)) {
        if (k.startsWith("geo_json_") && window[k] instanceof L.GeoJSON) {
            const paths = [];
            window[k].eachLayer(l => { if (l._path) { paths.push(l._path.getAttribute("d") || ""); } });
            return paths.reduce((n, d) => n + d.length, 0);
        }
    }
    return 0;
}"""


def _map_point(frame, lat: float, lon: float):
    return frame.evaluate("""([lat, lon]) => {
        for (const k of Object.keys(window)) {
            if (k.startsWith("map_") && window[k] instanceof L.Map) {
                const p = window[k].latLngToContainerPoint([lat, lon]);
                const r = window[k].getContainer().getBoundingClientRect();
                return [p.x + r.left, p.y + r.top];
            }
        }
        return null;
    }""", [lat, lon])


def test_overview_draws_footprints_and_a_click_opens_the_patch_in_explore(live_app, page_and_traffic, artifacts_dir):
    from PIL import Image

    page, traffic = page_and_traffic
    tiles: list[bytes] = []

    def keep(resp) -> None:
        if "/overview/tiles/" in resp.url and resp.status == 200:
            try:
                tiles.append(resp.body())
            except Exception:  # a tile whose body is gone (page navigated away) is not needed
                pass

    page.context.on("response", keep)
    view = quote("D034_2021 / Z6_NU")
    open_map_page(page, f"{live_app['app']}/Overview?view={view}", "Overview")
    assert wait_until(page, lambda: any(np.array(Image.open(io.BytesIO(b)).convert("RGBA"))[..., 3].any()
                                        for b in list(tiles)), 120), "no non-empty overview tile loaded"
    page.get_by_text("Domain").first.wait_for(timeout=30_000)  # the legend
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts_dir / "overview-zone.png"), full_page=True)

    target = _middle_patch()
    frame = next(f for f in page.frames if f.url and "streamlit_folium" in f.url) if any(
        "streamlit_folium" in (f.url or "") for f in page.frames) else page.frames[-1]
    # The whole country at zoom 5: the outline's path is long (at the zone's zoom it is clipped to the view).
    frame.evaluate("""() => { for (const k of Object.keys(window)) {
        if (k.startsWith("map_") && window[k] instanceof L.Map) { window[k].setView([46.6, 2.5], 5, {animate: false}); }
    } }""")
    page.wait_for_timeout(1500)
    assert frame.evaluate(OUTLINE_JS) > 1000, "the outline of France is not drawn"
    page.screenshot(path=str(artifacts_dir / "overview-national.png"), full_page=True)

    # Colour by mIoU, then hover the patch: the tooltip names it, its zone and its score.
    page.get_by_text("mIoU per patch").first.click()
    assert wait_until(page, lambda: any("color_by=miou" in u for u in traffic.urls), 180), "no mIoU tiles asked"
    page.wait_for_timeout(1500)
    frame = next(f for f in page.frames if f.url and "streamlit_folium" in f.url) if any(
        "streamlit_folium" in (f.url or "") for f in page.frames) else page.frames[-1]
    xy = _map_point(frame, float(target["center_lat"]), float(target["center_lon"]))
    assert xy is not None, "no Leaflet map in the map frame"
    box = page.locator(FOLIUM_FRAME).first.bounding_box()
    page.mouse.move(box["x"] + xy[0] - 3, box["y"] + xy[1] - 3)
    page.mouse.move(box["x"] + xy[0], box["y"] + xy[1])
    tip = page.frame_locator(FOLIUM_FRAME).first.locator(".flair-overview-tip")
    tip.wait_for(timeout=30_000)
    text = tip.inner_text()
    page.screenshot(path=str(artifacts_dir / "overview-hover.png"), full_page=True)
    assert f"Patch {target['patch_id']}" in text and "D034_2021 / Z6_NU" in text, text
    assert f"mIoU {_expected_miou(target['patch_id']):.3f}" in text, text

    page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
    image_id = f"IMG_{target['patch_id']}"
    ok = wait_until(page, lambda: any(s == 200 and n > 0 and f"/datasets/{image_id}/" in u
                                      for u, s, n in traffic.tiles), 120)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts_dir / "overview-click-explore.png"), full_page=True)
    assert ok, f"the click did not open {image_id} in Explore"
    assert "Explore" in page.url
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
