"""Bounded load on a real ``flair-viz serve``: concurrent clients mixing aerial, ground-truth,
live-prediction and change tiles over the demo scenes, on loopback only.

Each client sends its share of requests drawn from the tiles that cover the demo patches at the
chosen zooms (so every answer must be a 200 PNG), then the server is stopped. Reports errors,
latency p50/p95/p99, tiles/s, and the server's RSS at start, peak and end (sampled with psutil).
The run stops by itself: after the requests, or after ``--max-seconds``.

Usage: python benchmarks/load.py [--clients 8] [--requests 500] [--zooms 17,18,19,20] [--json OUT]
The server starts with an empty prediction cache (``--warm`` keeps the user's), so the first live
prediction tiles of each scene are computed during the run, as in a demo's first minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import morecantile
import numpy as np
import psutil
import rasterio
import shapely
from pyproj import Transformer
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RssSampler, free_port, python, start  # noqa: E402

sys.path.insert(0, str(REPO))
from flair_viz import change  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402

DEMO_CATALOG = REPO / "data" / "demo" / "catalog.toml"
DEMO_MODEL = "demo-unet-r18"
KINDS = ("aerial", "truth", "prediction", "change")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TMS = morecantile.tms.get("WebMercatorQuad")


def _tiles_inside(path: Path, zooms: list[int], margin_m: float = 2.0) -> list[morecantile.Tile]:
    """Tiles whose footprint overlaps the raster by more than ``margin_m`` in its own CRS.

    The lon/lat envelope of a Lambert-93 rectangle is larger than the rectangle itself, so a tile
    picked from the envelope alone can miss the data and (rightly) answer 404.
    """
    with rasterio.open(path) as ds:
        crs, b = ds.crs, ds.bounds
    data = shapely.box(b.left + margin_m, b.bottom + margin_m, b.right - margin_m, b.top - margin_m)
    to_native = Transformer.from_crs("EPSG:3857", crs, always_xy=True)
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *b)
    out = []
    for t in TMS.tiles(w, s, e, n, zooms):
        xb = TMS.xy_bounds(t)
        tile = shapely.transform(shapely.box(xb.left, xb.bottom, xb.right, xb.top).segmentize(5.0),
                                 lambda xy: np.column_stack(to_native.transform(xy[:, 0], xy[:, 1])))
        if tile.intersects(data):
            out.append(t)
    return out


def tile_plan(catalog: Catalog, zooms: list[int], model: str = DEMO_MODEL) -> dict[str, list[str]]:
    """Tile paths per kind over every demo patch that has an aerial image and a ground truth."""
    plan: dict[str, list[str]] = {k: [] for k in KINDS}
    pairs: dict[str, change.Pair] = {}
    for pair in change.list_pairs(catalog):  # the first (registered) pair of each patch
        pairs.setdefault(pair.before.patch, pair)
    for img in catalog.by_role("image"):
        truth = catalog.truth_of(img)
        if truth is None:
            continue
        for t in _tiles_inside(img.path, zooms):
            zxy = f"{t.z}/{t.x}/{t.y}"
            plan["aerial"].append(f"/datasets/{img.id}/tiles/WebMercatorQuad/{zxy}.png?preset=rgb")
            plan["truth"].append(f"/datasets/{truth.id}/tiles/WebMercatorQuad/{zxy}.png")
            plan["prediction"].append(f"/datasets/{img.id}/predict/{model}/tiles/WebMercatorQuad/{zxy}.png")
            pair = pairs.get(img.patch)
            if pair is not None:
                plan["change"].append(f"/change/{pair.before.id}/{pair.after.id}/tiles/WebMercatorQuad/{zxy}.png"
                                      "?mode=flow")
    missing = [k for k, v in plan.items() if not v]
    if missing:
        raise SystemExit(f"the catalog gives no {', '.join(missing)} tiles to request")
    return plan


def png_size(body: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None if ``body`` is not a PNG."""
    if not body.startswith(PNG_MAGIC) or len(body) < 24:
        return None
    return int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")


