"""VRT files written as XML: a mosaic over class rasters, and a window of a big scene.

``gdalbuildvrt`` is not guaranteed on a user's machine and rasterio cannot build VRTs, but for
rasters on one CRS and pixel size a VRT is a few lines of XML. Nothing here knows about models:
batch prediction uses both (a mosaic of its outputs, windows of huge scenes), and so can any feature.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from flair_viz.core import atomic, classes, raster
from flair_viz.core.errors import AlignmentError, InvalidInput, InvalidRaster


def _check_class_rasters(infos: Sequence[raster.RasterInfo]) -> None:
    """One VRT needs single-band uint8 rasters on one north-up CRS and pixel size."""
    ref = infos[0]
    for info in infos:
        if info.count != 1 or np.dtype(info.dtype) != np.uint8:
            raise InvalidRaster(f"{info.path.name} has {info.count} band(s) of {info.dtype}; a class mosaic needs "
                                "single-band uint8 rasters", "mosaic the class COGs (PRED_*.tif), not probabilities")
        if info.crs != ref.crs:
            raise AlignmentError(f"{info.path.name} is in {info.crs} but {ref.path.name} is in {ref.crs}; one VRT "
                                 "needs one CRS", "reproject the scenes to one CRS before predicting, or mosaic "
                                 "each CRS separately")
        t = info.transform
        if t.b != 0 or t.d != 0 or t.e >= 0:
            raise AlignmentError(f"{info.path.name} is rotated or not north-up", "warp it to a north-up grid first")
        if not (np.isclose(t.a, ref.transform.a, rtol=1e-9) and np.isclose(t.e, ref.transform.e, rtol=1e-9)):
            raise AlignmentError(f"{info.path.name} has {t.a:g} m pixels but {ref.path.name} has "
                                 f"{ref.transform.a:g} m", "resample the scenes to one resolution, or mosaic "
                                 "each resolution separately")


def write_vrt(sources: Sequence[Path], vrt_path: str | os.PathLike[str]) -> Path:
    """A VRT over single-band uint8 class rasters on one CRS and resolution, written atomically.

    GDAL's ``gdalbuildvrt`` is not always installed and rasterio cannot build VRTs, but for rasters
    that share a CRS and a pixel size the VRT is just the union extent plus one source rectangle per
    file. Sources are referenced relative to the VRT, so the folder can be moved or mounted elsewhere.
    """
    vrt_path = Path(vrt_path)
    if not sources:
        raise InvalidInput("A mosaic needs at least one raster", "predict some scenes first")
    infos = [raster.describe(p) for p in sources]
    _check_class_rasters(infos)
    ref = infos[0]
    rx, ry = ref.transform.a, -ref.transform.e
    minx = min(i.bounds[0] for i in infos)
    maxy = max(i.bounds[3] for i in infos)
    width = max(int(round((i.bounds[2] - minx) / rx)) for i in infos)
    height = max(int(round((maxy - i.bounds[1]) / ry)) for i in infos)
    wkt = ref.crs.to_wkt() if ref.crs is not None else ""
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if wkt:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(wkt)}</SRS>')
    # Scenes spread over a département make a huge, mostly empty VRT: without overviews a zoomed-out
    # tile would warp billions of pixels (GDAL ran out of memory at z6 on the four demo patches).
    # Virtual overviews make GDAL read each source through its own COG overviews instead.
    factors = [2]
    while max(width, height) / factors[-1] > 256:
        factors.append(factors[-1] * 2)
    lines += [f"  <GeoTransform>{minx!r}, {rx!r}, 0.0, {maxy!r}, 0.0, {-ry!r}</GeoTransform>",
              f'  <OverviewList resampling="nearest">{" ".join(map(str, factors))}</OverviewList>',
              '  <VRTRasterBand dataType="Byte" band="1">', "    <NoDataValue>0</NoDataValue>",
              "    <ColorInterp>Palette</ColorInterp>", "    <ColorTable>"]
    cmap = classes.colormap()
    for v in range(256):
        r, g, b, a = cmap.get(v, (0, 0, 0, 0))
        lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>')
    lines.append("    </ColorTable>")
    for info in infos:
        xoff = (info.bounds[0] - minx) / rx
        yoff = (maxy - info.bounds[3]) / ry
        xoff, yoff = (round(xoff) if abs(xoff - round(xoff)) < 1e-6 else xoff), \
                     (round(yoff) if abs(yoff - round(yoff)) < 1e-6 else yoff)
        rel = os.path.relpath(Path(info.path).resolve(), vrt_path.parent.resolve())
        lines += ["    <ComplexSource>",
                  f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>',
                  "      <SourceBand>1</SourceBand>",
                  f'      <SourceProperties RasterXSize="{info.width}" RasterYSize="{info.height}" '
                  'DataType="Byte" BlockXSize="256" BlockYSize="256"/>',
                  f'      <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
                  f'      <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{info.width}" ySize="{info.height}"/>',
                  "      <NODATA>0</NODATA>", "    </ComplexSource>"]
    lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return atomic.write_text(vrt_path, "\n".join(lines))


def window_vrt(src: Path, info: raster.RasterInfo, r0: int, r1: int, c0: int, c1: int, dst: Path) -> Path:
    """A VRT showing rows r0:r1, cols c0:c1 of ``src`` (all bands, same nodata) as a raster of its own."""
    t = info.transform
    x0, y0 = t.c + c0 * t.a + r0 * t.b, t.f + c0 * t.d + r0 * t.e
    w, h = c1 - c0, r1 - r0
    lines = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">',
             f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(info.crs.to_wkt())}</SRS>',
             f"  <GeoTransform>{x0!r}, {t.a!r}, {t.b!r}, {y0!r}, {t.d!r}, {t.e!r}</GeoTransform>"]
    for band in range(1, info.count + 1):
        lines += [f'  <VRTRasterBand dataType="Byte" band="{band}">']
        if info.nodata is not None:
            lines += [f"    <NoDataValue>{info.nodata!r}</NoDataValue>"]
        lines += ["    <SimpleSource>", f'      <SourceFilename relativeToVRT="0">{escape(str(src))}</SourceFilename>',
                  f"      <SourceBand>{band}</SourceBand>",
                  f'      <SrcRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/>',
                  f'      <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>', "    </SimpleSource>",
                  "  </VRTRasterBand>"]
    lines += ["</VRTDataset>", ""]
    return atomic.write_text(dst, "\n".join(lines))
