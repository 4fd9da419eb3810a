"""Build the real Gers change pair of the demo (``data/demo/gers/``) from the ODEON test labels.

The source (``../shared/data/odeon-gers-2016-2019``, a byte copy of ``IGNF/odeon`` commit
``c7d1fc396c04c8a26263570689c858059f2ee9e0``, ``tests/test_data/``) holds, per vintage, three vertically
adjacent 1024 × 1024 tiles at 0.25 m in EPSG:2154 (uint8, single band): a 256 m × 768 m strip near Auch.
The Change page needs one class raster per vintage, so this script mosaics the three ``naf`` tiles of each
vintage into one COG (raw ODEON codes kept: the catalog declares ``nomenclature = "odeon-naf"`` and every
reader maps them through ``flair_viz/core/odeon_nomenclature.toml``), and copies the two real binary
change masks pixel for pixel, LZW-compressed (the source files are uncompressed: 1.6 MB each, ~50 KB
here). Every file is written atomically; same inputs, same pixels.

Usage: ``.venv/bin/python scripts/make_gers_pair.py [--src DIR] [--out data/demo/gers]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.merge import merge
from rasterio.shutil import copy as rio_copy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flair_viz.core import atomic  # noqa: E402
from flair_viz.core.cog import cog_writer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VINTAGES = ("2016", "2019")
TILES = ("6275328", "6275584", "6275840")  # the northing (top edge) of each 256 m tile
MASKS = ("UC_S1_1.tiff", "CU_S1_3.tiff")


def mosaic(tiles: list[Path], final: Path) -> Path:
    """The tiles as one uint8 COG on their common 0.25 m grid; refuses anything but uint8, 1 band, EPSG:2154."""
    sources = [rasterio.open(t) for t in tiles]
    try:
        for s in sources:
            if s.count != 1 or s.dtypes[0] != "uint8" or s.crs is None or s.crs.to_epsg() != 2154:
                sys.exit(f"{s.name}: expected a single-band uint8 raster in EPSG:2154")
        data, transform = merge(sources, nodata=None)
        crs = sources[0].crs
    finally:
        for s in sources:
            s.close()
    profile = {"width": data.shape[2], "height": data.shape[1], "count": 1, "dtype": "uint8", "crs": crs,
               "transform": transform}
    with cog_writer(final, profile) as dst:
        dst.write(data[0].astype(np.uint8), 1)
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "odeon-gers-2016-2019")
    p.add_argument("--out", type=Path, default=REPO / "data" / "demo" / "gers")
    args = p.parse_args(argv)
    for v in VINTAGES:
        tiles = [args.src / "train" / v / "naf" / f"zone_v13_478208-0000_{n}-0000.tiff" for n in TILES]
        print(mosaic(tiles, args.out / f"GERS_naf_{v}.tif"))
    for m in MASKS:
        final = args.out / "mask" / m
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(final) as tmp:
            rio_copy(args.src / "mask" / m, tmp, driver="GTiff", compress="LZW", tiled=True)
        print(final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
