"""A live viewport of z18 tiles, cold: one region (tiles requested together) vs the same tiles one by one.

    .venv/bin/python benchmarks/viewport.py [--cols 4 --rows 3] [--engine auto] [--model full|demo]

Every side goes through ``flair_viz.predict.live.prediction`` with every result cache empty and the model
loaded: "separate" asks for the tiles one after the other with the batcher's gathering off (each is its own
region: its pixels plus a 128 px margin on every side, as a lone tile always was); "at once" asks for all
of them from as many threads as tiles, so the region batcher gathers them into one region; "browser" asks
as Chromium does, nearest the centre first over at most 6 connections, without and with the ``viewport=``
range that Explore's tile URLs carry (with it, the first request queues the whole viewport as one region). Each side first runs once on the viewport just north of the measured one (other pixels, same
input shapes): an engine's one-off costs per input shape (OpenVINO plans each new shape once, seconds for a
big chunk) belong to a server's first minutes, not to every viewport. Reports seconds, input megapixels the
model saw, the ratio, the class agreement between the two (context differs at the tile seams, nothing
else), and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def setup(tmp: Path, model: str) -> tuple[str, object]:
    """(model id, Dataset): the full random-weight ResNet34 or the demo model, on a real-pixel 3072² COG."""
    from _common import make_cog  # noqa: E402

    from flair_viz.core.catalog import Dataset

    (tmp / "models").mkdir(exist_ok=True)
    os.environ["FLAIR_VIZ_MODELS"] = str(tmp / "models")
    os.environ["FLAIR_VIZ_CACHE"] = str(tmp / "cache")
    os.environ["FLAIR_VIZ_DATA"] = str(tmp / "data")
    if model == "full":
        from inference import write_model

        model_id = write_model(tmp / "models")
    else:
        model_id = "demo-unet-r18"
    path = make_cog(tmp / "scene.tif", 5120)  # room for the measured viewport and a warm-up one north of it
    return model_id, Dataset(id="SCENE", path=path, role="image", bands=("R", "G", "B", "NIR", "elevation"))


def viewport_tiles(ds, cols: int, rows: int, z: int = 18, north: int = 0):
    import morecantile
    from rasterio.warp import transform_bounds

    from flair_viz.core import raster

    info = raster.describe(ds.path)
    w, s, e, n = transform_bounds(info.crs, "EPSG:4326", *info.bounds)
    t = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, z)
    y0 = t.y - rows // 2 - north * rows
    return [morecantile.Tile(t.x - cols // 2 + i, y0 + j, z) for j in range(rows) for i in range(cols)]


def run(model_id: str, ds, cols: int, rows: int, engine: str) -> dict:
    from flair_viz.predict import engines, inference, live, models, viewport
    from flair_viz.predict import tiles as predict_tiles

    if engine == engines.AUTO:  # measure the reduced-precision engines first, as auto's background build would
        ref = models.load_model(model_id, "cpu", "torch")
        for name in engines.reduced_wanted(ref.card, ref.checksum):
            models.load_model(model_id, "cpu", name)
    os.environ["FLAIR_VIZ_INT8_BUILD"] = "0"  # no background build while timing
    os.environ["FLAIR_VIZ_ENGINE"] = engine
    loaded = models.load_model(model_id)
    tiles = viewport_tiles(ds, cols, rows)
    seen: list[int] = []
    real = inference.Forward.stats  # what a live region calls

    def counting(self, batch):
        seen.append(int(np.prod(batch.shape[2:])) * len(batch))
        return real(self, batch)

    inference.Forward.stats = counting

    def cold() -> None:
        live.RESULTS.clear()  # a fresh server: no tile in memory
        predict_tiles.PNGS.clear()
        for p in (Path(os.environ["FLAIR_VIZ_CACHE"]) / "predict-tiles").glob("**/*.npz"):
            p.unlink()
        seen.clear()

    def one_by_one(tiles_):
        wait, viewport.REGIONS.max_wait_s = viewport.REGIONS.max_wait_s, 0.0  # lone tiles: nothing to gather
        try:
            return [live.prediction(ds, model_id, tl.z, tl.x, tl.y) for tl in tiles_]
        finally:
            viewport.REGIONS.max_wait_s = wait

    def together(tiles_):
        with ThreadPoolExecutor(len(tiles_)) as pool:
            return list(pool.map(lambda tl: live.prediction(ds, model_id, tl.z, tl.x, tl.y), tiles_))

    def browser(hint: bool):
        """As Chromium loads a Leaflet layer: nearest the centre first, at most 6 connections to a host,
        each tile URL carrying the shown range (``viewport=``, what Explore's maps add) or not."""
        def run_(tiles_):
            cx, cy = np.mean([t.x for t in tiles_]), np.mean([t.y for t in tiles_])
            order = sorted(tiles_, key=lambda t: (t.x - cx) ** 2 + (t.y - cy) ** 2)
            shown = (min(t.x for t in tiles_), min(t.y for t in tiles_), max(t.x for t in tiles_), max(t.y for t in tiles_))
            with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
                got = dict(zip(order, pool.map(lambda tl: live.prediction(
                    ds, model_id, tl.z, tl.x, tl.y, viewport_hint=shown if hint else None), order)))
            return [got[t] for t in tiles_]
        return run_

    warm = viewport_tiles(ds, cols, rows, north=1)
    out, regions = {}, {}
    for name, fn in (("separate", one_by_one), ("viewport", together), ("browser", browser(False)),
                     ("browser_hint", browser(True))):
        fn(warm)  # the engine's per-shape first-call costs, on other pixels
        cold()
        viewport.REGIONS.regions.clear()  # it keeps the last few hundred regions only: count this run's alone
        t = time.perf_counter()
        out[name] = (fn(tiles), time.perf_counter() - t, sum(seen))
        regions[name] = list(viewport.REGIONS.regions)
    inference.Forward.stats = real
    separate = out["separate"][0]
    valid = np.stack([a.classes > 0 for a in separate])
    res = {"engine": loaded.engine, "tiles": len(tiles), "separate_s": out["separate"][1],
           "separate_mpx": out["separate"][2] / 1e6,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for name in ("viewport", "browser", "browser_hint"):
        got, secs, px = out[name]
        res[name] = {"s": secs, "ratio": out["separate"][1] / secs, "mpx": px / 1e6, "regions": regions[name],
                     "agreement": float(np.stack([a.classes == b.classes for a, b in zip(separate, got)])[valid].mean())}
    return res


BROWSER_CONNECTIONS = 6  # Chromium's (and Firefox's) limit of HTTP/1.1 connections per host


def report(r: dict) -> None:
    print(f"viewport {r['tiles']} z18 tiles, cold, {r['engine']} engine: separate {r['separate_s']:.1f} s "
          f"({r['separate_mpx']:.2f} Mpx into the model), peak RSS {r['peak_rss_mb']:.0f} MB")
    labels = {"viewport": f"{r['tiles']} requests at once", "browser": "browser, 6 connections, no hint",
              "browser_hint": "browser, 6 connections, viewport= hint"}
    for name, label in labels.items():
        v = r[name]
        print(f"  {label:38s} {v['s']:.1f} s ({v['mpx']:.2f} Mpx) | ratio {v['ratio']:.2f}x (goal >= 1.5x) | "
              f"regions {v['regions']} | same classes as separate {100 * v['agreement']:.2f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--engine", default="auto", help="auto (the default, as the server), torch, onnx, openvino, ...")
    ap.add_argument("--model", choices=("full", "demo"), default="full")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="flair-viz-viewport-") as tmp:
        model_id, ds = setup(Path(tmp), args.model)
        report(run(model_id, ds, args.cols, args.rows, args.engine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
