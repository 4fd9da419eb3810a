"""A [[stack]] (BD ORTHO-like RGB and IRC dalles + an elevation GeoTIFF) vs a 5-band COG of the same pixels, side
by side in one run (issue 25's goals):

(a) aerial tiles: the same WebMercator tiles of both, by catalog ID from one in-process tile server (FastAPI
    TestClient), requests alternating stack / COG tile by tile; p50 ratio, goal <= 1.5x;
(b) batch prediction (``predict.batch.batch_predict`` on a 1-worker Dask cluster, blocks of windows, the same
    engine and model): the whole stack vs the whole COG, alternating, median of ``--repeat``; goal <= 1.2x.

The pixels are real FLAIR-1 patches (the demo zone D034_2021/Z6_NU, ``--patches`` n x n of them), cut into dalles
on a grid that does not follow the patches (as in tests/test_stack.py). ``--dalles jp2`` writes lossless JPEG 2000
dalles (as IGN delivers BD ORTHO), ``gtiff`` tiled deflate GeoTIFFs; ``both`` measures each.
Usage: python benchmarks/stack.py [--patches 2] [--dalles both] [--zooms 17,18,19] [--repeat 1] [--engine torch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import REPO, percentiles  # noqa: E402

ZONE = REPO / "data" / "demo" / "flair1" / "D034_2021" / "Z6_NU" / "img"
DALLE_PX = (700, 450)  # width, height: follows neither the 512 px patch grid nor a power of two
OPTIONS = {"jp2": {"driver": "JP2OpenJPEG", "QUALITY": "100", "REVERSIBLE": "YES"},
           "gtiff": {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}}


def zone_block(n: int) -> tuple[np.ndarray, rasterio.Affine]:
    """The top-left n x n real patches of the demo zone as one 5-band array, and its transform."""
    paths = sorted(ZONE.glob("IMG_*.tif"))
    with rasterio.open(paths[0]) as ds:
        res = ds.transform.a
    heads = []
    for p in paths:
        with rasterio.open(p) as ds:
            heads.append((p, ds.bounds.left, ds.bounds.top))
    left, top = min(h[1] for h in heads), max(h[2] for h in heads)
    out = np.zeros((5, 512 * n, 512 * n), np.uint8)
    for p, x, y in heads:
        col, row = round((x - left) / res), round((top - y) / res)
        if col < 512 * n and row < 512 * n:
            with rasterio.open(p) as ds:
                out[:, row:row + 512, col:col + 512] = ds.read()
    return out, rasterio.Affine(res, 0, left, 0, -res, top)


def write(path: Path, data: np.ndarray, transform: rasterio.Affine, **opts) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": "uint8", "crs": "EPSG:2154", "transform": transform, **opts}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def make_inputs(root: Path, n: int, kind: str) -> Path:
    """The COG, the stack's dalles and a catalog naming both (COG and STACK)."""
    img, transform = zone_block(n)
    if not (root / "scene.tif").exists():
        cog = write(root / "scene.tif", img, transform, tiled=True, blockxsize=512, blockysize=512, compress="deflate")
        with rasterio.open(cog, "r+") as ds:
            ds.build_overviews([2, 4, 8], Resampling.average)
        write(root / "ndsm.tif", img[[4]], transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    suffix = ".jp2" if kind == "jp2" else ".tif"
    for layer, bands in (("rvb", [0, 1, 2]), ("irc", [3, 0, 1])):
        folder = root / kind / layer
        folder.mkdir(parents=True, exist_ok=True)
        for r in range(0, img.shape[1], DALLE_PX[1]):
            for c in range(0, img.shape[2], DALLE_PX[0]):
                part = np.ascontiguousarray(img[bands, r:r + DALLE_PX[1], c:c + DALLE_PX[0]])
                write(folder / f"{layer}_{r}_{c}{suffix}", part, transform @ rasterio.Affine.translation(c, r),
                      **OPTIONS[kind])
    cat = root / f"catalog_{kind}.toml"
    cat.write_text('data_root = "."\n\n[[dataset]]\nid = "COG"\npath = "scene.tif"\nrole = "image"\n\n'
                   f'[[stack]]\nid = "STACK"\nrgb = "{kind}/rvb"\nirc = "{kind}/irc"\nelevation = "ndsm.tif"\n',
                   encoding="utf-8")
    return cat


def bench_tiles(cat: Path, zooms: list[int]) -> dict[str, dict[str, float]]:
    """Every tile over the image at each zoom, once per dataset, alternating which goes first."""
    import morecantile
    from fastapi.testclient import TestClient
    from rasterio.warp import transform_bounds

    from flair_viz.core.catalog import Catalog
    from flair_viz.server.app import create_app

    path = Catalog.load(cat).get("COG").path
    with rasterio.open(path) as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = [t for z in zooms for t in tms.tiles(w, s, e, n, [z])]
    client = TestClient(create_app(cat), raise_server_exceptions=True)
    times: dict[str, list[float]] = {"STACK": [], "COG": []}
    for ds_id in ("STACK", "COG"):  # warm up: open both, import everything
        client.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{tiles[0].z}/{tiles[0].x}/{tiles[0].y}.png")
    for i, t in enumerate(tiles):
        for ds_id in (("STACK", "COG") if i % 2 else ("COG", "STACK")):
            t0 = time.perf_counter()
            r = client.get(f"/datasets/{ds_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png")
            times[ds_id].append(time.perf_counter() - t0)
            if r.status_code not in (200, 204, 404):
                raise SystemExit(f"{ds_id} {t} -> {r.status_code}: {r.text[:200]}")
    return {k: percentiles(v) | {"n": len(v)} for k, v in times.items()}


def bench_predict(cat: Path, model: str, engine: str, repeat: int, out: Path) -> dict[str, float]:
    """Median seconds of batch_predict of the whole stack and of the whole COG, runs alternating."""
    from distributed import Client, LocalCluster

    from flair_viz.core import scenes
    from flair_viz.core.catalog import Catalog
    from flair_viz.predict import batch

    catalog = Catalog.load(cat)
    found = {s.dataset_id: s for s in scenes.expand(["STACK", "COG"], catalog)}
    times: dict[str, list[float]] = {"STACK": [], "COG": []}
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        batch.batch_predict([found["COG"]], model, out / "warm", client, progress=False, mosaic=False,
                            engine=engine)  # the model loads once per worker: not in either timing
        for i in range(repeat):
            for ds_id in (("STACK", "COG") if i % 2 else ("COG", "STACK")):
                t0 = time.perf_counter()
                batch.batch_predict([found[ds_id]], model, out / f"{ds_id}_{i}", client, progress=False,
                                    mosaic=False, engine=engine)
                times[ds_id].append(time.perf_counter() - t0)
    with rasterio.open(out / "STACK_0" / "PRED_STACK.tif") as a, rasterio.open(out / "COG_0" / "PRED_COG.tif") as b:
        agree = float((a.read(1) == b.read(1)).mean())
    return {"stack_s": statistics.median(times["STACK"]), "cog_s": statistics.median(times["COG"]), "agree": agree}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=2, help="n: an n x n block of real 512 px patches (max 5)")
    ap.add_argument("--dalles", choices=("jp2", "gtiff", "both"), default="both")
    ap.add_argument("--zooms", default="17,18,19")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engine", default="torch")
    ap.add_argument("--model", default=None, help="model ID (default: the shipped default card)")
    ap.add_argument("--skip-predict", action="store_true")
    args = ap.parse_args()
    from flair_viz.predict import cards

    model = args.model or next(c.id for c in cards.list_cards() if c.default)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("FLAIR_VIZ_CACHE", str(root / "cache"))  # the stacks' VRTs: not the user's cache
        size = 512 * args.patches
        print(f"{size} x {size} px of real FLAIR-1 pixels (Z6_NU), dalles {DALLE_PX[0]} x {DALLE_PX[1]} px, "
              f"model {model}, engine {args.engine}")
        for kind in (("jp2", "gtiff") if args.dalles == "both" else (args.dalles,)):
            cat = make_inputs(root, args.patches, kind)
            tiles = bench_tiles(cat, [int(z) for z in args.zooms.split(",")])
            s, c = tiles["STACK"], tiles["COG"]
            print(f"[{kind} dalles] aerial tiles (n={s['n']} each, z {args.zooms}): stack p50 {s['p50']:.1f} ms "
                  f"p95 {s['p95']:.1f} ms | COG p50 {c['p50']:.1f} ms p95 {c['p95']:.1f} ms | "
                  f"p50 ratio {s['p50'] / c['p50']:.2f}x (goal <= 1.5x)")
            if args.skip_predict:
                continue
            p = bench_predict(cat, model, args.engine, args.repeat, root / f"pred_{kind}")
            print(f"[{kind} dalles] batch predict (median of {args.repeat}): stack {p['stack_s']:.1f} s | COG "
                  f"{p['cog_s']:.1f} s | ratio {p['stack_s'] / p['cog_s']:.2f}x (goal <= 1.2x); classes equal on "
                  f"{100 * p['agree']:.3f} % of pixels")


if __name__ == "__main__":
    main()
