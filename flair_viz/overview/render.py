"""Footprints → one RGBA map tile → PNG.

A pixel is painted when its centre lies inside a footprint's Web Mercator box. A footprint smaller than
a pixel (a 102 m patch below zoom ~11) would paint nothing by that rule, so it is drawn as a
``DOT_PX``-pixel square around the pixel holding its centre (``NATIONAL_DOT_PX`` at zoom ``NATIONAL_ZOOM`` and
coarser, where France fits a screen and a 3 px dot is hard to see): at a national zoom
every patch stays visible. Later footprints paint over earlier ones. Pixels with no footprint are fully transparent. A footprint
drawn ``OUTLINE_MIN_PX`` pixels wide or more gets a one-pixel border in a darker shade of its colour (east and
south edges where it meets another footprint, all edges where it meets nothing), so the patches of a zone
that share a colour still show as patches.
"""

from __future__ import annotations

import morecantile
import numpy as np
from rio_tiler.utils import render

from flair_viz.core.classtile import TILE_SIZE
from flair_viz.core.errors import InvalidInput
from flair_viz.overview.footprints import Footprints

DOT_PX = 3
NATIONAL_DOT_PX = 5
NATIONAL_ZOOM = 8
OUTLINE_MIN_PX = 12  # footprints drawn this wide or more get a darker one-pixel border
OUTLINE_SHADE = 0.6


def dot_px(z: float) -> int:
    """Side in pixels of the square a sub-pixel footprint is drawn as at zoom ``z``."""
    return NATIONAL_DOT_PX if z <= NATIONAL_ZOOM else DOT_PX


def tile_pixels(fp: Footprints, z: int, x: int, y: int, size: int = TILE_SIZE, tms_id: str = "WebMercatorQuad"):
    """Rows of the footprints touching the tile and their pixel ranges ``(r0, r1, c0, c1)`` (end exclusive)."""
    tms = morecantile.tms.get(tms_id)
    left, bottom, right, top = tms.xy_bounds(morecantile.Tile(x, y, z))
    res_x, res_y = (right - left) / size, (top - bottom) / size
    m = fp.mercator
    dot = dot_px(z)
    pad_x, pad_y = dot * res_x, dot * res_y  # dots of footprints just outside the tile still reach in
    rows = np.flatnonzero((m[:, 0] < right + pad_x) & (m[:, 2] > left - pad_x)
                          & (m[:, 1] < top + pad_y) & (m[:, 3] > bottom - pad_y))
    m = m[rows]
    px0, px1 = (m[:, 0] - left) / res_x, (m[:, 2] - left) / res_x
    py0, py1 = (top - m[:, 3]) / res_y, (top - m[:, 1]) / res_y  # image rows grow southwards
    c0, c1 = np.ceil(px0 - 0.5), np.ceil(px1 - 0.5)  # pixel c is inside when px0 <= c + 0.5 < px1
    r0, r1 = np.ceil(py0 - 0.5), np.ceil(py1 - 0.5)
    tiny = (c1 <= c0) | (r1 <= r0)
    half = dot // 2
    cc, cr = np.floor((px0 + px1) / 2), np.floor((py0 + py1) / 2)
    c0, c1 = np.where(tiny, cc - half, c0), np.where(tiny, cc - half + dot, c1)
    r0, r1 = np.where(tiny, cr - half, r0), np.where(tiny, cr - half + dot, r1)
    clip = lambda a: np.clip(a, 0, size).astype(np.int64)  # noqa: E731
    return rows, clip(r0), clip(r1), clip(c0), clip(c1)


def render_tile(fp: Footprints, rgba: np.ndarray, z: int, x: int, y: int, size: int = TILE_SIZE,
                tms_id: str = "WebMercatorQuad") -> np.ndarray:
    """``(4, size, size)`` uint8 tile: each footprint's colour from ``rgba`` (``(n, 4)``), transparent elsewhere."""
    if size not in (256, 512):
        raise InvalidInput(f"tilesize={size} is not supported", "use tilesize=256 or 512")
    rows, r0, r1, c0, c1 = tile_pixels(fp, z, x, y, size, tms_id)
    owner = np.full((size, size), -1, dtype=np.int64)
    keep = (r1 > r0) & (c1 > c0)
    rows, r0, r1, c0, c1 = rows[keep], r0[keep], r1[keep], c0[keep], c1[keep]
    single = (r1 - r0 == 1) & (c1 - c0 == 1)
    # One-pixel footprints in one vectorised assignment (numpy keeps the last of repeated indices).
    owner[r0[single], c0[single]] = rows[single]
    for i in np.flatnonzero(~single):  # at most (size / 2)^2 boxes of two pixels or more fit in a tile
        owner[r0[i]:r1[i], c0[i]:c1[i]] = rows[i]
    if (~single).any() and single.any():  # keep the drawing order where single pixels and boxes overlap
        later = np.zeros(size * size, dtype=np.int64) - 1
        later[r0[single] * size + c0[single]] = rows[single]
        later = later.reshape(size, size)
        owner = np.where(later > owner, later, owner)
    out = np.zeros((size, size, 4), dtype=np.uint8)
    painted = owner >= 0
    out[painted] = rgba[owner[painted]]
    edge = _outline(owner, rows[(r1 - r0 >= OUTLINE_MIN_PX) & (c1 - c0 >= OUTLINE_MIN_PX)])
    out[edge, :3] = (out[edge, :3] * OUTLINE_SHADE).astype(np.uint8)
    return np.moveaxis(out, -1, 0)


def _outline(owner: np.ndarray, big_rows: np.ndarray) -> np.ndarray:
    """Pixels of a footprint drawn at least ``OUTLINE_MIN_PX`` wide whose right or lower neighbour is another
    footprint or empty: a one-pixel border, so adjacent patches of the same colour stay distinguishable."""
    if not len(big_rows):
        return np.zeros(owner.shape, dtype=bool)
    big = np.isin(owner, big_rows)
    edge = np.zeros(owner.shape, dtype=bool)
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    edge[:-1, :] |= owner[:-1, :] != owner[1:, :]
    edge[:, 1:] |= (owner[:, 1:] != owner[:, :-1]) & (owner[:, :-1] < 0)  # the west and north rims facing empty
    edge[1:, :] |= (owner[1:, :] != owner[:-1, :]) & (owner[:-1, :] < 0)
    return edge & big


def tile_png(fp: Footprints, rgba: np.ndarray, z: int, x: int, y: int, size: int = TILE_SIZE,
             tms_id: str = "WebMercatorQuad") -> bytes:
    """The tile of :func:`render_tile` as a PNG with its alpha band."""
    tile = render_tile(fp, rgba, z, x, y, size, tms_id)
    return render(tile[:3], mask=tile[3], img_format="PNG")
