"""Explore's map keeps its place, in real Chromium: the view survives a sidebar change, side-by-side panes
move together, a zone opens without a cancelled tile request, and the loading badge clears even when Leaflet
drops tiles it asked for."""

from __future__ import annotations

import re

import pytest

from tests.helpers import open_map_page, wait_until

pytestmark = pytest.mark.e2e

ZONE = "ZONE_D034_2021_Z6_NU"  # the demo zone mosaic: 25 patches, live predictions of the demo model
PATCH = "050549"
PANE = 420  # the side-by-side maps' height (pages/1_Explore.py)
TILE_Z = re.compile(r"/WebMercatorQuad/(\d+)/\d+/\d+\.png")


def map_frames(page, tile_fragment: str = "", height: int | None = None) -> list:
    """The st_folium frames whose Leaflet map exists (and shows a tile whose URL holds ``tile_fragment``, and is
    ``height`` pixels high: while the page reruns, Streamlit keeps the last run's map until the run ends)."""
    found = []
    for frame in page.frames:
        if "st_folium" not in frame.url:
            continue
        try:
            if frame.evaluate("([f, h]) => !!window.map && !!window.flairVizView && (!h || map.getSize().y === h) && "
                              "(!f || !!document.querySelector('img.leaflet-tile[src*=\"' + f + '\"]'))",
                              [tile_fragment, height]):
                found.append(frame)
        except Exception:  # a frame Streamlit just removed
            continue
    return found


def view_of(frame) -> dict:
    return frame.evaluate("window.flairVizView()")


def badge(frame) -> tuple[str, int]:
    """The loading badge's display and the count it shows."""
    display, text = frame.evaluate("(() => { const d = document.querySelector('.flair-tile-progress');"
                                   " return [d.style.display, d.textContent]; })()")
    return display, int(re.search(r"\d+", text).group()) if re.search(r"\d+", text) else 0


def drag_map(page, frame, dx: int, dy: int) -> None:
    """Drag the map of ``frame`` with the mouse, as a person pans it."""
    box = frame.frame_element().bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x + dx * i / 10, y + dy * i / 10)
    page.mouse.up()


def same_view(a: dict, b: dict) -> bool:
    return a["zoom"] == b["zoom"] and abs(a["center"][0] - b["center"][0]) < 1e-6 \
        and abs(a["center"][1] - b["center"][1]) < 1e-6


def test_the_view_survives_a_sidebar_change(live_app, page_and_traffic):
    page, traffic = page_and_traffic
    frame = open_map_page(page, f"{live_app['app']}/Explore?patch={PATCH}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page)) == 1, 60)
    start = view_of(map_frames(page)[0])
    frame.locator(".leaflet-control-zoom-in").click()
    page.wait_for_timeout(600)  # the zoom animation
    frame.locator(".leaflet-control-zoom-in").click()
    page.wait_for_timeout(600)
    drag_map(page, map_frames(page)[0], 120, 60)
    page.wait_for_timeout(500)
    moved = view_of(map_frames(page)[0])
    assert moved["zoom"] == start["zoom"] + 2 and not same_view(moved, start)

    page.get_by_text("IRC (NIR,R,G)").click()  # another band preset: Streamlit rebuilds the map
    assert wait_until(page, lambda: len(map_frames(page, "preset=irc")) == 1, 90), "the IRC map never came"
    after = view_of(map_frames(page, "preset=irc")[0])
    assert same_view(after, moved), (after, moved)
    # what the browser asked for says the same: every IRC tile is at the zoom the analyst chose, none at the start's
    irc = [int(TILE_Z.search(u).group(1)) for u in traffic.urls if "preset=irc" in u and TILE_Z.search(u)]
    assert irc and set(irc) == {min(moved["zoom"], 20)}, irc

    page.get_by_text("Side by side", exact=True).click()  # another view mode: the panes open where the analyst was
    assert wait_until(page, lambda: len(map_frames(page, "preset=irc", PANE)) >= 3, 90)
    for pane in map_frames(page, "preset=irc", PANE):
        assert same_view(view_of(pane), moved)


def test_side_by_side_panes_move_together(live_app, page_and_traffic, artifacts_dir):
    page, _ = page_and_traffic
    open_map_page(page, f"{live_app['app']}/Explore?patch={PATCH}", "Explore")
    page.get_by_text("Side by side", exact=True).click()
    assert wait_until(page, lambda: len(map_frames(page, height=PANE)) >= 3, 90)  # aerial, truth, prediction
    panes = map_frames(page, height=PANE)
    before = [view_of(p) for p in panes]
    assert all(same_view(v, before[0]) for v in before)

    panes[0].locator(".leaflet-control-zoom-in").click()  # zoom one pane with its button
    page.wait_for_timeout(800)
    drag_map(page, panes[0], -150, 80)  # and pan it with the mouse
    page.wait_for_timeout(800)
    views = [view_of(p) for p in panes]
    assert views[0]["zoom"] == before[0]["zoom"] + 1 and not same_view(views[0], before[0])
    assert all(same_view(v, views[0]) for v in views[1:]), views

    drag_map(page, panes[2], 100, -40)  # another pane leads: the others follow
    page.wait_for_timeout(800)
    views2 = [view_of(p) for p in panes]
    assert not same_view(views2[2], views[0]) and all(same_view(v, views2[2]) for v in views2), views2
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts_dir / "explore-side-by-side.png"), full_page=True)