def run_load(base_url: str, plan: dict[str, list[str]], clients: int, requests: int, seed: int,
             max_seconds: float) -> dict:
    """``clients`` threads, each sending ``requests`` tiles (kinds in turn, tiles shuffled); a 256 px PNG or an error.

    Every request is kept in ``samples`` (client, kind, path, status, ms, PNG size, problem), so the summary
    figures can be checked against the raw record.
    """
    results: list[dict] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        local = []
        with httpx.Client(base_url=base_url, timeout=120) as http:
            for n in range(requests):
                if time.monotonic() > deadline:
                    local.append(dict(client=i, kind="timeout", path="", status=0, ms=0.0, png=None,
                                      problem="run stopped at --max-seconds"))
                    break
                kind = KINDS[(n + i) % len(KINDS)]
                path = rng.choice(plan[kind])
                t0 = time.perf_counter()
                try:
                    r = http.get(path)
                    ms = (time.perf_counter() - t0) * 1000
                    size = png_size(r.content)
                    ok = r.status_code == 200 and size == (256, 256)
                    local.append(dict(client=i, kind=kind, path=path, status=r.status_code, ms=ms, png=size,
                                      problem="" if ok else f"{path} -> {r.status_code} {size} {r.text[:160]}"))
                except httpx.HTTPError as exc:
                    local.append(dict(client=i, kind=kind, path=path, status=0, ms=(time.perf_counter() - t0) * 1000,
                                      png=None, problem=f"{path} -> {type(exc).__name__}: {exc}"))
        with lock:
            results.extend(local)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array([r["ms"] for r in results if not r["problem"]])
    errors = [r["problem"] for r in results if r["problem"]]
    per_kind = {k: sum(1 for r in results if r["kind"] == k and not r["problem"]) for k in KINDS}
    pct = {f"p{q}_ms": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in (50, 95, 99)}
    return {"requests": len(results), "ok": int(len(lat)), "errors": len(errors), "error_samples": errors[:5],
            "per_kind_ok": per_kind, "wall_s": wall, "tiles_per_s": len(lat) / wall if wall else 0.0, **pct,
            "samples": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=500, help="requests per client")
    ap.add_argument("--zooms", default="17,18,19,20")
    ap.add_argument("--catalog", default=str(DEMO_CATALOG))
    ap.add_argument("--seed", type=int, default=2154)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--warm", action="store_true", help="keep the user's prediction cache instead of an empty one")
    ap.add_argument("--engine-cache", metavar="DIR", help="keep the exported/compiled engines here between runs (the "
                    "prediction cache stays empty): a server's steady state, without its one-off engine builds")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--engine", help="the server's engine (flair-viz serve --engine): auto, torch, onnx, onnx-int8")
    args = ap.parse_args()
    zooms = [int(z) for z in args.zooms.split(",")]
    plan = tile_plan(Catalog.load(args.catalog), zooms)

    with tempfile.TemporaryDirectory(prefix="flair-viz-load-") as tmp:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        if not args.warm:
            env |= {"FLAIR_VIZ_DATA": str(Path(tmp) / "data"), "FLAIR_VIZ_CACHE": str(Path(tmp) / "cache")}
            if args.engine_cache:
                Path(args.engine_cache).mkdir(parents=True, exist_ok=True)
                (Path(tmp) / "cache").mkdir()
                (Path(tmp) / "cache" / "onnx").symlink_to(Path(args.engine_cache).resolve())
        port = free_port()
        base = f"http://127.0.0.1:{port}"  # loopback only, always
        engine = ["--engine", args.engine] if args.engine else []
        boot: list[RssSampler] = []  # from the spawn to the first answer: a first start exports engines then

        def sample_boot(proc) -> None:
            boot.append(RssSampler(proc.pid))
            boot[0].start()

        server = start([python(), "-m", "flair_viz", "serve", "--port", str(port), "--catalog", args.catalog, *engine],
                       f"{base}/healthz", env={**env, "FLAIR_VIZ_TOKEN": ""}, timeout=180, spawned=sample_boot)
        boot[0].stop()
        sampler = RssSampler(server.pid)
        try:
            rss_start = sampler.rss()
            sampler.start()
            res = run_load(base, plan, args.clients, args.requests, args.seed, args.max_seconds)
            sampler.stop()
            rss_end = sampler.rss()
        finally:
            server.terminate()
            try:
                server.wait(15)
            except Exception:
                server.kill()
    mb = 1 / 2**20
    # bounded, not leaking: the second half of the run should not climb above the first half's peak by much
    t_mid = (sampler.samples[0][0] + sampler.samples[-1][0]) / 2 if sampler.samples else 0.0
    first = [b for t, b in sampler.samples if t <= t_mid] or [rss_start]
    second = [b for t, b in sampler.samples if t > t_mid] or [rss_end]
    res |= {"clients": args.clients, "requests_per_client": args.requests, "zooms": zooms,
            "unique_tiles": {k: len(set(v)) for k, v in plan.items()},
            "engine": args.engine or os.environ.get("FLAIR_VIZ_ENGINE") or "auto",
            "ort_arena": os.environ.get("FLAIR_VIZ_ORT_ARENA", "0"), "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "cache": "warm" if args.warm else "empty at start",
            "engine_cache": args.engine_cache,
            "rss_boot_peak_mb": max([b for _, b in boot[0].samples] + [0]) * mb,
            "boot_s": (boot[0].samples[-1][0] - boot[0].samples[0][0]) if boot[0].samples else 0.0,
            "rss_start_mb": rss_start * mb, "rss_peak_mb": max(first + second + [rss_start, rss_end]) * mb,
            "rss_peak_first_half_mb": max(first) * mb, "rss_peak_second_half_mb": max(second) * mb,
            "rss_end_mb": rss_end * mb, "rss_samples_mb": [b * mb for _, b in sampler.samples], "machine": f"{psutil.cpu_count()} CPU(s), {psutil.virtual_memory().total * mb / 1024:.0f} GiB"}
    print(f"{res['clients']} clients x {res['requests_per_client']} requests, z{min(zooms)}-z{max(zooms)}, "
          f"tiles per kind (unique): {res['unique_tiles']}, prediction cache {res['cache']}, {res['machine']}, "
          f"engine {res['engine']}, ORT arena {res['ort_arena']}, MALLOC_ARENA_MAX {res['malloc_arena_max']}")
    print(f"requests {res['requests']}  ok {res['ok']}  errors {res['errors']}  ok per kind {res['per_kind_ok']}")
    print(f"latency p50 {res['p50_ms']:.1f} ms  p95 {res['p95_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  "
          f"throughput {res['tiles_per_s']:.1f} tiles/s over {res['wall_s']:.1f} s")
    print(f"server RSS start {res['rss_start_mb']:.0f} MB  peak {res['rss_peak_mb']:.0f} MB (first half of the run "
          f"{res['rss_peak_first_half_mb']:.0f} MB, second half {res['rss_peak_second_half_mb']:.0f} MB)  "
          f"end {res['rss_end_mb']:.0f} MB; before serving (start-up, {res['boot_s']:.1f} s) peak "
          f"{res['rss_boot_peak_mb']:.0f} MB")
    for e in res["error_samples"]:
        print(f"error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    if res["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
