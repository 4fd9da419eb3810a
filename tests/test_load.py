"""The short version of ``benchmarks/load.py``: 4 clients x 40 tiles on a real server, on loopback.

Every requested tile overlaps the demo data, so every answer must be a 200 PNG of 256 px; the four
kinds (aerial, ground truth, live prediction, change) are mixed. The summary the benchmark prints is
recomputed here from its raw per-request record with the standard library (no timing thresholds: speed lives
in benchmarks).
Memory must stay bounded: the server starts without torch (fast start), so the first prediction tile
alone adds ~0.65 GB of torch/timm libraries and the demo model; the bound below leaves room for that
plus the batches in flight.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections import Counter

import morecantile
import rasterio
from rasterio.warp import transform as warp_transform

from flair_viz.core.catalog import Catalog
from tests.helpers import DEMO_CATALOG, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import load  # noqa: E402

MAX_GROWTH_MB = 2500
CLIENTS, REQUESTS = 4, 40


def test_tile_plan_only_holds_tiles_over_the_data():
    """Independent check at z17 (a tile is larger than a 102 m patch): each planned tile holds a point of the patch."""
    cat = Catalog.load(DEMO_CATALOG)
    plan = load.tile_plan(cat, [17])
    assert set(plan) == set(load.KINDS) and all(plan.values())
    tms = morecantile.tms.get("WebMercatorQuad")
    for path in plan["aerial"]:
        ds_id = path.split("/")[2]
        z, x, y = (int(v) for v in path.split("/tiles/WebMercatorQuad/")[1].split(".png")[0].split("/"))
        with rasterio.open(cat.get(ds_id).path) as ds:
            fx = [ds.bounds.left + f * (ds.bounds.right - ds.bounds.left) for f in (0.05, 0.5, 0.95)]
            fy = [ds.bounds.bottom + f * (ds.bounds.top - ds.bounds.bottom) for f in (0.05, 0.5, 0.95)]
            lons, lats = warp_transform(ds.crs, "EPSG:4326", [a for a in fx for _ in fy], [b for _ in fx for b in fy])
        assert (x, y) in {(t.x, t.y) for t in (tms.tile(lon, lat, z) for lon, lat in zip(lons, lats))}, path
    for kind in ("truth", "prediction"):
        assert len(plan[kind]) == len(plan["aerial"])
    aerial_zxy = {p.split("/tiles/WebMercatorQuad/")[1].split(".png")[0] for p in plan["aerial"]}
    assert all(p.split("/tiles/WebMercatorQuad/")[1].split(".png")[0] in aerial_zxy for p in plan["change"])
    assert len(plan["change"]) <= len(plan["aerial"])  # only patches with two vintages have change tiles


def test_short_load_has_no_errors_and_bounded_memory(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "load.py"), "--clients", str(CLIENTS),
                           "--requests", str(REQUESTS), "--json", str(out), "--max-seconds", "240",
                           # auto's fp32 CPU engine (auto moves to bf16 once that qualifies: benchmarks)
                           "--engine", "openvino"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    samples = res["samples"]
    # every tile requested was served: one record per request, each a 200 PNG of 256 x 256 px
    assert len(samples) == CLIENTS * REQUESTS, res["error_samples"]
    assert Counter(s["client"] for s in samples) == {i: REQUESTS for i in range(CLIENTS)}
    bad = [s for s in samples if s["status"] != 200 or s["png"] != [256, 256] or s["problem"]]
    assert not bad, bad[:3]
    # each client sends the four kinds in turn, each from that kind's plan
    plan = load.tile_plan(Catalog.load(DEMO_CATALOG), [int(z) for z in res["zooms"]])
    assert all(s["path"] in plan[s["kind"]] for s in samples)
    assert Counter(s["kind"] for s in samples) == {k: CLIENTS * REQUESTS // len(load.KINDS) for k in load.KINDS}
    # the summary is the raw record's
    assert res["requests"] == res["ok"] == len(samples) and res["errors"] == 0
    assert res["per_kind_ok"] == dict(Counter(s["kind"] for s in samples))
    ms = [s["ms"] for s in samples]
    assert all(m > 0 for m in ms)
    # the benchmark uses numpy; the standard library's "inclusive" quantiles are the same definition
    # (linear between closest ranks), computed independently
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    assert math.isclose(res["p50_ms"], statistics.median(ms), rel_tol=1e-9)
    for q in (50, 95, 99):
        assert math.isclose(res[f"p{q}_ms"], cuts[q - 1], rel_tol=1e-9), q
    assert math.isclose(res["tiles_per_s"], len(samples) / res["wall_s"], rel_tol=1e-9)
    assert res["wall_s"] >= max(ms) / 1000  # the run lasts at least as long as its slowest request
    # memory: the reported figures are the sampled ones, and growth stays bounded
    rss = res["rss_samples_mb"]
    assert rss and res["rss_start_mb"] > 0
    assert math.isclose(res["rss_peak_mb"], max(rss + [res["rss_start_mb"], res["rss_end_mb"]]), rel_tol=1e-9)
    assert res["rss_peak_mb"] - res["rss_start_mb"] < MAX_GROWTH_MB, {k: v for k, v in res.items() if k != "samples"}
