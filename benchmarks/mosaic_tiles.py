"""Zone-mosaic tile latency: FLAIR Viz's ``/datasets/ZONE_.../tiles`` vs plain titiler on the same VRT.

A 10 x 10 zone of real-pixel patches (the demo patch's bytes, re-georeferenced onto adjacent grids by
``catalog_scale.make_tree``) is scanned with ``flair-viz catalog scan``, which writes the zone VRT.
Both servers run as real uvicorn processes (1 worker each) on loopback and requests alternate tile by
tile, so both see the same machine state. Prints p50/p95 and the ratio (goal <= 1.2x).
Usage: python benchmarks/mosaic_tiles.py [--zoom 18] [--rounds 2] [--patches 100]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import morecantile
import rasterio
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import free_port, percentiles, python, start  # noqa: E402
from catalog_scale import make_tree  # noqa: E402

from flair_viz.cli.main import main as cli  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402

ZONE = "ZONE_D001_2021_Z1_UA"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoom", type=int, default=18)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--patches", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = make_tree(tmp, args.patches)
        cat = tmp / "catalog.toml"
        with redirect_stdout(io.StringIO()):
            assert cli(["catalog", "scan", str(tree), "--catalog", str(cat), "--root", str(tmp)]) == 0
        vrt = Catalog.load(cat).get(ZONE).path
        p_ours, p_ref = free_port(), free_port()
        ours = start([python(), "-m", "flair_viz", "serve", "--port", str(p_ours), "--catalog", str(cat)],
                     f"http://127.0.0.1:{p_ours}/healthz")
        ref = start([python(), "-m", "uvicorn", "plain_titiler_app:app", "--port", str(p_ref), "--log-level", "warning",
                     "--app-dir", str(Path(__file__).parent)], f"http://127.0.0.1:{p_ref}/healthz")
        try:
            with rasterio.open(vrt) as ds:
                w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
            tiles = list(morecantile.tms.get("WebMercatorQuad").tiles(w, s, e, n, [args.zoom]))[:200]
            t_ours, t_ref = [], []
            with httpx.Client(timeout=60) as client:
                for rnd in range(args.rounds + 1):
                    for t in tiles:
                        for url, sink in (
                            (f"http://127.0.0.1:{p_ours}/datasets/{ZONE}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                             "?preset=rgb", t_ours),
                            (f"http://127.0.0.1:{p_ref}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={vrt}"
                             "&bidx=1&bidx=2&bidx=3", t_ref),
                        ):
                            t0 = time.perf_counter()
                            r = client.get(url)
                            dt = time.perf_counter() - t0
                            if r.status_code not in (200, 404):
                                raise SystemExit(f"{url} -> {r.status_code}: {r.text[:200]}")
                            if rnd > 0:  # the first round warms both
                                sink.append(dt)
        finally:
            ours.terminate()
            ref.terminate()
    a, b = percentiles(t_ours), percentiles(t_ref)
    print(f"zone VRT of {args.patches} patches (512 px, 5 bands), z{args.zoom}, {len(tiles)} tiles x {args.rounds} "
          "rounds, sequential")
    print(f"FLAIR Viz /datasets/{ZONE}/tiles : p50 {a['p50']:.1f} ms  p95 {a['p95']:.1f} ms")
    print(f"plain titiler ?url=<same VRT>       : p50 {b['p50']:.1f} ms  p95 {b['p95']:.1f} ms")
    print(f"ratio p50 {a['p50'] / b['p50']:.2f}x  p95 {a['p95'] / b['p95']:.2f}x  (goal <= 1.2x)")


if __name__ == "__main__":
    main()
