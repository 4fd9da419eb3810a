"""Catalog scale: scan time and its growth, then load / filter / get-by-ID on a 100k-patch index.

A synthetic FLAIR tree is generated from one template GeoTIFF (a real demo patch's 5 bands, 512 px,
tiled like FLAIR-1) whose georeference is rewritten in the bytes for every patch, so thousands of files
on adjacent grids are written in seconds; masks likewise. ``catalog scan --headers-only`` then reads
every header (and the last pixel) on threads; ``--values`` times the default scan, which also reads every mask. Loading and querying use the Parquet index the scan wrote; for sizes not
scanned (100k on a shared 2-core box) the index is built by repeating the scanned rows under new IDs,
which is what the load path reads (it opens no raster).

Usage: python benchmarks/catalog_scale.py [--scan 1000,10000] [--load 100000] [--threads 8] [--values]
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flair_viz.cli.main import main as cli  # noqa: E402
from flair_viz.core import index  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402
from flair_viz.web import browse  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "data/demo/flair/D004_2021/Z6_NU"
X_MARK, Y_MARK = 123456.25, 7654321.75  # template origin, found and replaced in the TIFF bytes
SIDE = 102.4  # a 512 px patch at 0.2 m
PER_ZONE = 100  # 10 x 10 patches per zone, 10 zones per domain


def template(path: Path, data: np.ndarray) -> bytes:
    prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint8",
                crs="EPSG:2154", transform=from_origin(X_MARK, Y_MARK, 0.2, 0.2), tiled=True, blockxsize=256,
                blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    raw = path.read_bytes()
    assert raw.count(struct.pack("<d", X_MARK)) == 1 and raw.count(struct.pack("<d", Y_MARK)) == 1
    return raw


def make_tree(root: Path, n: int) -> Path:
    """``n`` patches (image + mask) in FLAIR layout, zones of 10 x 10 adjacent patches."""
    with rasterio.open(DEMO / "img/IMG_000473.tif") as ds:
        img = template(root / "t_img.tif", ds.read())
    with rasterio.open(DEMO / "msk/MSK_000473.tif") as ds:
        msk = template(root / "t_msk.tif", ds.read())
    xm, ym = struct.pack("<d", X_MARK), struct.pack("<d", Y_MARK)
    tree = root / "flair"
    for i in range(n):
        z, k = divmod(i, PER_ZONE)
        d = f"D{z // 10 + 1:03d}_2021"
        zone = f"Z{z % 10 + 1}_UA"
        x = 700_000 + (z % 10) * 2_000 + (k % 10) * SIDE
        y = 6_600_000 + (z // 10) * 2_000 - (k // 10) * SIDE
        loc = struct.pack("<d", x), struct.pack("<d", y)
        for kind, raw in (("img", img), ("msk", msk)):
            folder = tree / d / zone / kind
            if k == 0:
                folder.mkdir(parents=True, exist_ok=True)
            prefix = "IMG" if kind == "img" else "MSK"
            (folder / f"{prefix}_{i:06d}.tif").write_bytes(raw.replace(xm, loc[0]).replace(ym, loc[1]))
    return tree


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def scale_index(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """A table of ``n`` patches made by repeating the scanned rows under new IDs, zones and domains."""
    patches = table[table["mosaic"] == ""]
    reps = -(-n // int((patches["role"] == "image").sum()))
    parts = []
    for r in range(reps):
        p = patches.copy()
        p["id"] = p["id"] + f"_{r}"
        p["patch"] = p["patch"] + f"_{r}"
        p["domain"] = p["domain"].str.replace("_2021", f"_{2019 + r % 3}") + f"x{r}"
        p["vintage"] = p["domain"].str[5:9]
        parts.append(p)
    return pd.concat(parts, ignore_index=True).head(2 * n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scan", default="1000,10000", help="tree sizes to generate and scan")
    ap.add_argument("--load", type=int, default=100_000, help="patches in the index used for load/filter timing")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--values", action="store_true", help="also read every mask's values (the scan's default)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.scan.split(",") if s]
    print("| patches | files | generate s | scan s | patches/s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        last = None
        for n in sizes:
            root = Path(tmp) / f"n{n}"
            root.mkdir()
            t0 = time.perf_counter()
            tree = make_tree(root, n)
            gen = time.perf_counter() - t0
            cat = root / "catalog.toml"
            extra = (["--threads", str(args.threads)] if args.threads else []) + ([] if args.values else ["--headers-only"])
            t0 = time.perf_counter()
            with redirect_stdout(io.StringIO()) as out:
                rc = cli(["catalog", "scan", str(tree), "--catalog", str(cat), "--root", str(root), *extra])
            dt = time.perf_counter() - t0
            assert rc == 0, out.getvalue()[-2000:]
            print(f"| {n:,} | {2 * n:,} | {gen:.1f} | {dt:.1f} | {n / dt:,.0f} |", flush=True)
            last = cat
        table = index.read_index(next((last.parent / "catalog.index").glob("*.parquet")))
        big = scale_index(table, args.load)
        big_dir = Path(tmp) / "big"
        index.write_index(big, big_dir / "catalog.index" / "flair.parquet")
        (big_dir / "catalog.toml").write_text(f'data_root = "{last.parent}"\n[[index]]\npath = "catalog.index/flair.parquet"\n')
        n_img = int((big["role"] == "image").sum())
        load, c = timed(lambda: Catalog.load(big_dir / "catalog.toml"))
        ids = big["id"].sample(1000, random_state=0).tolist()
        first_get, _ = timed(lambda: Catalog.load(big_dir / "catalog.toml").get(ids[0]), repeat=3)
        fresh = Catalog.load(big_dir / "catalog.toml")
        fresh.get(ids[0])
        get, _ = timed(lambda: [fresh.get(i) for i in ids], repeat=1)  # each row built on demand, once
        cached, _ = timed(lambda: [c.get(i) for i in ids])
        dom = big["domain"].iloc[len(big) // 2]
        f_dom, r_dom = timed(lambda: c.filter(domain=dom))
        zone = big["zone"].iloc[len(big) // 2]
        f_zone, r_zone = timed(lambda: c.filter(domain=dom, zone=zone, role="image"))
        f_year, r_year = timed(lambda: c.filter(year="2020", role="truth"), repeat=2)
        truth, _ = timed(lambda: [c.truth_of(c.get(i)) for i in ids if i.startswith("IMG")], repeat=2)
        table_t, _ = timed(lambda: index.patch_table(c))
        it, _ = timed(lambda: sum(1 for _ in c), repeat=1)
        b_all, l_all = timed(lambda: browse.browse(c), repeat=2)  # Explore's list with no filter chosen
        b_dom, l_dom = timed(lambda: browse.browse(c, domains=[dom]), repeat=2)
    print(f"\nIndex of {n_img:,} patches ({len(big):,} datasets), best of several runs:\n")
    print("| operation | time |\n|---|---|")
    print(f"| `Catalog.load` (reads the Parquet index) | {load * 1000:.0f} ms |")
    print(f"| load + first get-by-ID | {first_get * 1000:.0f} ms |")
    print(f"| get-by-ID, first time (builds the Dataset) | {get / len(ids) * 1e6:.0f} µs |")
    print(f"| get-by-ID, again | {cached / len(ids) * 1e6:.1f} µs |")
    print(f"| filter by domain ({len(r_dom):,} datasets) | {f_dom * 1000:.1f} ms |")
    print(f"| filter by domain + zone + role ({len(r_zone):,}) | {f_zone * 1000:.1f} ms |")
    print(f"| filter by year + role ({len(r_year):,}) | {f_year * 1000:.0f} ms |")
    n_truth = sum(i.startswith("IMG") for i in ids)
    print(f"| `truth_of` per image, after the patch lookup is built once | {truth / n_truth * 1e6:.0f} µs |")
    print(f"| `index.patch_table` (overview map input) | {table_t * 1000:.0f} ms |")
    print(f"| iterate every dataset (builds all {len(big):,} Dataset objects) | {it:.1f} s |")
    print(f"| Explore's patch list, no filter ({len(l_all.scenes):,} of {l_all.total:,} listed) | {b_all * 1000:.0f} ms |")
    print(f"| Explore's patch list, one domain ({len(l_dom.scenes):,} listed) | {b_dom * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
