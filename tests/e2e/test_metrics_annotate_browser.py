"""Metrics click-through and Annotate select/export, in real Chromium against real servers."""

from __future__ import annotations

import numpy as np
import pytest

from flair_viz import metrics
from flair_viz.core.catalog import default_catalog
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_metrics_heatmap_click_leads_to_the_map(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    page.goto(f"{live_app['app']}/Metrics", wait_until="domcontentloaded")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "metrics.png"), full_page=True)

    # The worst off-diagonal confusion of the demo predictions (FLAIR-1 protocol, 13x13), computed here.
    run = metrics.evaluate(metrics.catalog_pairs(default_catalog()))
    cm = metrics.view(run.table.matrices.sum(axis=0), "flair1").astype(float)
    np.fill_diagonal(cm, -1)
    r, c = np.unravel_index(int(cm.argmax()), cm.shape)
    box = chart.locator(".nsewdrag").first.bounding_box()
    n = cm.shape[0]
    page.mouse.click(box["x"] + (c + 0.5) * box["width"] / n, box["y"] + (r + 0.5) * box["height"] / n)
    open_button = page.get_by_role("button", name="Open on the map", exact=True)
    open_button.wait_for(timeout=60_000)
    before = len(traffic.tiles)
    open_button.click()
    page.get_by_text("Explore", exact=True).first.wait_for(timeout=60_000)
    for _ in range(400):
        if any(s == 200 and n_ > 0 and "/confusion/" in u for u, s, n_ in traffic.tiles[before:]):
            break
        page.wait_for_timeout(250)
    page.screenshot(path=str(artifacts_dir / "metrics-clickthrough.png"), full_page=True)
    hits = [u for u, s, n_ in traffic.tiles[before:] if s == 200 and n_ > 0 and "/confusion/" in u]
    assert hits, f"no confusion tiles after the click-through; got {traffic.tiles[before:before + 5]}"
    assert f"truth_class={r + 1}" in hits[0] and f"pred_class={c + 1}" in hits[0]
    truth_id = hits[0].split("/datasets/")[1].split("/")[0]  # the confusion route is /datasets/{truth}/confusion/...

    # What the page promises ("Confusion ... | Ground truth") is what the map holds: the aerial image, the
    # highlight and the scored ground truth on the swipe's two sides, and no layer drawn over both halves.
    page.get_by_text("Ground truth", exact=True).first.wait_for(timeout=30_000)
    frame = next(f for f in page.frames if "streamlit_folium" in (f.url or ""))
    on_map = frame.evaluate("""() => {
        for (const k of Object.keys(window)) {
            if (k.startsWith("map_") && window[k] instanceof L.Map) {
                const urls = [];
                window[k].eachLayer(l => { if (l instanceof L.TileLayer) { urls.push(l._url); } });
                return urls;
            }
        }
        return null;
    }""")
    assert on_map is not None and len(on_map) == 3, on_map
    assert sum("/confusion/" in u for u in on_map) == 1 and not any("/predict/" in u for u in on_map), on_map
    assert sum(f"/datasets/{truth_id}/tiles/" in u for u in on_map) == 1, on_map
    assert wait_until(page, lambda: any(s == 200 and n_ > 0 and f"/datasets/{truth_id}/tiles/" in u
                                        for u, s, n_ in traffic.tiles[before:]), 60), "no ground-truth tile drawn"
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts_dir / "metrics-clickthrough.png"), full_page=True)
    assert traffic.foreign() == []


def test_annotate_select_candidate_and_export(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    page.goto(f"{live_app['app']}/Annotate", wait_until="domcontentloaded")
    page.get_by_text("Selections (").first.wait_for(timeout=180_000)
    frame = page.frame_locator("iframe[title='streamlit_folium.st_folium']").first
    polygon = frame.locator("path.leaflet-interactive").first
    polygon.wait_for(timeout=120_000)
    polygon.click(force=True)
    add = page.get_by_role("button", name="Add selected candidates")
    add.wait_for(timeout=60_000)
    for _ in range(120):
        if add.is_enabled():
            break
        page.wait_for_timeout(250)
    add.click()
    page.get_by_text("Selections (1)").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "annotate.png"), full_page=True)
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download GPKG").click()
    path = artifacts_dir / "selections-export.gpkg"
    dl.value.save_as(path)

    import geopandas as gpd

    gdf = gpd.read_file(path)
    assert len(gdf) == 1 and gdf.crs.to_epsg() == 2154
    minx, miny, maxx, maxy = gdf.total_bounds
    assert abs((maxx - minx) - 102.4) < 1e-6 and abs((maxy - miny) - 102.4) < 1e-6  # one FLAIR grid cell
    assert traffic.foreign() == []
