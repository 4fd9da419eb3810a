"""The Change page in real Chromium: swipe between vintages, change tiles, matrix and sankey, offline."""

from __future__ import annotations

import pytest

from flair_viz import change
from flair_viz.core.catalog import default_catalog
from tests.helpers import open_map_page

pytestmark = pytest.mark.e2e


def test_change_page_renders_swipe_change_layer_and_matrix(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    pair = change.list_pairs(default_catalog())[0]  # the real Gers pair: real pairs come before SIMULATED ones
    vintage_tiles = f"/datasets/{pair.before.id}"
    map_frame = open_map_page(page, f"{live_app['app']}/Change", "Change between vintages")
    map_frame.locator(".leaflet-sbs-divider").first.wait_for(timeout=30_000)  # the swipe bar
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)  # heatmap and sankey
    for _ in range(240):
        if traffic.good_tiles("/change/") and traffic.good_tiles(vintage_tiles):
            break
        page.wait_for_timeout(250)
    page.screenshot(path=str(artifacts_dir / "change.png"), full_page=True)
    page.locator(".js-plotly-plot").nth(0).screenshot(path=str(artifacts_dir / "change_matrix.png"))
    page.locator(".js-plotly-plot").nth(1).screenshot(path=str(artifacts_dir / "change_sankey.png"))

    assert traffic.good_tiles("/change/"), f"no change tiles loaded; responses: {traffic.tiles[:10]}"
    assert traffic.good_tiles(vintage_tiles), "no vintage tiles loaded"
    assert page.locator(".js-plotly-plot .heatmaplayer").count() >= 1
    if pair.simulated:
        assert page.get_by_text("SIMULATED data.").count() >= 1
    else:
        assert page.get_by_text("SIMULATED data.").count() == 0
        assert page.get_by_text("Check against real change masks").count() >= 1
    z = change.compute_change(pair.before.id, pair.after.id, catalog=default_catalog()).zan()
    assert page.get_by_text(f"{z['artificialisation_ha']:.4f} ha").count() >= 1
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"


def _title(page) -> str:
    return page.locator(".js-plotly-plot .gtitle").first.text_content() or ""


def test_time_slider_moves_map_and_chart_over_the_series(live_app, page_and_traffic, artifacts_dir):
    """Move the time slider over the Gers series (2016, 2019, SIMULATED 2022, 2025): each stop loads the
    change tiles of its own interval on the map and highlights that interval in the trend chart."""
    page, traffic = page_and_traffic
    ids = [d.id for d in default_catalog().series("gers")]
    assert len(ids) >= 4
    open_map_page(page, f"{live_app['app']}/Change", "Change between vintages")
    page.get_by_text("Series (time slider)").click()
    page.get_by_text("Time: the interval ending at").wait_for(timeout=60_000)
    slider = page.get_by_role("slider", name="Time: the interval ending at")
    titles = []
    for stop, (b, a) in enumerate(zip(ids, ids[1:])):
        if stop:
            slider.focus()
            page.keyboard.press("ArrowRight")
        fragment = f"/change/{b}/{a}/"
        for _ in range(240):
            if traffic.good_tiles(fragment) and a[-4:] in _title(page):
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(1500)  # let Leaflet fade the new tiles in before the picture
        page.screenshot(path=str(artifacts_dir / f"change_series_{stop + 1}.png"), full_page=True)
        assert traffic.good_tiles(fragment), f"no change tiles of {b} → {a}; tiles: {traffic.tiles[-5:]}"
        title = _title(page)
        assert "selected:" in title and a[-4:] in title, title
        titles.append(title)
    assert len(set(titles)) == 3  # the chart changed at every stop
    assert page.get_by_text("SIMULATED vintages in this series").count() >= 1
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
