"""`flair-viz trend` over 5 vintages against 4 separate `flair-viz change` runs, side by side.

Five synthetic class rasters of one ``--size``² area at 0.2 m (64 px blocks of land cover, each vintage
the previous one with 5 % of its pixels changed) are written as tiled deflate GeoTIFFs. Then, in one
process and alternating (pairwise, trend, pairwise, trend ... for ``--repeat`` rounds):

* ``pairwise``: :func:`flair_viz.change.cli.run` (what ``flair-viz change Vi Vi+1 --out DIR`` runs) for the
  4 intervals: from-to counting, change and flow COGs, QGIS styles, CSV/JSON;
* ``trend``: :func:`flair_viz.change.cli.run_trend` with ``cogs=True`` (``flair-viz trend V1..V5 --out DIR
  --cogs``): the same 4 intervals and COGs, plus trend.csv and trend.json.

The goal is trend ≤ 1.1 × the summed pairwise time. Usage:
``.venv/bin/python benchmarks/trend.py [--size 10000] [--repeat 1]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_class_raster  # noqa: E402

from flair_viz.change import cli as change_cli  # noqa: E402

N_VINTAGES = 5


def write_series(folder: Path, size: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 20, (size // 64 + 1, size // 64 + 1), dtype=np.uint8)
    cur = np.kron(coarse, np.ones((64, 64), dtype=np.uint8))[:size, :size]
    paths = []
    for i in range(N_VINTAGES):
        paths.append(write_class_raster(folder / f"v{i}_{size}.tif", cur))
        flip = rng.random(cur.shape, dtype=np.float32) < 0.05
        cur = cur.copy()
        cur[flip] = rng.integers(1, 20, int(flip.sum()), dtype=np.uint8)
    return paths


def pairwise(paths: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    for i, (b, a) in enumerate(zip(paths, paths[1:])):
        change_cli.run(str(b), str(a), out / f"pair{i}", None)
    return time.perf_counter() - t0


def trend(paths: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    change_cli.run_trend([str(p) for p in paths], out / "trend", None, cogs=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-trend-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = write_series(folder, args.size)
        print(f"wrote {N_VINTAGES} vintages of {args.size}² px in {time.perf_counter() - t0:.1f} s", flush=True)
        p_times, t_times = [], []
        for r in range(args.repeat):
            out = folder / f"out{r}"
            p_times.append(pairwise(paths, out))
            t_times.append(trend(paths, out))
            print(f"round {r + 1}: 4 x change {p_times[-1]:.1f} s, trend {t_times[-1]:.1f} s", flush=True)
            shutil.rmtree(out)
        p, t = statistics.median(p_times), statistics.median(t_times)
        mpx = (N_VINTAGES - 1) * args.size ** 2 / 1e6
        print(f"| {args.size}² px × {N_VINTAGES} vintages | 4 × change {p:.1f} s ({mpx / p:.1f} Mpx/s) | "
              f"trend {t:.1f} s ({mpx / t:.1f} Mpx/s) | trend / sum of changes {t / p:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
