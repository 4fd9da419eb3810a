"""Overview layer at scale: footprint tiles of a 100,000-patch catalog (build, colour, render one tile).

The patch table is synthetic (no rasters: the overview reads only the index's bounds): zones of 10 x 10
adjacent 102.4 m patches on a grid over France, 50 domains. Scores come from the metrics benchmark's
synthetic store (``benchmarks/metrics.py::synthetic_table``, same patch IDs), so colouring by mIoU reads
100,000 stored matrices. Each tile is timed cold (first render of that tile) through the same functions
the tile server calls (``layer``-free: footprints and colours are built once, as the server caches them).

Usage: python benchmarks/overview.py [--patches 100000] [--tiles 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import morecantile
import numpy as np
import pandas as pd
from pyproj import Transformer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import synthetic_table  # noqa: E402

from flair_viz.overview.colours import colouring  # noqa: E402
from flair_viz.overview.footprints import from_table  # noqa: E402
from flair_viz.overview.render import tile_png  # noqa: E402

SIDE = 102.4
TMS = morecantile.tms.get("WebMercatorQuad")


def patch_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` image rows in zones of 10 x 10 adjacent patches, zones scattered over metropolitan France."""
    zones = -(-n // 100)
    zx = rng.uniform(150_000, 1_150_000, zones)  # Lambert-93 extent of mainland France, roughly
    zy = rng.uniform(6_150_000, 7_050_000, zones)
    i = np.arange(n)
    z, k = i // 100, i % 100
    left = zx[z] + (k % 10) * SIDE
    top = zy[z] - (k // 10) * SIDE
    domains = np.array([f"D{d:03d}_{2019 + d % 3}" for d in range(1, 51)])
    dom = domains[z % 50]
    return pd.DataFrame({"id": [f"IMG_{p:06d}" for p in i], "role": "image", "domain": dom,
                         "zone": [f"Z{q % 30 + 1}_UA" for q in z], "vintage": [d[5:9] for d in dom],
                         "patch": [f"{p:06d}" for p in i], "left": left, "bottom": top - SIDE, "right": left + SIDE,
                         "top": top})


def tiles_with_patches(fp, zoom: int, count: int, rng: np.random.Generator) -> list[morecantile.Tile]:
    to_ll = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    rows = rng.choice(len(fp), min(count, len(fp)), replace=False)
    cx, cy = (fp.l93[rows, 0] + fp.l93[rows, 2]) / 2, (fp.l93[rows, 1] + fp.l93[rows, 3]) / 2
    lon, lat = to_ll.transform(cx, cy)
    return list(dict.fromkeys(TMS.tile(a, b, zoom) for a, b in zip(lon, lat)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=100_000)
    ap.add_argument("--tiles", type=int, default=30, help="tiles timed per zoom")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    table = patch_table(args.patches, rng)
    t0 = time.perf_counter()
    fp = from_table(table)
    t_fp = time.perf_counter() - t0
    store = synthetic_table(args.patches, np.random.default_rng(1))
    t0 = time.perf_counter()
    by_domain = colouring(fp, "domain")
    t_dom = time.perf_counter() - t0
    t0 = time.perf_counter()
    by_miou = colouring(fp, "miou", store, model="unet-a")
    t_miou = time.perf_counter() - t0
    print(f"{len(fp):,} patches · footprints {t_fp:.2f} s · colours by domain {t_dom:.2f} s · "
          f"by mIoU {t_miou:.2f} s ({int(np.isfinite(by_miou.values).sum()):,} patches scored)")
    print("| zoom | tiles | patches per tile (median) | domain p50 ms | domain max ms | mIoU p50 ms | PNG KB (median) |")
    print("|---|---|---|---|---|---|---|")
    for zoom in (6, 9, 12, 15, 17):
        tiles = tiles_with_patches(fp, zoom, args.tiles, rng)
        t_d, t_m, sizes, per_tile = [], [], [], []
        for t in tiles:
            left, bottom, right, top = TMS.xy_bounds(t)
            m = fp.mercator
            per_tile.append(int(((m[:, 0] < right) & (m[:, 2] > left) & (m[:, 1] < top) & (m[:, 3] > bottom)).sum()))
            t0 = time.perf_counter()
            png = tile_png(fp, by_domain.rgba, t.z, t.x, t.y)
            t_d.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tile_png(fp, by_miou.rgba, t.z, t.x, t.y)
            t_m.append(time.perf_counter() - t0)
            sizes.append(len(png) / 1024)
        print(f"| {zoom} | {len(tiles)} | {int(statistics.median(per_tile)):,} | {1e3 * statistics.median(t_d):.1f} | "
              f"{1e3 * max(t_d):.1f} | {1e3 * statistics.median(t_m):.1f} | {statistics.median(sizes):.1f} |")


if __name__ == "__main__":
    main()
