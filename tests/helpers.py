"""Small raster factories for tests: real GeoTIFFs written with rasterio, never mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

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
