"""The most one request can cost the tile server under the caps: CPU seconds and memory, per route family.

A real ``flair-viz serve`` (one worker, cold caches in a temporary folder) on the demo catalog answers one
request at a time; for each, the server's CPU time (process and children, user + system) and its peak RSS
(sampled every 20 ms) are recorded. Each request asks for the worst the caps allow: the lowest zoom of the
dataset's range (:func:`flair_viz.core.tiling.zoom_range`) and every size parameter at its cap (the settings
table, ``flair_viz/core/config.py``). The datasets are the demo's worst cases: a 512 px patch without
overviews (IMG_000473), and a 2560 px zone mosaic with four overview levels (ZONE_D034_2021_Z6_NU). Refused
requests (z0, sizes over the caps) are measured too: they must cost nothing.

Prints a Markdown table for docs/benchmarks.md ("Request cost under the caps").
Usage: python benchmarks/request_cost.py [--engine auto] [--only aerial,preview,...] [--repeat 1]
A quick smoke: python benchmarks/request_cost.py --engine torch --only aerial,overview,refused
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import rasterio
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RssSampler, free_port, python, start  # noqa: E402

sys.path.insert(0, str(REPO))
from flair_viz.core import config  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402
from flair_viz.core.tiling import zoom_range  # noqa: E402
from tests.helpers import DEMO_CATALOG, centre_tile  # noqa: E402

PATCH, ZONE = "IMG_000473", "ZONE_D034_2021_Z6_NU"
MASK, PRED, SIM = "MSK_000473", "PRED_000473_demo-unet-r18", "MSK_000473_SIM2024"
MODEL = "demo-unet-r18"


def requests_to_time(catalog: Catalog) -> list[tuple[str, str, str, dict | None]]:
    """(family, what, URL, JSON body or None) of the worst request each route family allows, and refused ones."""
    s = config.settings()

    def tile(ds_id: str, at: str | None = None) -> tuple[int, str]:
        """The lowest allowed zoom of ``ds_id`` and its tile path over the centre of ``at`` (default: itself)."""
        low, _ = zoom_range(catalog.get(ds_id), "WebMercatorQuad")
        t = centre_tile(catalog.get(at or ds_id).path, low)
        return low, f"WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"

    def footprint(ds_id: str) -> dict:
        with rasterio.open(catalog.get(ds_id).path) as src:
            w, so, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        return {"type": "Feature", "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [[[w, so], [e, so], [e, n], [w, n], [w, so]]]}}

    sizes = f"tilesize={s.max_tilesize}&buffer={s.max_buffer}&padding={s.max_buffer}"
    out = []
    for ds_id in (PATCH, ZONE):
        z, zxy = tile(ds_id)
        out.append(("aerial", f"{ds_id} z{z}, {sizes}", f"/datasets/{ds_id}/tiles/{zxy}?{sizes}", None))
        out.append(("preview", f"{ds_id} {s.max_image_px}x{s.max_image_px}",
                    f"/datasets/{ds_id}/preview/{s.max_image_px}x{s.max_image_px}.png", None))
        out.append(("statistics", f"{ds_id} max_size={s.max_image_px}, {s.max_bins} bins",
                    f"/datasets/{ds_id}/statistics?max_size={s.max_image_px}&histogram_bins={s.max_bins}", None))
        out.append(("statistics", f"{ds_id} feature, max_size={s.max_image_px}, cover_scale={s.max_cover_scale}",
                    f"/datasets/{ds_id}/statistics?max_size={s.max_image_px}&cover_scale={s.max_cover_scale}",
                    footprint(ds_id)))
        out.append(("predict", f"{ds_id} z{z} (cut from a scene prediction, cold)",
                    f"/datasets/{ds_id}/predict/{MODEL}/tiles/{zxy}?layer=error", None))
    t19 = centre_tile(catalog.get(PATCH).path, 19)
    view = f"{t19.x - 5},{t19.y - 3},{t19.x + 6},{t19.y + 4}"  # the largest announced view (12 x 8 tiles)
    out.append(("predict", f"{PATCH} z19, live, viewport of 12 x 8 tiles (cold)",
                f"/datasets/{PATCH}/predict/{MODEL}/tiles/WebMercatorQuad/19/{t19.x}/{t19.y}.png?viewport={view}",
                None))
    z, zxy = tile(MASK)
    out.append(("confusion", f"{MASK} z{z}, tilesize={s.max_tilesize}",
                f"/datasets/{MASK}/confusion/{PRED}/tiles/{zxy}?truth_class=1&pred_class=2&tilesize={s.max_tilesize}",
                None))
    out.append(("change", f"{MASK} z{z}", f"/change/{MASK}/{SIM}/tiles/{zxy}?mode=flow", None))
    out.append(("overview", f"z0, tilesize={s.max_tilesize}",
                f"/overview/tiles/WebMercatorQuad/0/0/0.png?tilesize={s.max_tilesize}", None))
    out.append(("refused", f"{PATCH} z0", f"/datasets/{PATCH}/predict/{MODEL}/tiles/WebMercatorQuad/0/0/0.png", None))
    out.append(("refused", f"{PATCH} buffer={s.max_buffer * 100}",
                f"/datasets/{PATCH}/tiles/{tile(PATCH)[1]}?buffer={s.max_buffer * 100}", None))
    return out


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of the server and its children so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def row_text(row: tuple) -> str:
    family, what, status, cpu, wall, peak, growth = row
    return f"| {family} | {what} | {status} | {cpu:.2f} | {wall:.2f} | {peak:.0f} | {growth:+.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="auto", help="engine of the live predictions (as serve --engine)")
    ap.add_argument("--only", default="", help="comma-separated route families (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each request; the first is the cold one")
    args = ap.parse_args()
    only = {f for f in args.only.split(",") if f}
    plan = [r for r in requests_to_time(Catalog.load(DEMO_CATALOG)) if not only or r[0] in only]

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {"FLAIR_VIZ_DATA": str(Path(tmp) / "data"), "FLAIR_VIZ_CACHE": str(Path(tmp) / "cache")}
        server = start([python(), "-m", "flair_viz", "serve", "--port", str(port), "--catalog", str(DEMO_CATALOG),
                        "--engine", args.engine], f"http://127.0.0.1:{port}/healthz", env=env, timeout=600)
        proc = psutil.Process(server.pid)
        rows = []
        try:
            time.sleep(5)  # let the engine warm-up thread finish, so it is not counted in the first request
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as client:
                for family, what, url, body in plan:
                    for run in range(args.repeat):
                        sampler = RssSampler(server.pid, period=0.02)
                        before_rss, before_cpu = sampler.rss(), cpu_seconds(proc)
                        sampler.start()
                        t0 = time.perf_counter()
                        r = client.post(url, json=body) if body is not None else client.get(url)
                        wall = time.perf_counter() - t0
                        sampler.stop()
                        peak = max([before_rss, *(b for _, b in sampler.samples)])
                        rows.append((family, what + ("" if run == 0 else f" (run {run + 1})"), r.status_code,
                                     cpu_seconds(proc) - before_cpu, wall, peak / 2**20, (peak - before_rss) / 2**20))
                        print(row_text(rows[-1]), file=sys.stderr, flush=True)  # progress, as each one ends
        finally:
            server.terminate()
            server.wait(30)

    print("| route | request (worst allowed) | status | CPU s | wall s | peak RSS MB | RSS growth MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row_text(row))


if __name__ == "__main__":
    main()
