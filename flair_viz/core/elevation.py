"""The elevation band as FLAIR models read it: height above ground (DSM − DTM) in metres → uint8.

FLAIR-1 patches carry the height above ground as their fifth, 8-bit band; FLAIR-HUB computes the same
height on the fly as ``DSM − DTM`` (``calc_elevation`` in IGNF/FLAIR-HUB's data loader). Neither source
we could read states the 8-bit scale of FLAIR-1's band, so :data:`SCALE` is our choice: one level per
0.2 m (the image's own ground sampling), 0 m at 0, clipped to 0..255 (0 to 51 m). ``docs/elevation.md``
gives the sources, the check against the real FLAIR-1 bands, and why. The stack VRT
(:mod:`flair_viz.core.stack`) computes the same formula inside GDAL; this function is its reference and
what a person can call on arrays.
"""

from __future__ import annotations

import numpy as np

SCALE = 5.0  # uint8 levels per metre of height above ground: 0.2 m per level, as the image's pixels
OFFSET = 0.0  # the level of the ground itself (DSM == DTM)


def height_to_uint8(height_m: np.ndarray, scale: float = SCALE, offset: float = OFFSET) -> np.ndarray:
    """Heights above ground in metres → FLAIR's 8-bit band: ``clip(floor(h · scale + offset + 0.5), 0, 255)``.

    Rounded half up, as GDAL converts a float to a byte, so this equals what the stack VRT computes.
    Not-a-number (a hole in either model) becomes 0, the ground: the stack masks such pixels anyway.
    """
    levels = np.floor(np.asarray(height_m, dtype=np.float64) * scale + offset + 0.5)
    levels = np.where(np.isnan(levels), 0, levels)
    return np.clip(levels, 0, 255).astype(np.uint8)


def ndsm_uint8(dsm_m: np.ndarray, dtm_m: np.ndarray, scale: float = SCALE, offset: float = OFFSET) -> np.ndarray:
    """A surface and a terrain model in metres (same grid) → the elevation band: surface minus terrain."""
    return height_to_uint8(np.asarray(dsm_m, dtype=np.float64) - np.asarray(dtm_m, dtype=np.float64), scale, offset)
