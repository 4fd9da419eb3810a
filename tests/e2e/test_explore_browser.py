"""The Explore page in real Chromium: Leaflet map, tiles from the real tile server, nothing off-machine."""

from __future__ import annotations

import re

import pytest

from tests.helpers import default_model_id, open_map_page

pytestmark = pytest.mark.e2e


def wait_for_tiles(page, traffic, n: int, fragment: str = "", timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 4)):
        if len(traffic.good_tiles(fragment)) >= n:
            return
        page.wait_for_timeout(250)


def test_explore_shows_aerial_and_truth_tiles_offline(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    open_map_page(page, f"{live_app['app']}/Explore", "Explore")
    wait_for_tiles(page, traffic, 8)
    wait_for_tiles(page, traffic, 4, "/predict/", timeout_s=120)  # live predictions are computed on the CPU
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts_dir / "explore.png"), full_page=True)

    good = traffic.good_tiles()
    assert len(good) >= 8, f"only {len(good)} tiles loaded; responses: {traffic.tiles[:10]}"
    assert traffic.good_tiles("/datasets/IMG_"), "no aerial image tiles loaded"
    assert traffic.good_tiles("/datasets/MSK_"), "no ground-truth tiles loaded"
    model = default_model_id()  # Explore offers the default model first
    assert len(traffic.good_tiles(f"/predict/{model}/")) >= 4, "live prediction tiles did not load"
    # each live tile URL carries the range of tiles the map shows (one region for the whole view), holding it
    for url, _, _ in traffic.good_tiles(f"/predict/{model}/"):
        z, x, y = (int(v) for v in re.search(r"/(\d+)/(\d+)/(\d+)\.png", url).groups())
        hint = re.search(r"[?&]viewport=(\d+),(\d+),(\d+),(\d+)", url)
        assert hint, f"no viewport range in {url}"
        x0, y0, x1, y1 = (int(v) for v in hint.groups())
        assert x0 <= x <= x1 and y0 <= y <= y1 and (x1 - x0 + 1) * (y1 - y0 + 1) >= 2, url
    assert page.get_by_text("is a DEMO model").count() >= 1  # the demo model is labelled as such
    # the sidebar names the device and the engine the server runs the model with (the e2e server runs torch)
    page.get_by_text("engine torch").first.wait_for(timeout=60_000)
    assert all(size > 0 for _, status, size in good)
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
