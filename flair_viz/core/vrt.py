"""VRT files written as XML: a mosaic over class rasters or images (a zone), and a window of a big scene.

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
import rasterio

from flair_viz.core import atomic, classes, raster
from flair_viz.core.errors import AlignmentError, InvalidInput, InvalidRaster


def check_mosaic_grids(infos: Sequence[raster.RasterInfo]) -> None:
    """One VRT needs rasters on one north-up CRS and pixel size, with one band layout: else say which differs."""
    ref = infos[0]
    for info in infos:
        if info.crs != ref.crs:
            raise AlignmentError(f"{info.path.name} is in {info.crs} but {ref.path.name} is in {ref.crs}; one mosaic "
                                 "(VRT) needs one CRS", "reproject the rasters to one CRS (FLAIR uses EPSG:2154), "
                                 "or mosaic each CRS separately")
        t = info.transform
        if t.b != 0 or t.d != 0 or t.e >= 0:
            raise AlignmentError(f"{info.path.name} is rotated or not north-up", "warp it to a north-up grid first")
        if not (np.isclose(t.a, ref.transform.a, rtol=1e-9) and np.isclose(t.e, ref.transform.e, rtol=1e-9)):
            raise AlignmentError(f"{info.path.name} has {t.a:g} m pixels but {ref.path.name} has "
                                 f"{ref.transform.a:g} m", "resample the rasters to one resolution, or mosaic "
                                 "each resolution separately")
        if (info.count, np.dtype(info.dtype)) != (ref.count, np.dtype(ref.dtype)):
            raise InvalidRaster(f"{info.path.name} has {info.count} band(s) of {info.dtype} but {ref.path.name} has "
                                f"{ref.count} of {ref.dtype}; one mosaic needs one band layout",
                                "mosaic rasters of one layout (e.g. all 5-band FLAIR images) together")


def _check_class_rasters(infos: Sequence[raster.RasterInfo]) -> None:
    """A class mosaic needs single-band uint8 rasters on one grid."""
    for info in infos:
        if info.count != 1 or np.dtype(info.dtype) != np.uint8:
            raise InvalidRaster(f"{info.path.name} has {info.count} band(s) of {info.dtype}; a class mosaic needs "
                                "single-band uint8 rasters", "mosaic the class COGs (PRED_*.tif), not probabilities")
    check_mosaic_grids(infos)


GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
              "float32": "Float32", "float64": "Float64"}


def write_vrt(sources: Sequence[Path], vrt_path: str | os.PathLike[str]) -> Path:
    """A VRT over single-band uint8 class rasters on one CRS and resolution, written atomically.

    GDAL's ``gdalbuildvrt`` is not always installed and rasterio cannot build VRTs, but for rasters
    that share a CRS and a pixel size the VRT is just the union extent plus one source rectangle per
    file. Sources are referenced relative to the VRT, so the folder can be moved or mounted elsewhere.
    """
    if not sources:
        raise InvalidInput("A mosaic needs at least one raster", "predict some scenes first")
    infos = [raster.describe(p) for p in sources]
    _check_class_rasters(infos)
    return _write(infos, Path(vrt_path), palette=True)


def write_mosaic(sources: Sequence[Path] | Sequence[raster.RasterInfo], vrt_path: str | os.PathLike[str],
                 palette: bool = False) -> Path:
    """A VRT over rasters of any one band layout (e.g. a zone of 5-band FLAIR images), written atomically.

    ``sources`` may be headers already read (a scan has them), so a zone mosaic opens no file twice.
    Rasters in different CRSs, pixel sizes or band layouts are refused with the reason.
    """
    if not sources:
        raise InvalidInput("A mosaic needs at least one raster", "give the rasters of at least one patch")
    infos = [s if isinstance(s, raster.RasterInfo) else raster.describe(s) for s in sources]
    (_check_class_rasters if palette else check_mosaic_grids)(infos)
    return _write(infos, Path(vrt_path), palette=palette)


def _write(infos: Sequence[raster.RasterInfo], vrt_path: Path, palette: bool) -> Path:
    """The union extent, virtual overviews and one source rectangle per file, per band."""
    ref = infos[0]
    rx, ry = ref.transform.a, -ref.transform.e
    minx = min(i.bounds[0] for i in infos)
    maxy = max(i.bounds[3] for i in infos)
    width = max(int(round((i.bounds[2] - minx) / rx)) for i in infos)
    height = max(int(round((maxy - i.bounds[1]) / ry)) for i in infos)
    wkt = ref.crs.to_wkt() if ref.crs is not None else ""
    gdal_type = GDAL_TYPES.get(str(np.dtype(ref.dtype)), "Byte")
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
              f'  <OverviewList resampling="nearest">{" ".join(map(str, factors))}</OverviewList>']
    nodata = 0 if palette else ref.nodata
    rects = []
    for info in infos:
        xoff = (info.bounds[0] - minx) / rx
        yoff = (maxy - info.bounds[3]) / ry
        xoff, yoff = (round(xoff) if abs(xoff - round(xoff)) < 1e-6 else xoff), \
                     (round(yoff) if abs(yoff - round(yoff)) < 1e-6 else yoff)
        rel = os.path.relpath(Path(info.path).resolve(), vrt_path.parent.resolve())
        rects.append((info, escape(rel), xoff, yoff))
    for band in range(1, ref.count + 1):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        if palette:
            lines += ["    <ColorInterp>Palette</ColorInterp>", "    <ColorTable>"]
            cmap = classes.colormap()
            for v in range(256):
                r, g, b, a = cmap.get(v, (0, 0, 0, 0))
                lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>')
            lines.append("    </ColorTable>")
        for info, rel, xoff, yoff in rects:
            lines += ["    <ComplexSource>" if nodata is not None else "    <SimpleSource>",
                      f'      <SourceFilename relativeToVRT="1">{rel}</SourceFilename>',
                      f"      <SourceBand>{band}</SourceBand>",
                      f'      <SourceProperties RasterXSize="{info.width}" RasterYSize="{info.height}" '
                      f'DataType="{gdal_type}" BlockXSize="256" BlockYSize="256"/>',
                      f'      <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
                      f'      <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{info.width}" ySize="{info.height}"/>']
            if nodata is not None:
                lines += [f"      <NODATA>{nodata!r}</NODATA>", "    </ComplexSource>"]
            else:
                lines.append("    </SimpleSource>")
        lines.append("  </VRTRasterBand>")
    if nodata is None:
        lines += _footprint_mask(rects)
    lines += ["</VRTDataset>", ""]
    return atomic.write_text(vrt_path, "\n".join(lines))


def _footprint_mask(rects: list) -> list[str]:
    """A dataset mask that is 255 over each source and 0 between them (gdalbuildvrt's -addalpha trick: a
    source scaled by 0 plus 255). Why: FLAIR images have no nodata value, so the gaps of an incomplete
    zone read as 0 and would show black on the map and be fed to the model; with the mask, map tiles are
    transparent there and live predictions leave them out."""
    lines = ["  <MaskBand>", '    <VRTRasterBand dataType="Byte">']
    for info, rel, xoff, yoff in rects:
        lines += ["      <ComplexSource>", f'        <SourceFilename relativeToVRT="1">{rel}</SourceFilename>',
                  "        <SourceBand>1</SourceBand>",
                  f'        <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
                  f'        <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{info.width}" ySize="{info.height}"/>',
                  "        <ScaleOffset>255</ScaleOffset>", "        <ScaleRatio>0</ScaleRatio>", "      </ComplexSource>"]
    return lines + ["    </VRTRasterBand>", "  </MaskBand>"]


def window_vrt(src: Path, info: raster.RasterInfo, r0: int, r1: int, c0: int, c1: int, dst: Path) -> Path:
    """A VRT showing rows r0:r1, cols c0:c1 of ``src`` (all bands, same nodata, and its footprint mask when it has
    one) as a raster of its own. Why the mask: a block of a zone mosaic with a missing patch, or of a band stack
    with a missing dalle, must leave the gap out as the whole scene's prediction does."""
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
    if _has_footprint_mask(src):
        lines += ["  <MaskBand>", '    <VRTRasterBand dataType="Byte">', "      <SimpleSource>",
                  f'        <SourceFilename relativeToVRT="0">{escape(str(src))}</SourceFilename>',
                  "        <SourceBand>mask,1</SourceBand>",
                  f'        <SrcRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/>',
                  f'        <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>', "      </SimpleSource>",
                  "    </VRTRasterBand>", "  </MaskBand>"]
    lines += ["</VRTDataset>", ""]
    return atomic.write_text(dst, "\n".join(lines))


def _has_footprint_mask(path: Path) -> bool:
    """Whether ``path`` has a dataset mask of its own (a VRT MaskBand, a COG's internal mask), as
    :func:`raster.read_window` checks it."""
    with raster.open_raster(path) as ds:
        flags = ds.mask_flag_enums[0]
    return rasterio.enums.MaskFlags.per_dataset in flags and rasterio.enums.MaskFlags.all_valid not in flags
