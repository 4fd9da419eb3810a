"""Small raster factories for tests: real GeoTIFFs written with rasterio, never mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

L93 = "EPSG:2154"


def write_tif(path: Path, data: np.ndarray, crs: str | None = L93, origin=(961436.8, 6329262.4), res: float = 0.2,
              **profile) -> Path:
    """Write a (bands, H, W) or (H, W) array as a GeoTIFF at a Lambert-93 origin."""
    if data.ndim == 2:
        data = data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs=crs, transform=from_origin(origin[0], origin[1], res, res))
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
