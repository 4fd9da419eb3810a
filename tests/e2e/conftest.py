"""Real servers and a real browser: the tile server (uvicorn) and Streamlit run as subprocesses,
and Debian's Chromium is driven by playwright with no downloaded browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, wait_http

CHROMIUM = os.environ.get("FLAIR_VIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    """Start the app (tile server + Streamlit) on free loopback ports; yield the URLs."""
    data = tmp_path_factory.mktemp("e2e-data")
    tile_port, app_port = free_port(), free_port()
    env = dict(os.environ, FLAIR_VIZ_DATA=str(data), FLAIR_VIZ_CACHE=str(data / "cache"),
               FLAIR_VIZ_TILE_PORT=str(tile_port), FLAIR_VIZ_TILES_URL=f"http://127.0.0.1:{tile_port}")
    logs = open(data / "servers.log", "wb")
    # Exactly what scripts/run.sh starts: the launcher runs the tile server, then Streamlit.
    procs = [subprocess.Popen([sys.executable, "-m", "ui.launch", "--server.port", str(app_port),
                               "--server.address", "127.0.0.1", "--server.headless", "true",
                               "--server.enableStaticServing", "true", "--browser.gatherUsageStats", "false"],
                              cwd=REPO, env=env, stdout=logs, stderr=logs)]
    try:
        wait_http(f"http://127.0.0.1:{tile_port}/healthz", proc=procs[0])
        wait_http(f"http://127.0.0.1:{app_port}/_stcore/health", proc=procs[0])
        yield {"app": f"http://127.0.0.1:{app_port}", "tiles": f"http://127.0.0.1:{tile_port}", "log": data / "servers.log"}
    finally:
        import psutil

        children = [c for p in procs for c in psutil.Process(p.pid).children(recursive=True)]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        _, alive = psutil.wait_procs(children, timeout=10)  # the launcher stops its tile server itself
        for c in alive:
            c.kill()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Traffic:
    """Every request the page makes, from every frame, and the tile responses."""

    def __init__(self, context) -> None:
        self.urls: list[str] = []
        self.tiles: list[tuple[str, int, int]] = []  # (url, status, bytes)
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("response", self._on_response)

    def _on_response(self, resp) -> None:
        if "/tiles/WebMercatorQuad/" in resp.url:
            try:
                size = len(resp.body())
            except Exception:
                size = 0
            self.tiles.append((resp.url, resp.status, size))

    def foreign(self) -> list[str]:
        from urllib.parse import urlparse

        return [u for u in self.urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
                and urlparse(u).hostname not in ("127.0.0.1", "localhost")]

    def good_tiles(self, fragment: str = "") -> list[tuple[str, int, int]]:
        return [t for t in self.tiles if t[1] == 200 and t[2] > 0 and fragment in t[0]]


@pytest.fixture()
def page_and_traffic(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    traffic = Traffic(context)
    page = context.new_page()
    yield page, traffic
    context.close()

