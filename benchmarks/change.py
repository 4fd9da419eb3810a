"""Change throughput against raster size: from-to counting and region breakdown, in Mpx/s.

For each size (1k, 4k, 8k px squares at 0.2 m) two synthetic class rasters are written as tiled
GeoTIFFs (blocky land cover plus 5 % changed pixels), then, side by side in one run:

* ``read``: reading both rasters block by block and nothing else (the I/O floor);
* ``from-to``: :func:`flair_viz.change.compute_change` (streaming blocks, bincount);
* ``regions``: the same with a 10 × 10 grid of polygons (GeoPackage) for the per-region breakdown;
* ``np.unique``: the naive approach, both rasters read whole and ``np.unique(pairs, return_counts=True)``.

Ratios printed: from-to / read time (overhead over I/O), regions / from-to time (cost of the
breakdown), np.unique / from-to time (speed-up over the naive approach). Each timing is the best of
``--repeat`` runs. Usage: ``.venv/bin/python benchmarks/change.py [--sizes 1024 4096 8192] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CLASS_ORIGIN, CLASS_RES, write_class_raster  # noqa: E402

from flair_viz import change  # noqa: E402

ORIGIN, RES = CLASS_ORIGIN, CLASS_RES


def write_pair(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 20, (size // 64 + 1, size // 64 + 1), dtype=np.uint8)
    before = np.kron(coarse, np.ones((64, 64), dtype=np.uint8))[:size, :size]
    after = before.copy()
    flip = rng.random(before.shape) < 0.05
    after[flip] = rng.integers(1, 20, int(flip.sum()), dtype=np.uint8)
    paths = []
    for name, data in (("before", before), ("after", after)):
        paths.append(write_class_raster(folder / f"{name}_{size}.tif", data))
    return paths[0], paths[1]


def write_regions(folder: Path, size: int) -> Path:
    import geopandas as gpd
    from shapely.geometry import box

    step = size * RES / 10
    x0, y1 = ORIGIN
    geoms = [box(x0 + i * step, y1 - (j + 1) * step, x0 + (i + 1) * step, y1 - j * step)
             for j in range(10) for i in range(10)]
    p = folder / f"regions_{size}.gpkg"
    gpd.GeoDataFrame({"name": [f"r{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:2154").to_file(p)
    return p


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def read_only(b: Path, a: Path) -> None:
    for p in (b, a):
        with rasterio.open(p) as ds:
            for w in change.iter_windows(rasterio.windows.Window(0, 0, ds.width, ds.height), change.DEFAULT_BLOCK):
                ds.read(1, window=w)


def naive_unique(b: Path, a: Path) -> None:
    with rasterio.open(b) as ds:
        bb = ds.read(1)
    with rasterio.open(a) as ds:
        aa = ds.read(1)
    np.unique(bb.astype(np.uint16) * 20 + aa, return_counts=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("size    Mpx   read s  from-to s  Mpx/s  regions s  Mpx/s  np.unique s | from-to/read  regions/from-to  "
          "np.unique/from-to")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            b, a = write_pair(Path(tmp), size)
            regions = write_regions(Path(tmp), size)
            mpx = size * size / 1e6
            t_read = best(lambda: read_only(b, a), args.repeat)
            t_ft = best(lambda: change.compute_change(b, a), args.repeat)
            t_reg = best(lambda: change.compute_change(b, a, regions=regions), args.repeat)
            t_np = best(lambda: naive_unique(b, a), args.repeat)
            res = change.compute_change(b, a, regions=regions)
            total = sum(r["area_ha"] for r in res.region_table())
            assert abs(total - res.valid_area_ha()) < 1e-9 * res.valid_area_ha(), "regions do not sum to the total"
            print(f"{size:5d} {mpx:6.1f} {t_read:8.3f} {t_ft:10.3f} {mpx / t_ft:6.1f} {t_reg:10.3f} {mpx / t_reg:6.1f}"
                  f" {t_np:12.3f} | {t_ft / t_read:12.2f} {t_reg / t_ft:16.2f} {t_np / t_ft:18.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
