"""Shared test helpers: repository paths, real GeoTIFF factories (rasterio, never mocks), the tile server
in process (TestClient) or as a real process, PNG decoding and the independent tile-to-pixel mapper."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import morecantile
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from flair_viz.web.explore import Scene

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo"
DEMO_CATALOG = DEMO / "catalog.toml"
L93 = "EPSG:2154"
TMS = morecantile.tms.get("WebMercatorQuad")
WORLD_M = 2 * np.pi * 6378137.0  # width of the Web Mercator world in metres


# -- rasters ----------------------------------------------------------------------------------------
def write_tif(path: Path, data: np.ndarray, crs: str | None = L93, origin=(961436.8, 6329262.4), res: float = 0.2,
              block: int = 0, **profile) -> Path:
    """Write a (bands, H, W) or (H, W) array as a GeoTIFF at a Lambert-93 origin; ``block`` > 0 tiles it."""
    if data.ndim == 2:
        data = data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs=crs, transform=from_origin(origin[0], origin[1], res, res))
    if block:
        prof |= dict(tiled=True, blockxsize=block, blockysize=block)
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path

def flair_folder(root: Path, patches: dict[str, tuple[np.ndarray, np.ndarray]], domain="D001_2020", zone="Z1_UA") -> Path:
    """Lay out ``{id: (image, mask)}`` in FLAIR layout under ``root``."""
    for pid, (img, msk) in patches.items():
        write_tif(root / domain / zone / "img" / f"IMG_{pid}.tif", img)
        if msk is not None:
            write_tif(root / domain / zone / "msk" / f"MSK_{pid}.tif", msk)
    return root


def sparse_class_raster(path: Path, size: int, blocks: list[tuple[int, int, int]]) -> Path:
    """A size x size uint8 GeoTIFF where only ``blocks`` (row, col, value) of 512 px are written: small on disk,
    large once decoded, for streaming and kill tests."""
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs=L93,
                transform=from_origin(961436.8, 6329262.4, 0.2, 0.2), tiled=True, blockxsize=512, blockysize=512,
                compress="deflate", sparse_ok=True, nodata=0)
    with rasterio.open(path, "w", **prof) as ds:
        for r, c, v in blocks:
            ds.write(np.full((1, 512, 512), v, np.uint8), window=Window(c * 512, r * 512, 512, 512))
    return path


def open_map_page(page, url: str, heading: str):
    """Open a page, wait for its heading and its first Leaflet map; return the map's frame."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text(heading, exact=True).first.wait_for(timeout=60_000)
    frame = page.frame_locator("iframe[title='streamlit_folium.st_folium']").first
    frame.locator(".leaflet-container").first.wait_for(timeout=60_000)
    return frame


def wait_until(page, predicate, timeout_s: float = 90) -> bool:
    """Poll ``predicate`` every 250 ms in the browser's event loop; False when ``timeout_s`` passes first."""
    for _ in range(int(timeout_s * 4)):
        if predicate():
            return True
        page.wait_for_timeout(250)
    return False


# -- servers ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200; fail at once if ``proc`` (the server behind it) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start_server(*args: str, catalog: Path = DEMO_CATALOG, env: dict[str, str] | None = None,
                 log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A real ``flair-viz serve`` on a free loopback port, answering /healthz; returns (process, base URL)."""
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "flair_viz", "serve", "--port", str(port), "--catalog",
                             str(catalog), *args], cwd=REPO, env={**os.environ, **(env or {})}, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
    except RuntimeError:
        stop_server(proc)
        raise
    return proc, url


def signal_while_present(cmd: list[str], folder: Path, pattern: str, sig: int, env: dict[str, str] | None = None,
                         delay: float = 0.0, timeout: float = 120) -> int:
    """Start ``cmd``, wait until a file matching ``pattern`` appears in ``folder`` (a write is under way),
    wait ``delay`` more seconds, then send ``sig``; return the exit status. How the atomic-write tests
    interrupt a real write (SIGKILL) or ask it to stop (SIGTERM)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not list(folder.glob(pattern)):
            assert proc.poll() is None, f"finished before its write could be interrupted: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the work file never appeared"
            time.sleep(0.001)
        time.sleep(delay)
        assert proc.poll() is None, "finished before the signal"
        proc.send_signal(sig)
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def kill_while_present(cmd: list[str], folder: Path, pattern: str, env: dict[str, str] | None = None,
                       delay: float = 0.0, timeout: float = 90) -> None:
    """SIGKILL ``cmd`` in the middle of a write (see :func:`signal_while_present`)."""
    assert signal_while_present(cmd, folder, pattern, signal.SIGKILL, env, delay, timeout) == -signal.SIGKILL


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def app_client(catalog: Path = DEMO_CATALOG, token: str | None = None) -> TestClient:
    """The tile server in this process. Server errors come back as responses (never raised), so a test
    can assert that a route answers 4xx and never 500."""
    from fastapi.testclient import TestClient

    from flair_viz.server.app import create_app

    return TestClient(create_app(catalog, token=token), raise_server_exceptions=False)


