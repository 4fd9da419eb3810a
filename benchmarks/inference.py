"""Issue 3 speed goals, measured side by side in one run with the full FLAIR U-Net ResNet34 (random weights).

    .venv/bin/python benchmarks/inference.py [--device cpu|cuda] [--batch-size 4] [--repeats 3]

Ratios (goal):
1. batch pipeline throughput / raw model forward throughput, same batch size   (>= 0.85)
   pipeline = flair_viz.predict.inference.predict_file on a GeoTIFF (read, normalise, forward, softmax,
   argmax, write, COG); raw = the bare module on random tensors of the same windows. Both count
   512 px windows per second, so the sliding window's overlap is not counted against the pipeline.
2. cold live-tile latency / raw forward of the same pixels                      (<= 1.3)
   a z18 prediction tile that is in no cache (model already loaded), through the FastAPI app,
   against one forward of the window that tile reads (tile + 2 x 128 px context).
3. warm cached prediction tile / plain titiler RGB tile                         (<= 1.2)
   median latency of a prediction tile already computed vs a titiler RGB tile of the same scene.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MEAN = [105.08, 110.87, 101.82, 106.38, 53.26]
STD = [52.17, 45.38, 44.00, 39.69, 79.30]
X0, Y0 = 961436.8, 6329262.4  # Lambert-93, where demo patch 000473 lies


def write_scene(path: Path, size: int, seed: int = 0) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, size // 16 + 1, size // 16 + 1), dtype=np.uint8)
    data = coarse.repeat(16, 1).repeat(16, 2)[:, :size, :size]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=5, dtype="uint8", crs="EPSG:2154",
                       transform=from_origin(X0, Y0, 0.2, 0.2), tiled=True, blockxsize=512, blockysize=512,
                       compress="LZW") as ds:
        ds.write(np.ascontiguousarray(data))
    return path


def write_model(folder: Path) -> str:
    """The FLAIR reference network (smp Unet, resnet34, 5 bands, 19 classes) with random weights."""
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    m = smp.create_model("Unet", encoder_name="resnet34", encoder_weights=None, in_channels=5, classes=19)
    torch.save(m.state_dict(), folder / "bench-unet-r34.pth")
    (folder / "bench-unet-r34.toml").write_text(
        'id = "bench-unet-r34"\ntitle = "FLAIR U-Net ResNet34, RANDOM weights (benchmark only)"\narch = "Unet"\n'
        f'encoder = "resnet34"\nin_bands = ["R", "G", "B", "NIR", "elevation"]\nmean = {MEAN}\nstd = {STD}\n'
        'classes = 19\nnomenclature = "flair1"\ncheckpoint = "bench-unet-r34.pth"\ndemo = true\n'
        'description = "random weights for timing"\n', encoding="utf-8")
    return "bench-unet-r34"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scene", type=int, default=1280, help="batch scene size in px (1280 = 16 windows)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="flair-viz-bench-"))
    (tmp / "models").mkdir()
    os.environ["FLAIR_VIZ_MODELS"] = str(tmp / "models")
    os.environ["FLAIR_VIZ_CACHE"] = str(tmp / "cache")
    os.environ["FLAIR_VIZ_DATA"] = str(tmp / "data")
    os.environ.setdefault("FLAIR_VIZ_ENGINE", "torch")  # the issue-3 ratios are the torch path; engines.py compares
    import morecantile
    import torch
    from fastapi.testclient import TestClient
    from rasterio.warp import transform_bounds

    from flair_viz.core import raster
    from flair_viz.predict import inference, live, models, viewport
    from flair_viz.predict import tiles as predict_tiles
    from flair_viz.server.app import create_app

    if (args.device or "cpu") == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    model_id = write_model(tmp / "models")
    loaded = models.load_model(model_id, args.device, "torch")  # its ratios are about the torch pipeline
    dev, net, amp = loaded.device, loaded.runner.module, loaded.runner.autocast_dtype  # the torch runner's
    print(f"device: {models.device_name(args.device)}; torch threads {torch.get_num_threads()}; "
          f"{os.cpu_count()} CPUs; model {model_id} (smp Unet resnet34, 5 in, 19 classes, random weights)")

    # 1. batch pipeline vs raw forward ---------------------------------------------------------
    scene = write_scene(tmp / "scene.tif", args.scene)
    n_windows = len(inference.tiles_for(args.scene, args.scene))
    bs = args.batch_size
    x = torch.randn(bs, 5, 512, 512)

    def raw_forward() -> None:
        with torch.inference_mode():
            for _ in range(-(-n_windows // bs)):
                xb = x.to(dev)
                if dev.type == "cuda":
                    xb = xb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cuda", dtype=amp):
                        net(xb)
                    torch.cuda.synchronize()
                else:
                    net(xb)

    def pipeline() -> None:
        inference.predict_file(loaded, scene, tmp / "pred.tif", batch_size=bs, progress=False)

    raw_forward()  # warm-up (allocators, cuDNN autotune)
    raw_t, pipe_t = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        raw_t += timed(raw_forward, 1)
        pipe_t += timed(pipeline, 1)
    raw_tp = n_windows / statistics.median(raw_t)
    pipe_tp = n_windows / statistics.median(pipe_t)
    r1 = pipe_tp / raw_tp

    # 2 + 3. tiles ------------------------------------------------------------------------------
    tiles_scene = write_scene(tmp / "tiles.tif", 2048, seed=1)
    (tmp / "catalog.toml").write_text('data_root = "."\n[[dataset]]\nid = "BENCH"\npath = "tiles.tif"\n'
                                      'role = "image"\nbands = ["R", "G", "B", "NIR", "elevation"]\n')
    client = TestClient(create_app(tmp / "catalog.toml"))
    info = raster.describe(tiles_scene)
    w, s, e, n = transform_bounds(info.crs, "EPSG:4326", *info.bounds)
    tms = morecantile.tms.get("WebMercatorQuad")
    z = 18
    tiles = [t for t in tms.tiles(w, s, e, n, [z])]
    inner = [t for t in tiles if all(
        b >= lo for b, lo in zip(transform_bounds("EPSG:3857", info.crs, *tms.xy_bounds(t))[:2], info.bounds[:2]))
        and all(b <= hi for b, hi in zip(transform_bounds("EPSG:3857", info.crs, *tms.xy_bounds(t))[2:],
                                         info.bounds[2:]))]
    tiles = inner or tiles

    def url(t, kind: str = "pred") -> str:
        if kind == "pred":
            return f"/datasets/BENCH/predict/{model_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
        return f"/datasets/BENCH/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?preset=rgb"

    assert client.get(url(tiles[0])).status_code == 200  # loads model, warms everything once
    cold, raw_tile = [], []
    for t in (tiles * 3)[1:1 + args.repeats]:
        live.RESULTS.clear()  # a fresh server: no tile in memory
        predict_tiles.PNGS.clear()
        for f in (tmp / "cache").rglob("*.npz"):
            f.unlink()
        geometry = live._tile_geometry(info, "WebMercatorQuad", t.z, t.x, t.y)
        r0, c0, r1, c1 = viewport.inner_window(info, geometry.src_bounds)
        h, w = viewport._padded(r1 - r0), viewport._padded(c1 - c0)  # what a lone tile's region runs on
        xt = torch.randn(1, 5, h, w)

        def raw_tile_forward() -> None:
            with torch.inference_mode():
                xb = xt.to(dev)
                if dev.type == "cuda":
                    with torch.autocast("cuda", dtype=amp):
                        net(xb.contiguous(memory_format=torch.channels_last))
                    torch.cuda.synchronize()
                else:
                    net(xb)

        raw_tile += timed(raw_tile_forward, 1)
        t0 = time.perf_counter()
        assert client.get(url(t)).status_code == 200
        cold.append(time.perf_counter() - t0)
    r2 = statistics.median(cold) / statistics.median(raw_tile)

    t = tiles[0]
    client.get(url(t, "rgb"))
    warm_pred, rgb = [], []
    for _ in range(40):
        t0 = time.perf_counter()
        assert client.get(url(t)).status_code == 200
        warm_pred.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert client.get(url(t, "rgb")).status_code == 200
        rgb.append(time.perf_counter() - t0)
    r3 = statistics.median(warm_pred) / statistics.median(rgb)

    print(f"\nbatch scene {args.scene}x{args.scene} px = {n_windows} windows of 512 px, batch size {bs}, "
          f"median of {args.repeats}")
    print(f"  raw forward      {raw_tp:6.2f} windows/s")
    print(f"  batch pipeline   {pipe_tp:6.2f} windows/s (predict_file, incl. read/softmax/write/COG)")
    print(f"z{z} live tile: window {w}x{h} px (tile + 2x{viewport.CONTEXT_PX} px context)")
    print(f"  raw forward      {statistics.median(raw_tile) * 1000:8.1f} ms")
    print(f"  cold tile        {statistics.median(cold) * 1000:8.1f} ms (HTTP via TestClient, no cache)")
    print(f"  warm cached tile {statistics.median(warm_pred) * 1000:8.2f} ms; titiler RGB tile "
          f"{statistics.median(rgb) * 1000:8.2f} ms (median of 40)")
    print("\nratio                                                     value   goal")
    for name, v, goal, ok in (
        ("batch pipeline / raw forward throughput (same batch)", r1, ">= 0.85", r1 >= 0.85),
        ("cold live tile / raw forward of the same pixels", r2, "<= 1.3", r2 <= 1.3),
        ("warm cached prediction tile / titiler RGB tile", r3, "<= 1.2", r3 <= 1.2),
    ):
        print(f"  {name:<55} {v:6.3f}  {goal}  {'ok' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
