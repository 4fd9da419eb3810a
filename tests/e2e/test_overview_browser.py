"""The Overview page in real Chromium: the footprint layer loads as non-empty tiles, and a click opens Explore."""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import numpy as np
import pytest

from tests.helpers import DEMO, open_map_page, wait_until

pytestmark = pytest.mark.e2e

FOLIUM_FRAME = "iframe[title='streamlit_folium.st_folium']"


def _middle_patch() -> dict:
    """The zone's centre patch, with its centre lon/lat from the copied index.csv (not from the app)."""
    rows = list(csv.DictReader(open(DEMO / "flair1" / "index.csv", encoding="utf-8")))
    xs, ys = sorted({float(r["ulx"]) for r in rows}), sorted({float(r["uly"]) for r in rows})
    return next(r for r in rows if float(r["ulx"]) == xs[2] and float(r["uly"]) == ys[2])


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
    xy = frame.evaluate("""([lat, lon]) => {
        for (const k of Object.keys(window)) {
            if (k.startsWith("map_") && window[k] instanceof L.Map) {
                const p = window[k].latLngToContainerPoint([lat, lon]);
                const r = window[k].getContainer().getBoundingClientRect();
                return [p.x + r.left, p.y + r.top];
            }
        }
        return null;
    }""", [float(target["center_lat"]), float(target["center_lon"])])
    assert xy is not None, "no Leaflet map in the map frame"
    box = page.locator(FOLIUM_FRAME).first.bounding_box()
    page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
    image_id = f"IMG_{target['patch_id']}"
    ok = wait_until(page, lambda: any(s == 200 and n > 0 and f"/datasets/{image_id}/" in u
                                      for u, s, n in traffic.tiles), 120)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts_dir / "overview-click-explore.png"), full_page=True)
    assert ok, f"the click did not open {image_id} in Explore"
    assert "Explore" in page.url
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
