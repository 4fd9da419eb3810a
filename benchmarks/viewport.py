"""A live viewport of z18 tiles, cold: one region (tiles requested together) vs the same tiles one by one.

    .venv/bin/python benchmarks/viewport.py [--cols 4 --rows 3] [--engine auto] [--model full|demo]

Both sides go through ``flair_viz.predict.live.prediction`` with every result cache empty and the model
loaded: "separate" asks for the tiles one after the other with the batcher's gathering off (each is its own
region: its pixels plus a 128 px margin on every side, as a lone tile always was), "viewport" asks for all
of them at once from as many threads as tiles, as a map does, so the region batcher predicts them as one
region. Each side first runs once on the viewport just north of the measured one (other pixels, same
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
        predict_tiles.clear_caches()
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

    warm = viewport_tiles(ds, cols, rows, north=1)
    out = {}
    for name, fn in (("separate", one_by_one), ("viewport", together)):
        fn(warm)  # the engine's per-shape first-call costs, on other pixels
        cold()
        t = time.perf_counter()
        out[name] = (fn(tiles), time.perf_counter() - t, sum(seen))
    (separate, t_sep, px_sep), (together_, t_vp, px_vp) = out["separate"], out["viewport"]
    inference.Forward.stats = real
    valid = np.stack([a.classes > 0 for a in separate])
    same = np.stack([a.classes == b.classes for a, b in zip(separate, together_)])[valid].mean()
    return {"engine": loaded.engine, "tiles": len(tiles), "separate_s": t_sep, "viewport_s": t_vp,
            "ratio": t_sep / t_vp, "separate_mpx": px_sep / 1e6, "viewport_mpx": px_vp / 1e6,
            "regions": viewport.REGIONS.regions[-3:], "agreement": float(same),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report(r: dict) -> None:
    print(f"viewport {r['tiles']} z18 tiles, cold, {r['engine']} engine: separate {r['separate_s']:.1f} s "
          f"({r['separate_mpx']:.2f} Mpx into the model) | one region {r['viewport_s']:.1f} s "
          f"({r['viewport_mpx']:.2f} Mpx) | ratio {r['ratio']:.2f}x (goal >= 1.5x) | same classes "
          f"{100 * r['agreement']:.2f} % | regions {r['regions']} | peak RSS {r['peak_rss_mb']:.0f} MB")


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
