"""Checking a from-to result against a real binary change mask: how many of its changed pixels are counted.

A change mask (1 = changed, 0 = unchanged; e.g. IGN's ODEON masks) may have another resolution than
the class rasters. Each changed mask pixel is taken at its centre, on the before raster's grid, and read
exactly as :func:`flair_viz.change.compute.compute_change` reads the pair (the after raster laid on that
grid, both dates through the one LUT). It is "counted as changed" where the FLAIR-1 class differs and
both dates have a class, which is what the from-to matrix puts off its diagonal.

A pair lists its masks in the catalog: ``extra.change_masks`` of either vintage, paths relative to the
data root, separated by spaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from flair_viz.change.align import ClassSource, PairReader, align, resolve
from flair_viz.core import raster
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.errors import AlignmentError, OutsideDataRoot


@dataclass(frozen=True)
class MaskAgreement:
    """Changed pixels of one mask, and how many of them the from-to computation counts as changed."""

    mask: str  # file name
    changed_px: int  # pixels the mask marks as changed
    on_pair_px: int  # ... whose centre lies in the overlap of the pair
    valid_px: int  # ... of those, with a class at both dates
    counted_px: int  # ... of those, counted as changed (before class != after class)

    @property
    def share(self) -> float | None:
        """counted / valid, or None when no changed mask pixel falls on the pair with a class at both dates."""
        return self.counted_px / self.valid_px if self.valid_px else None

    @property
    def text(self) -> str:
        if not self.on_pair_px:
            return (f"{self.mask}: none of its {self.changed_px:,} changed pixels lies on this pair "
                    "(the mask covers another place), so it cannot confirm or refute this change")
        return (f"{self.mask}: {self.counted_px:,} of its {self.valid_px:,} changed pixels on this pair "
                f"({self.share:.1%}) are counted as changed by the from-to matrix"
                + (f"; {self.changed_px - self.on_pair_px:,} more lie outside the pair" if
                   self.changed_px > self.on_pair_px else ""))


def mask_agreement(before: str | os.PathLike[str] | Dataset | ClassSource,
                   after: str | os.PathLike[str] | Dataset | ClassSource, mask: str | os.PathLike[str], *,
                   catalog: Catalog | None = None, nomenclature: str = "flair1") -> MaskAgreement:
    """How many of ``mask``'s changed pixels the from-to computation of (before, after) counts as changed."""
    b_src, a_src = resolve(before, catalog, nomenclature), resolve(after, catalog, nomenclature)
    al = align(b_src, a_src)
    info = raster.describe(mask)
    if info.count != 1:
        raise AlignmentError(f"Change mask {info.path.name} has {info.count} bands; a change mask has 1",
                             "give the single-band binary change mask (1 = changed)")
    if info.crs is None or info.crs != al.crs:
        raise AlignmentError(f"Change mask {info.path.name} is not in the CRS of {b_src.name}",
                             "reproject the mask to the class rasters' CRS (gdalwarp -t_srs)")
    m = raster.read(mask, 1)
    changed = m != 0 if info.nodata is None else (m != 0) & (m != info.nodata)
    rows, cols = np.nonzero(changed)
    xs, ys = info.transform @ (cols + 0.5, rows + 0.5)  # pixel centres
    inv = ~al.transform
    bc, br = inv @ (np.asarray(xs), np.asarray(ys))
    bc, br = np.floor(bc).astype(np.int64), np.floor(br).astype(np.int64)
    w = al.window
    c0, r0 = int(w.col_off), int(w.row_off)
    inside = (bc >= c0) & (bc < c0 + int(w.width)) & (br >= r0) & (br < r0 + int(w.height))
    bc, br = bc[inside], br[inside]
    if not bc.size:
        return MaskAgreement(info.path.name, int(rows.size), 0, 0, 0)
    win = Window(int(bc.min()), int(br.min()), int(bc.max() - bc.min() + 1), int(br.max() - br.min() + 1))
    with PairReader(b_src, a_src, al) as pair:
        b, a = pair.classes(*pair.read(win))
    b, a = b[br - int(win.row_off), bc - int(win.col_off)], a[br - int(win.row_off), bc - int(win.col_off)]
    valid = (b > 0) & (a > 0)
    return MaskAgreement(info.path.name, int(rows.size), int(bc.size), int(valid.sum()),
                         int((valid & (b != a)).sum()))


def pair_masks(catalog: Catalog, before: Dataset, after: Dataset) -> list[Path]:
    """The change masks a pair's catalog entries list (``extra.change_masks``), each under the data root."""
    out: list[Path] = []
    for ds in (before, after):
        for rel in ds.extra.get("change_masks", "").split():
            p = (catalog.root / rel).resolve()
            if not p.is_relative_to(catalog.root):
                raise OutsideDataRoot(f"Dataset {ds.id}: change mask {rel} is outside the data root {catalog.root}",
                                      "put the mask under the data root and give its path relative to it")
            if p not in out:
                out.append(p)
    return out


def catalog_mask_agreements(catalog: Catalog, before: Dataset, after: Dataset) -> list[MaskAgreement]:
    """:func:`mask_agreement` of every mask the pair lists (an empty list when it lists none)."""
    return [mask_agreement(before, after, m, catalog=catalog) for m in pair_masks(catalog, before, after)]

