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


def _sidebar_select_options(page, label: str, picture=None) -> list[str]:
    """The options of a sidebar selectbox, as Chromium lists them when it is opened (pictured open on request)."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option").first.wait_for(timeout=30_000)
    options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
    if picture:
        page.screenshot(path=str(picture))
    page.keyboard.press("Escape")
    return options


def test_the_pair_list_offers_no_prediction_to_truth_pair(live_app, page_and_traffic, artifacts_dir):
    """The catalog holds predictions and later (simulated) truths of the same patches: none of those mixed
    pairs is offered, only two truths or two predictions of one model."""
    page, _ = page_and_traffic
    cat = default_catalog()
    mixed = [(p, t) for p in cat.by_role("prediction") for t in cat.by_role("truth")
             if p.patch and p.patch == t.patch and p.vintage and t.vintage and p.vintage < t.vintage]
    assert mixed  # the demo has such candidates: the test can fail
    open_map_page(page, f"{live_app['app']}/Change", "Change between vintages")
    options = _sidebar_select_options(page, "Vintages", artifacts_dir / "change_pair_list.png")
    offered = [o for o in options if o != "Choose two rasters…"]
    assert offered, options
    for o in offered:  # every label ends with what it compares: one kind only
        assert " · ground truth · " in o or " · predictions of " in o, o
        assert "→ ground truth" not in o and "prediction of" not in o, o
    assert len(offered) == len(change.list_pairs(cat))


def test_change_from_predictions_is_a_map_of_both_dates_with_sure_and_uncertain_layers(live_app, page_and_traffic,
                                                                                       artifacts_dir):
    """Run the change from the demo model's predictions of the demo image pair (predicted in a child
    process), then check the map: both dates' aerial tiles under the swipe, and the two change layers."""
    page, traffic = page_and_traffic
    page.set_viewport_size({"width": 1600, "height": 1900})  # the figures and the whole map in one picture
    a, b = "IMG_000473", "IMG_000473_SIM2024"
    map_frame = open_map_page(page, f"{live_app['app']}/Change", "Change between vintages")
    page.get_by_text("From predictions (model)").click()
    page.get_by_role("button", name="Predict both images and compare").click()
    page.get_by_text("Uncertain change", exact=True).first.wait_for(timeout=300_000)
    map_frame = page.frame_locator("iframe[title='streamlit_folium.st_folium']").first
    map_frame.locator("img.leaflet-image-layer").nth(1).wait_for(timeout=60_000)
    for _ in range(240):
        if traffic.good_tiles(f"/datasets/{a}/") and traffic.good_tiles(f"/datasets/{b}/"):
            break
        page.wait_for_timeout(250)
    page.wait_for_timeout(4000)  # let the last tiles arrive and Leaflet fade them in before the picture
    page.screenshot(path=str(artifacts_dir / "change_predictions.png"), full_page=True)

    assert traffic.good_tiles(f"/datasets/{a}/tiles/"), "no tiles of the earlier aerial image"
    assert traffic.good_tiles(f"/datasets/{b}/tiles/"), "no tiles of the later aerial image"
    assert map_frame.locator(".leaflet-sbs-divider").count() == 1  # the before/after swipe
    layers = map_frame.locator(".leaflet-control-layers-overlays").inner_text()
    for name in ("Before: 2021-07-09", "After: 2024-07-09", "Sure change (red)", "Uncertain change (amber)"):
        assert name in layers, layers
    assert map_frame.locator("img.leaflet-image-layer").count() == 2
    # a layer toggles off: its overlay leaves the map
    map_frame.get_by_text("Uncertain change (amber)").click()
    map_frame.locator("img.leaflet-image-layer").nth(1).wait_for(state="detached", timeout=10_000)
    assert map_frame.locator("img.leaflet-image-layer").count() == 1
    # every number is explained: no bracketed figure, and the note says what a hectare and "uncertain" are
    assert page.get_by_text("How to read these numbers.").count() == 1
    assert page.get_by_text("Artificialisation (sure)").count() == 0
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
