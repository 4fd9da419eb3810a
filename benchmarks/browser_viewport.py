"""A map view of live predictions in real Chromium, cold: with Explore's ``viewport=`` hint against without.

    .venv/bin/python benchmarks/browser_viewport.py [--width 1024 --height 768] [--engine auto] [--rounds 2]

Why a browser: Chromium opens at most 6 HTTP/1.1 connections to one server, so a view of 20 z18 tiles
reaches the tile server six at a time. Without the hint the region batcher sees bursts of at most 6 tiles
(several regions, each paying its context margin); with it, the first request queues the whole view.

Each side gets a fresh ``flair-viz serve`` (real uvicorn on loopback) with an empty prediction cache and
the same exported engines, and a Leaflet page (Leaflet from ``static/vendor``) showing the demo zone
mosaic at z18 with one live prediction layer; the hint is the very script Explore's maps carry
(``flair_viz.web.maps.ViewportHint``). Sides alternate, ``--rounds`` times. Reports the time until every
prediction tile has loaded, when the first one did, and the server's peak RSS (process and children).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import rasterio
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RssSampler, free_port, python, start  # noqa: E402

sys.path.insert(0, str(REPO))
from flair_viz.core.catalog import Catalog  # noqa: E402
from flair_viz.web import maps  # noqa: E402

DATASET = "ZONE_D034_2021_Z6_NU"  # 25 real FLAIR-1 patches side by side: room for a whole z18 view
MODEL = "demo-unet-r18"
CHROMIUM = os.environ.get("FLAIR_VIZ_CHROMIUM", "/usr/bin/chromium")


def page(tmp: Path, port: int, hint: bool, size: tuple[int, int]) -> Path:
    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    with rasterio.open(cat.get(DATASET).path) as r:
        w, s, e, n = transform_bounds(r.crs, "EPSG:4326", *r.bounds)
    url = f"http://127.0.0.1:{port}/datasets/{DATASET}/predict/{MODEL}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    script = maps.ViewportHint()._template.module.script(None, {}) if hint else ""
    vendor = REPO / "static" / "vendor" / "leaflet"
    html = f"""<html><head><link rel="stylesheet" href="file://{vendor}/leaflet.css">
<script src="file://{vendor}/leaflet.js"></script></head><body style="margin:0">
<div id="m" style="width:{size[0]}px;height:{size[1]}px"></div><script>
var m = L.map("m").setView([{(s + n) / 2}, {(w + e) / 2}], 18);
{script}
L.tileLayer("{url}", {{maxZoom: 20}}).addTo(m);
</script></body></html>"""
    path = tmp / f"view-{'hint' if hint else 'plain'}.html"
    path.write_text(html)
    return path


def one_view(browser, engine_cache: Path, hint: bool, size: tuple[int, int], engine: str, build: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="flair-viz-bview-") as t:
        tmp = Path(t)
        (tmp / "cache").mkdir()
        (tmp / "cache" / "onnx").symlink_to(engine_cache)
        port = free_port()
        env = {"FLAIR_VIZ_CACHE": str(tmp / "cache"), "FLAIR_VIZ_DATA": str(tmp / "data"), "FLAIR_VIZ_ENGINE": engine,
               "FLAIR_VIZ_INT8_BUILD": "1" if build else "0", "FLAIR_VIZ_TOKEN": ""}
        server = start([python(), "-m", "flair_viz", "serve", "--port", str(port)], f"http://127.0.0.1:{port}/healthz",
                       env=env, timeout=180)
        sampler = RssSampler(server.pid, period=0.05)
        sampler.start()
        try:
            tab = browser.new_page(viewport={"width": size[0] + 40, "height": size[1] + 40})
            events: list[tuple[float, int]] = []
            t0 = time.monotonic()
            tab.on("request", lambda r: "/predict/" in r.url and events.append((time.monotonic() - t0, 1)))
            tab.on("requestfinished", lambda r: "/predict/" in r.url and events.append((time.monotonic() - t0, -1)))
            tab.goto(f"file://{page(tmp, port, hint, size)}")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                asked, done = sum(1 for _, k in events if k > 0), sum(1 for _, k in events if k < 0)
                if asked and asked == done:
                    break
                tab.wait_for_timeout(100)
            ends = [t for t, k in events if k < 0]
            tab.close()
            while build and time.monotonic() < deadline and not list(engine_cache.glob("*.agreement.json")):
                time.sleep(0.5)  # auto's background build of the reduced engines (bf16 or int8) and its record
        finally:
            sampler.stop()
            server.terminate()
            server.wait(15)
    return {"tiles": len(ends), "all_s": max(ends), "first_s": min(ends), "peak_rss_mb": max(b for _, b in sampler.samples) / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    size = (args.width, args.height)
    with tempfile.TemporaryDirectory(prefix="flair-viz-engines-") as cache, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        one_view(browser, Path(cache), True, size, args.engine, build=True)  # exports (auto: qualifies) engines once
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.rounds):
            for hint in (False, True):
                runs[hint].append(one_view(browser, Path(cache), hint, size, args.engine))
        browser.close()
    for hint, label in ((False, "no hint (6 connections)"), (True, "viewport= hint")):
        rs = runs[hint]
        print(f"{label:24s} {rs[0]['tiles']} tiles: all loaded {statistics.median(r['all_s'] for r in rs):.1f} s "
              f"(runs {', '.join(format(r['all_s'], '.1f') for r in rs)}), first {statistics.median(r['first_s'] for r in rs):.1f} s, "
              f"server peak RSS {max(r['peak_rss_mb'] for r in rs):.0f} MB")
    ratio = statistics.median(r["all_s"] for r in runs[False]) / statistics.median(r["all_s"] for r in runs[True])
    print(f"view of {args.width}x{args.height} px at z18, cold, engine {args.engine}: hint {ratio:.2f}x faster "
          f"to the last tile ({psutil.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
