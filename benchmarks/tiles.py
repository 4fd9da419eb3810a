"""Tile latency: FLAIR Viz's catalog-ID tile endpoint vs plain titiler on the same COG, side by side.

Both servers run as real uvicorn processes (1 worker each) on loopback; requests alternate between
them tile by tile, so both see the same machine state. Prints p50/p95 and the ratio (goal <= 1.2x).
Usage: python benchmarks/tiles.py [--size 4096] [--zoom 18] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import morecantile
import rasterio
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, make_cog, percentiles, python, start  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--zoom", type=int, default=18)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cog = make_cog(tmp / "scene.tif", args.size)
        (tmp / "catalog.toml").write_text(
            'data_root = "."\n[[dataset]]\nid = "SCENE"\npath = "scene.tif"\nrole = "image"\n'
            'bands = ["R", "G", "B", "NIR", "elevation"]\n')
        p_ours, p_ref = free_port(), free_port()
        ours = start([python(), "-m", "flair_viz", "serve", "--port", str(p_ours), "--catalog", str(tmp / "catalog.toml")],
                     f"http://127.0.0.1:{p_ours}/healthz")
        ref = start([python(), "-m", "uvicorn", "plain_titiler_app:app", "--port", str(p_ref), "--log-level", "warning",
                     "--app-dir", str(Path(__file__).parent)], f"http://127.0.0.1:{p_ref}/healthz")
        try:
            with rasterio.open(cog) as ds:
                w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
            tiles = list(morecantile.tms.get("WebMercatorQuad").tiles(w, s, e, n, [args.zoom]))
            tiles = [t for t in tiles][: 200]
            t_ours, t_ref = [], []
            with httpx.Client(timeout=30) as client:
                for rnd in range(args.rounds + 1):
                    for t in tiles:
                        for urls, sink in (
                            (f"http://127.0.0.1:{p_ours}/datasets/SCENE/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?preset=rgb", t_ours),
                            (f"http://127.0.0.1:{p_ref}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={cog}&bidx=1&bidx=2&bidx=3", t_ref),
                        ):
                            t0 = time.perf_counter()
                            r = client.get(urls)
                            dt = time.perf_counter() - t0
                            if r.status_code not in (200, 404):
                                raise SystemExit(f"{urls} -> {r.status_code}: {r.text[:200]}")
                            if rnd > 0:  # first round warms both
                                sink.append(dt)
        finally:
            ours.terminate()
            ref.terminate()
    a, b = percentiles(t_ours), percentiles(t_ref)
    print(f"COG {args.size}x{args.size} px, 5 bands, z{args.zoom}, {len(tiles)} tiles x {args.rounds} rounds, sequential")
    print(f"FLAIR Viz /datasets/ID/tiles : p50 {a['p50']:.1f} ms  p95 {a['p95']:.1f} ms")
    print(f"plain titiler ?url=          : p50 {b['p50']:.1f} ms  p95 {b['p95']:.1f} ms")
    print(f"ratio p50 {a['p50'] / b['p50']:.2f}x  p95 {a['p95'] / b['p95']:.2f}x  (goal <= 1.2x)")


if __name__ == "__main__":
    main()
