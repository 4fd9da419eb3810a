"""Shared benchmark helpers: a realistic COG built from real demo pixels, and loopback servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parent.parent
DEMO_IMG = REPO / "data/demo/flair/D004_2021/Z6_NU/img/IMG_000473.tif"


def make_cog(path: Path, size: int = 4096, src: Path = DEMO_IMG) -> Path:
    """A 5-band ``size``² tiled, overviewed GeoTIFF mosaicked from a real FLAIR patch (mirrored copies)."""
    with rasterio.open(src) as ds:
        patch = ds.read()
        left, top = ds.bounds.left, ds.bounds.top
        crs = ds.crs
    reps = size // patch.shape[1]
    tiles = [[patch[:, :, ::-1] if (i + j) % 2 else patch for j in range(reps)] for i in range(reps)]
    data = np.concatenate([np.concatenate(row, axis=2) for row in tiles], axis=1)
    prof = dict(driver="GTiff", width=size, height=size, count=5, dtype="uint8", crs=crs,
                transform=from_origin(left, top, 0.2, 0.2), tiled=True, blockxsize=512, blockysize=512,
                compress="deflate", interleave="pixel")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        dst.build_overviews([2, 4, 8, 16], Resampling.average)
    return path


CLASS_ORIGIN = (700000.0, 6600000.0)  # synthetic class rasters: somewhere in France, EPSG:2154, 0.2 m
CLASS_RES = 0.2


def write_class_raster(path: Path, data: np.ndarray) -> Path:
    """A tiled, deflated single-band uint8 class GeoTIFF at CLASS_ORIGIN: the change and trend benchmarks' inputs."""
    h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:2154",
                       transform=from_origin(*CLASS_ORIGIN, CLASS_RES, CLASS_RES), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate") as ds:
        ds.write(data, 1)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str, env: dict | None = None, timeout: float = 60,
          spawned=None) -> subprocess.Popen:
    """Start a server and wait for its health URL; ``spawned(proc)`` is called as soon as it exists."""
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if spawned is not None:
        spawned(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=1):
                return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean())}


def python() -> str:
    return sys.executable


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls of ``fn``, and its last result."""
    import statistics

    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class RssSampler(threading.Thread):
    """Samples the server's resident memory (process and children) every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, int]] = []  # (monotonic time, bytes)
        self._stop_event = threading.Event()

    def rss(self) -> int:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.NoSuchProcess:
            return 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic(), self.rss()))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
