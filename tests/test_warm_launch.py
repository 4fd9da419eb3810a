"""The launcher waits while a real ``flair-viz serve`` predicts the demo zone ahead, so the app is announced
when its first map is ready: /healthz says ``warming`` until the zone's prediction is on disk."""

from __future__ import annotations

import json
import urllib.request

from flair_viz.web import client
from tests.helpers import start_server, stop_server


def healthz(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        return json.loads(r.read())


def test_the_launcher_waits_until_the_demo_zone_is_predicted(_isolated_user_data):
    proc, url = start_server(env={"FLAIR_VIZ_WARM": "1"})
    try:
        said: list[str] = []
        waited = client.wait_while_warming(url, limit_s=300, say=said.append)
        assert healthz(url) == {"ok": True, "warming": False}
        codes = list((_isolated_user_data / "cache").rglob("ZONE_D034_2021_Z6_NU.*.codes.tif"))
        assert len(codes) == 1  # the zone's prediction was on disk when the wait ended
        assert waited > 0 and said and "demo zone" in said[0]
    finally:
        stop_server(proc)


def test_a_server_that_is_not_warming_is_not_waited_for(tile_server):
    said: list[str] = []
    assert client.wait_while_warming(tile_server, limit_s=30, say=said.append) < 5 and not said
