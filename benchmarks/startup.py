"""Start-up: how fast the demo shows its first map.

Starts the app as ``scripts/run.sh`` does (``python -m ui.launch``: tile server, then Streamlit), then in
Debian's Chromium measures:
- app up: seconds from the launch to Streamlit's first HTTP 200;
- first map: seconds from opening the Explore page (app already up) to the first aerial tile drawn.
Goal (issue 8): first map within 3 s of the app being up. Runs on loopback only and stops by itself.
Usage: python benchmarks/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, free_port, python  # noqa: E402


def wait_200(url: str, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.perf_counter() - t0
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def first_map(app_url: str) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium",
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = b.new_page(viewport={"width": 1400, "height": 900})
        loaded: list[float] = []
        t0 = time.perf_counter()
        page.on("response", lambda r: loaded.append(time.perf_counter() - t0)
                if "/tiles/WebMercatorQuad/" in r.url and "/IMG_" in r.url and r.status == 200 else None)
        page.goto(f"{app_url}/Explore")
        while not loaded and time.perf_counter() - t0 < 60:
            page.wait_for_timeout(20)
        b.close()
    return loaded[0] if loaded else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ups, maps = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as data:
            tport, aport = free_port(), free_port()
            env = {"FLAIR_VIZ_DATA": data, "FLAIR_VIZ_TILE_PORT": str(tport),
                   "FLAIR_VIZ_TILES_URL": f"http://127.0.0.1:{tport}"}
            t0 = time.perf_counter()
            import subprocess
            # exactly what scripts/run.sh starts: the launcher (tile server + Streamlit)
            app = subprocess.Popen([python(), "-m", "ui.launch", "--server.port", str(aport)],
                                   cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_200(f"http://127.0.0.1:{aport}/_stcore/health")
                ups.append(time.perf_counter() - t0)
                maps.append(first_map(f"http://127.0.0.1:{aport}"))
            finally:
                app.terminate()
                app.wait(10)
    print("app up (launch -> HTTP 200): " + ", ".join(f"{u:.2f}s" for u in ups))
    print("first map (open Explore -> first aerial tile): " + ", ".join(f"{m:.2f}s" for m in maps) + "  (goal <= 3 s)")


if __name__ == "__main__":
    main()