def test_a_zone_opens_without_cancelled_requests_and_its_badge_clears(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    failed = []
    page.context.on("requestfailed", lambda r: failed.append((r.url, r.failure)) if "/tiles/" in r.url else None)
    frame = open_map_page(page, f"{live_app['app']}/Explore?patch={ZONE}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page)) == 1, 60)
    shown = frame.locator(".flair-tile-progress")
    assert wait_until(page, lambda: len(traffic.good_tiles("/predict/")) >= 4, 240), "no live prediction tiles"
    assert wait_until(page, lambda: badge(map_frames(page)[0])[0] == "none", 240), badge(map_frames(page)[0])
    assert failed == [], f"{len(failed)} tile requests cancelled or failed: {failed[:5]}"
    # every tile the map asked for came back, and only at the zoom it opened at
    asked = [u for u in traffic.urls if TILE_Z.search(u)]
    answered = {u for u, status, _ in traffic.tiles if status == 200}
    assert asked and set(asked) <= answered
    assert {int(TILE_Z.search(u).group(1)) for u in asked} == {view_of(map_frames(page)[0])["zoom"]}
    assert not shown.is_visible()
    page.screenshot(path=str(artifacts_dir / "explore-zone.png"), full_page=True)


def test_the_badge_counts_tiles_leaflet_drops(live_app, page_and_traffic):
    """Zooming while tiles load makes Leaflet drop them (``tileabort``, ``tileunload``): the badge still clears."""
    page, _ = page_and_traffic
    dropped = []
    page.context.on("requestfailed", lambda r: dropped.append(r.url) if "/tiles/" in r.url else None)
    frame = open_map_page(page, f"{live_app['app']}/Explore?patch={ZONE}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page)) == 1, 60)
    for _ in range(3):  # zoom in while the first tiles load: Leaflet drops the tiles of each zoom it leaves
        frame.locator(".leaflet-control-zoom-in").click()
        page.wait_for_timeout(100)
    assert wait_until(page, lambda: badge(map_frames(page)[0])[0] == "none", 240), badge(map_frames(page)[0])
    assert badge(map_frames(page)[0])[1] == 0
    assert dropped, "no tile was dropped, so this test checked nothing"


def test_elevation_and_uncertainty_show_their_colour_scales(live_app, page_and_traffic):
    page, _ = page_and_traffic
    open_map_page(page, f"{live_app['app']}/Explore?patch={PATCH}", "Explore")
    page.get_by_text("Elevation", exact=True).click()
    page.get_by_text("Uncertainty (margin)").click()
    assert wait_until(page, lambda: any(f.evaluate("document.querySelectorAll('.flair-colour-scale').length") == 2
                                        for f in map_frames(page, "layer=margin")), 90)
    frame = next(f for f in map_frames(page, "layer=margin")
                 if f.evaluate("document.querySelectorAll('.flair-colour-scale').length") == 2)
    on_map = frame.evaluate("Array.from(document.querySelectorAll('.flair-colour-scale')).map(d => d.innerText)")
    assert any("Height above ground" in t and "≥ 12 m" in t for t in on_map), on_map
    assert any("Uncertainty: margin" in t and "unsure" in t for t in on_map), on_map
    legend = page.locator(".flair-colour-scale")  # and the page's legend says what the values mean
    assert wait_until(page, lambda: legend.count() == 2, 30)
    assert "the two likeliest classes tie" in " ".join(legend.all_inner_texts())


def test_each_patch_keeps_its_own_view(live_app, page_and_traffic):
    """Another patch opens at its own bounds; coming back (even by reloading the page) finds the view left there."""
    from flair_viz.core.catalog import Catalog
    from flair_viz.web.maps import dataset_bounds_wgs84
    from tests.helpers import DEMO_CATALOG

    page, _ = page_and_traffic
    frame = open_map_page(page, f"{live_app['app']}/Explore?patch={PATCH}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page)) == 1, 60)
    frame.locator(".leaflet-control-zoom-in").click()
    page.wait_for_timeout(600)
    drag_map(page, map_frames(page)[0], -90, 40)
    page.wait_for_timeout(500)
    left_at = view_of(map_frames(page)[0])

    other = "084558"
    open_map_page(page, f"{live_app['app']}/Explore?patch={other}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page, other)) == 1, 60)
    west, south, east, north = dataset_bounds_wgs84(Catalog.load(DEMO_CATALOG).get(f"IMG_{other}"))
    there = view_of(map_frames(page, other)[0])
    assert abs(there["center"][0] - (south + north) / 2) < 1e-4 and abs(there["center"][1] - (west + east) / 2) < 1e-4

    open_map_page(page, f"{live_app['app']}/Explore?patch={PATCH}", "Explore")
    assert wait_until(page, lambda: len(map_frames(page, PATCH)) == 1, 60)
    assert same_view(view_of(map_frames(page, PATCH)[0]), left_at)