def decode_png(resp) -> np.ndarray:
    """The (H, W, 4) RGBA pixels of a 200 image/png response."""
    from PIL import Image

    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"] == "image/png"
    return np.array(Image.open(io.BytesIO(resp.content)).convert("RGBA"))


# -- tiles ↔ raster pixels (independent of the server: the Web Mercator formula and PROJ) --------------
def tile_at(x: float, y: float, crs, zoom: int) -> morecantile.Tile:
    """The Web Mercator tile holding the point (x, y) given in ``crs``."""
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return TMS.tile(lon, lat, zoom)


def centre_tile(path: Path, zoom: int) -> morecantile.Tile:
    """The tile holding the centre of the raster (taken in the raster's own CRS)."""
    with rasterio.open(path) as ds:
        b = ds.bounds
        return tile_at((b.left + b.right) / 2, (b.bottom + b.top) / 2, ds.crs, zoom)


def tile_pixel_centres(tile: morecantile.Tile, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:3857 (x, y) of every tile pixel centre, (size, size) arrays indexed [row, col]."""
    res = WORLD_M / (2**tile.z * size)
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    return -WORLD_M / 2 + (tile.x * size + cols) * res, WORLD_M / 2 - (tile.y * size + rows) * res


def tile_to_raster(tile: morecantile.Tile, path: Path, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (col, row) in the raster at ``path`` under every tile pixel centre; floor gives the pixel.

    The one mapper the tile tests compare server output with: it never touches rio-tiler or morecantile's
    tile bounds, only the tile formula, PROJ and the raster's affine transform.
    """
    with rasterio.open(path) as ds:
        crs, transform = ds.crs, ds.transform
    mx, my = tile_pixel_centres(tile, size)
    x, y = Transformer.from_crs("EPSG:3857", crs, always_xy=True).transform(mx, my)
    col, row = ~transform @ (x, y)
    return np.asarray(col), np.asarray(row)


# -- Explore's filters, scene by scene: the reference web/browse.py's index filters must equal ----------------
def scene_year(scene: Scene) -> str:
    return (scene.image.vintage or "")[:4]


def filter_options(scenes: list[Scene], domains: list[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """(domains, zones, years) offered by the filters; zones narrow to the chosen domains."""
    all_domains = sorted({s.domain for s in scenes if s.domain})
    zones = sorted({s.zone for s in scenes if s.zone and (not domains or s.domain in domains)})
    years = sorted({scene_year(s) for s in scenes if s.image.vintage})
    return all_domains, zones, years


def filter_scenes(scenes: list[Scene], domains: list[str] = (), zones: list[str] = (),
                  years: list[str] = ()) -> list[Scene]:
    """Scenes matching every non-empty filter; all of them when nothing matches, so the page never empties."""
    shown = [s for s in scenes if (not domains or s.domain in domains) and (not zones or s.zone in zones)
             and (not years or scene_year(s) in years)]
    return shown or list(scenes)


def clear_live_caches() -> None:
    """Forget in-memory live tiles and their PNGs, so a test sees a fresh server's answer (the disk cache
    stays; it is keyed by checksum, so it cannot go stale)."""
    from flair_viz.predict import live
    from flair_viz.predict import tiles as predict_tiles

    live.RESULTS.clear()
    predict_tiles.PNGS.clear()


def default_model_id() -> str:
    """The shipped card that says ``default = true``, read from the files (not through flair_viz.predict.cards)."""
    import tomllib

    docs = [tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "models").glob("*.toml"))]
    return next(d["id"] for d in docs if d.get("default"))


def save_catalog(cat, path: Path) -> Path:
    """Write a catalog built in a test (its [[scan]]/[[index]] entries and the datasets added one by one) to a
    TOML file. Test-only: the app edits catalogs through flair_viz.core.catalog_file, which keeps comments."""
    import os

    import tomli_w

    rel_root = os.path.relpath(cat.root, Path(path).parent.resolve())
    doc = {"data_root": rel_root, "attribution": cat.attribution,
           **{k: [{f: v for f, v in e.items() if f != "kind"} for e in cat.sources if e["kind"] == k]
              for k in ("scan", "index") if any(e["kind"] == k for e in cat.sources)},
           "dataset": [d.to_toml(cat.root) for d in cat._by_id.values()]}  # the datasets added one by one
    Path(path).write_text(tomli_w.dumps(doc), encoding="utf-8")
    cat.source = Path(path)
    return Path(path)
