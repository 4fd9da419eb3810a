"""The stakeholder story walked in real Chromium, offline: home → four 'Show me' steps, a screenshot each."""

from __future__ import annotations

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_story_walks_four_steps(live_app, page_and_traffic, artifacts_dir):
    page, traffic = page_and_traffic
    home = live_app["app"]
    page.goto(home, wait_until="domcontentloaded")
    page.get_by_text("The story in four steps").wait_for(timeout=90_000)
    page.get_by_role("button", name="Show me").first.wait_for(timeout=90_000)
    assert page.get_by_text("mIoU").count() >= 1 and page.get_by_text("ha artificialised").count() >= 1
    page.screenshot(path=str(artifacts_dir / "story-0-home.png"), full_page=True)

    expectations = [
        ("1-why", "/datasets/ZONE_D034_2021_Z6_NU_MSK/", None),  # the story opens on the real demo zone
        ("2-aerial", "preset=irc", None),
        ("3-model", "/predict/", "is a DEMO model"),
        ("4-change", "/change/", "ha"),
    ]
    for i, (name, tile_fragment, text) in enumerate(expectations):
        if i:
            page.goto(home, wait_until="domcontentloaded")
            page.get_by_role("button", name="Show me").first.wait_for(timeout=90_000)
        before = len(traffic.tiles)
        page.get_by_role("button", name="Show me").nth(i).click()
        ok = wait_until(page, lambda: any(s == 200 and n > 0 and tile_fragment in u
                                          for u, s, n in traffic.tiles[before:]), 150)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts_dir / f"story-{name}.png"), full_page=True)
        assert ok, f"step {name}: no tile matching {tile_fragment!r} loaded"
        if text:
            assert page.get_by_text(text).count() >= 1, f"step {name}: {text!r} not shown"
    assert traffic.foreign() == [], f"requests left the machine: {traffic.foreign()[:5]}"
