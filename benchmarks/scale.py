"""Batch prediction throughput on Dask: 1 worker versus 2 workers on the same scenes, as a ratio.

    .venv/bin/python benchmarks/scale.py [--scenes 8] [--model demo-unet-r18] [--rounds 3]

Scenes are demo-size (512 × 512, 5 bands) copies of the four real demo patches (mirrored for the
copies), laid side by side. Each cluster is started and warmed first (one scene, so torch is imported
and the model loaded on every worker), then timed on all scenes into a fresh folder; rounds alternate
1 and 2 workers so machine noise hits both. A plain loop in a fresh process without Dask (torch on every core) is timed
too, to show what Dask's process-per-worker costs or gains against no Dask at all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flair_viz.core import jobs as batch  # noqa: E402
from flair_viz.core import scenes  # noqa: E402
from flair_viz.predict import batch as predict_batch  # noqa: E402
from flair_viz.predict import cards, inference, models  # noqa: E402


def make_scenes(folder: Path, n: int) -> list[scenes.Scene]:
    srcs = sorted((REPO / "data/demo/flair").glob("**/img/IMG_*.tif"))
    for i in range(n):
        with rasterio.open(srcs[i % len(srcs)]) as ds:
            data, crs, left, top = ds.read(), ds.crs, ds.bounds.left, ds.bounds.top
        if (i // len(srcs)) % 2:
            data = data[:, :, ::-1]
        prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint8",
                    crs=crs, transform=from_origin(left + 120.0 * i, top, 0.2, 0.2), tiled=True,
                    blockxsize=256, blockysize=256)
        path = folder / "D000_2021" / "Z1_XX" / "img" / f"IMG_{i:06d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
    return scenes.expand([str(folder)])


def timed_job(client, found, card, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = predict_batch.batch_predict(found, card, out, client, progress=False, mosaic=True)
    dt = time.perf_counter() - t0
    assert len(res.computed) == len(found)
    return dt


def plain_loop(folder: Path, model: str, out: Path) -> float:
    """The no-Dask baseline, in a fresh process (no scheduler or nanny threads beside it), torch on all cores."""
    import subprocess

    cmd = [sys.executable, __file__, "--loop-only", str(folder), str(out), "--model", model]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def loop_only(folder: Path, model: str, out: Path) -> None:
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    found = scenes.expand([str(folder)])
    loaded = models.load_model(cards.get_card(model), "cpu")
    inference.predict_file(loaded, found[0].path, out / "warm.tif", progress=False)  # warm-up, like the clusters
    t0 = time.perf_counter()
    for s in found:
        inference.predict_file(loaded, s.path, out / f"PRED_{s.name}.tif", progress=False)
    print(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--model", default="demo-unet-r18")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-only", nargs=2, metavar=("SCENES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loop_only:
        return loop_only(Path(args.loop_only[0]), args.model, Path(args.loop_only[1]))
    card = cards.get_card(args.model)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="flair-scale-") as tmp:
        tmp = Path(tmp)
        found = make_scenes(tmp / "scenes", args.scenes)
        warm = make_scenes(tmp / "warm", 1)
        clients = {}
        for n in (1, 2):
            t0 = time.perf_counter()
            clients[n] = batch.get_client(workers=n)
            start = time.perf_counter() - t0
            predict_batch.batch_predict(warm * 1, card, tmp / f"warm{n}", clients[n], progress=False, mosaic=False)
            # the one warm scene went to one worker; give every worker its model too
            clients[n].run(lambda c=card: models.load_model(c, "cpu") and None)
            print(f"{n} worker(s): cluster start {start:.1f} s", file=sys.stderr)
        times: dict[int, list[float]] = {1: [], 2: []}
        loop: list[float] = []
        for r in range(args.rounds):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                times[n].append(timed_job(clients[n], found, card, tmp / f"out{n}"))
                print(f"round {r + 1}: {n} worker(s) {times[n][-1]:.2f} s", file=sys.stderr)
            (tmp / "loop").mkdir(exist_ok=True)
            loop.append(plain_loop(tmp / "scenes", args.model, tmp / "loop"))
            print(f"round {r + 1}: plain process loop {loop[-1]:.2f} s", file=sys.stderr)
        for c in clients.values():
            batch.close_client(c)
        # same classes whatever the number of workers (the point of the tests, checked here too)
        for s in found:
            with rasterio.open(tmp / "out1" / f"PRED_{s.name}.tif") as a, \
                    rasterio.open(tmp / "out2" / f"PRED_{s.name}.tif") as b:
                assert np.array_equal(a.read(1), b.read(1)), s.name
    n = args.scenes
    print(f"model {card.id}, {n} scenes of 512x512x5, {args.rounds} interleaved round(s); "
          f"load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f}")
    for label, pick in (("median", statistics.median), ("best", min)):
        t1, t2, tl = pick(times[1]), pick(times[2]), pick(loop)
        print(f"[{label}] plain process loop (torch on all cores): {tl:6.2f} s  {n / tl:5.2f} scenes/s")
        print(f"[{label}] Dask 1 worker:                           {t1:6.2f} s  {n / t1:5.2f} scenes/s")
        print(f"[{label}] Dask 2 workers:                          {t2:6.2f} s  {n / t2:5.2f} scenes/s")
        print(f"[{label}] throughput ratio 2 workers / 1 worker: {t1 / t2:.2f}x; "
              f"2 workers / plain process loop: {tl / t2:.2f}x")

if __name__ == "__main__":
    main()
