"""The one raster reader: open, validate and describe GeoTIFF/COG/VRT files.

Every module opens rasters through :func:`open_raster` so that a corrupt TIFF, a wrong band count
or a mismatched grid produce the same clear error (a :class:`RasterError` leaf) wherever they are met.
"""

from __future__ import annotations

import functools
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.enums
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from flair_viz.core import classes
from flair_viz.core.errors import AlignmentError, InvalidRaster, RasterNotFound, UnreadableRaster, first_line

# Band layouts FLAIR Viz understands, by band count.
BAND_LAYOUTS: dict[int, tuple[str, ...]] = {
    5: ("R", "G", "B", "NIR", "elevation"),
    4: ("R", "G", "B", "NIR"),
    3: ("R", "G", "B"),
}
# Display presets: which named bands make each view (tile server and UI share this).
PRESET_BANDS: dict[str, tuple[str, ...]] = {"rgb": ("R", "G", "B"), "irc": ("NIR", "R", "G"), "elevation": ("elevation",)}
LAMBERT93 = CRS.from_epsg(2154)
# What FLAIR models were trained on: 8-bit bands, 0..255. No scaling is guessed for other types:
# a uint16 ortho's range (0..4095? 0..65535?) is not in its header, and a wrong guess is a garbage map.
IMAGE_DTYPE = "uint8"
# GDAL opens a file by its content, whatever its name: a PNG renamed .tif opens (without a CRS).
# A file whose suffix names one of these formats must really be that format.
SUFFIX_DRIVERS: dict[str, tuple[str, ...]] = {".tif": ("GTiff", "COG"), ".tiff": ("GTiff", "COG"), ".vrt": ("VRT",)}


@dataclass(frozen=True)
class RasterInfo:
    """What a raster is, read once from its header."""

    path: Path
    count: int
    width: int
    height: int
    dtype: str
    crs: CRS | None
    transform: rasterio.Affine
    bounds: tuple[float, float, float, float]
    nodata: float | None
    local_lambert93: bool = False  # the file says LOCAL_CS Lambert-93 (FLAIR-1 masks); ``crs`` is EPSG:2154

    @property
    def crs_note(self) -> str | None:
        """What a result should say when the CRS was not the file's own (design.md, "Mask CRS")."""
        if not self.local_lambert93:
            return None
        return (f"{self.path.name} carries LOCAL_CS[\"RGF93 v1 / Lambert-93\"] (the FLAIR-1 mask quirk); "
                "it was read as EPSG:2154")

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def pixel_area_m2(self) -> float:
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)


def _normalise_crs(crs: CRS | None) -> CRS | None:
    """Treat Lambert-93 WKT without an authority code (seen in BD ORTHO and some FLAIR masks) as EPSG:2154.

    FLAIR-1 masks write ``LOCAL_CS["RGF93 v1 / Lambert-93"]`` with the transform of their image (design.md,
    "Mask CRS"): every reader, resampling and reprojection included, must see EPSG:2154, since PROJ
    cannot transform an engineering CRS to anything.
    """
    if crs is None or crs.to_epsg() is not None:
        return crs
    wkt = crs.to_wkt()
    if "Lambert-93" in wkt or "EPSG:2154" in wkt or ("RGF93" in wkt and "Lambert" in wkt):
        return LAMBERT93
    return crs


def tile_source(path: str | os.PathLike[str]) -> str:
    """What tile readers (titiler, rio-tiler) should open for ``path``.

    FLAIR-1 masks write Lambert-93 as a ``LOCAL_CS`` (an engineering CRS) that PROJ cannot transform to
    Web Mercator, so every map tile of them fails. For such a file this is GDAL's ``vrt://`` connection
    string with ``a_srs=EPSG:2154``: the same pixels, read in place, with the CRS they really have.
    The answer is cached per file stamp, so a tile request pays no extra header read.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return str(p)  # the reader then names the missing file
    return _tile_source(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _tile_source(path: str, size: int, mtime_ns: int) -> str:
    try:
        with rasterio.open(path) as ds:
            crs = ds.crs
            _check_format(Path(path), ds.driver)
    except RasterioIOError:
        return path  # unreadable: the tile reader raises the error that names the file
    if crs is not None and crs.to_epsg() is None and _normalise_crs(crs) == LAMBERT93 and not crs.is_projected:
        return f"vrt://{path}?a_srs=EPSG:2154"
    return path


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster, turning GDAL's failures into an error that names the file (missing or unreadable)."""
    p = Path(path)
    if not p.exists():
        raise RasterNotFound(f"File not found: {p}", "check the path, or rescan the catalog if the file moved")
    if p.is_dir():
        raise RasterNotFound(f"{p} is a folder, not a raster file", "give the path of a .tif/.vrt file")
    try:
        ds = rasterio.open(p)
    except RasterioIOError as exc:
        raise UnreadableRaster(
            f"Cannot read {p.name}: it is not a readable GeoTIFF ({first_line(exc)})",
            "the file may be corrupt, truncated or not a TIFF; re-export or re-download it",
        ) from None
    try:
        _check_format(p, ds.driver)
    except UnreadableRaster:
        ds.close()
        raise
    return ds


def _check_format(path: Path, driver: str) -> None:
    """Refuse a file that is not the format its suffix claims (a PNG or JPEG renamed ``.tif``)."""
    expected = SUFFIX_DRIVERS.get(path.suffix.lower())
    if expected is not None and driver not in expected:
        raise UnreadableRaster(
            f"{path.name} is a {driver} file, not the {'VRT' if path.suffix.lower() == '.vrt' else 'GeoTIFF'} "
            "its name says",
            f"convert it to a georeferenced GeoTIFF (e.g. gdal_translate -of COG -a_srs EPSG:2154 "
            f"-a_ullr ... {path.name} out.tif) and register that file instead",
        )


def describe(path: str | os.PathLike[str]) -> RasterInfo:
    """Read a raster's header into a :class:`RasterInfo`."""
    with open_raster(path) as ds:
        return _info(ds, path)


def _info(ds: rasterio.DatasetReader, path: str | os.PathLike[str]) -> RasterInfo:
    crs = _normalise_crs(ds.crs)
    return RasterInfo(
        path=Path(path), count=ds.count, width=ds.width, height=ds.height, dtype=ds.dtypes[0],
        crs=crs, transform=ds.transform, bounds=tuple(ds.bounds), nodata=ds.nodata,
        local_lambert93=crs is not None and crs != ds.crs and not ds.crs.is_projected,
    )


def warp_crs(ds: rasterio.DatasetReader) -> CRS | None:
    """The CRS to give GDAL's warper (``WarpedVRT(src_crs=...)``) for an open raster: its own, normalised."""
    return _normalise_crs(ds.crs)


def check_header(path: str | os.PathLike[str]) -> RasterInfo:
    """:func:`describe` plus the georeference and last-pixel checks of a validation, in one open.

    A scan of 100,000 patches is bound by opening files; this opens each once instead of twice.
    """
    with open_raster(path) as ds:
        info = _info(ds, path)
        if info.crs is None:
            _check_readable(info)  # raises the no-CRS error
        try:
            ds.read(1, window=Window(info.width - 1, info.height - 1, 1, 1))
        except RasterioIOError as exc:
            raise UnreadableRaster(
                f"Cannot read the pixels of {Path(path).name}: {first_line(exc)}",
                "the file is probably truncated or corrupt; re-export it",
            ) from None
    return info


def read(path: str | os.PathLike[str], indexes: list[int] | int | None = None, window: Window | None = None,
         boundless: bool = False, fill_value: float = 0) -> np.ndarray:
    """Read pixels, reporting a truncated or corrupt block as :class:`UnreadableRaster`."""
    with open_raster(path) as ds:
        try:
            return ds.read(indexes, window=window, boundless=boundless, fill_value=fill_value)
        except RasterioIOError as exc:
            raise _unreadable(path, exc) from None


def _unreadable(path: str | os.PathLike[str], exc: RasterioIOError) -> UnreadableRaster:
    """The one error for pixels GDAL could not decode (a truncated or corrupt block)."""
    return UnreadableRaster(f"Cannot read the pixels of {Path(path).name}: {first_line(exc)}",
                            "the file is probably truncated or corrupt; re-export it")


def read_window(path: str | os.PathLike[str] | rasterio.DatasetReader, indexes: list[int], window: Window,
                nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A window's pixels as a model sees them, and which of them are real: the one window reader of batch
    prediction and live tiles.

    Real means inside the raster, not ``nodata`` in every band, and inside the raster's footprint mask
    where it has one: a zone mosaic with missing patches (its VRT masks the gaps between sources) or a COG
    with an internal mask. Other pixels are zeros, as the model saw them in batch prediction; the read is
    boundless only where the window leaves the raster.

    ``path`` may be a dataset already open, kept open by the caller: the sliding windows of one scene then
    share GDAL's cache of decoded blocks (a JPEG 2000 dalle under a band stack is decoded once, not once per
    window that touches it).
    """
    col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    with nullcontext(path) if isinstance(path, rasterio.DatasetReader) else open_raster(path) as ds:
        r0, c0, r1, c1 = max(0, -row), max(0, -col), min(h, ds.height - row), min(w, ds.width - col)
        try:
            # a boundless read fills outside with fill_value: nodata itself, so those pixels are still recognised.
            # Inside, no fill_value: given one, rasterio reads every band's mask to write it over masked pixels
            # (5 mask reads of a stack's VRT made a window 7x slower), and masked pixels are zeroed below anyway
            boundless = (r0, c0, r1, c1) != (0, 0, h, w)
            data = ds.read(indexes, window=window, boundless=boundless,
                           fill_value=(nodata if nodata is not None else 0) if boundless else None)
            valid = np.zeros((h, w), dtype=bool)
            if r1 > r0 and c1 > c0:
                flags = ds.mask_flag_enums[0]
                if rasterio.enums.MaskFlags.per_dataset in flags and rasterio.enums.MaskFlags.all_valid not in flags:
                    valid[r0:r1, c0:c1] = ds.read_masks(1, window=Window(col + c0, row + r0, c1 - c0, r1 - r0)) > 0
                else:
                    valid[r0:r1, c0:c1] = True
        except RasterioIOError as exc:
            raise _unreadable(ds.name, exc) from None
    if nodata is not None:
        valid &= ~np.all(data == nodata, axis=0)
    data[:, ~valid] = 0
    return data, valid


def band_names_for(count: int) -> tuple[str, ...]:
    """Band names for an aerial image of ``count`` bands, or an error that lists what is accepted."""
    if count not in BAND_LAYOUTS:
        accepted = "; ".join(f"{n} bands ({', '.join(b)})" for n, b in sorted(BAND_LAYOUTS.items(), reverse=True))
        raise InvalidRaster(f"An aerial image with {count} band(s) is not supported", f"give an image with {accepted}")
    return BAND_LAYOUTS[count]


def read_last_pixel(info: RasterInfo) -> None:
    """Read the raster's last pixel: a truncated TIFF has a valid header but not its tail."""
    read(info.path, 1, window=Window(info.width - 1, info.height - 1, 1, 1))


def _check_readable(info: RasterInfo) -> None:
    """Require georeferencing, and the whole file to be there."""
    if info.crs is None:
        raise InvalidRaster(f"{info.path.name} has no CRS or georeference",
                          "assign one (e.g. gdal_edit.py -a_srs EPSG:2154 -a_ullr ...) before registering it")
    read_last_pixel(info)


def check_image_dtype(info: RasterInfo, name: str | None = None) -> RasterInfo:
    """Require the 8-bit bands FLAIR models read (:data:`IMAGE_DTYPE`), without reading a pixel.

    The one dtype rule of CLI prediction, batch jobs, live tiles and ``catalog validate``: a uint16 or
    float image would be normalised with the card's 0..255 statistics into a garbage map.
    """
    if info.dtype != IMAGE_DTYPE:
        raise InvalidRaster(
            f"{name or info.path.name} is {info.dtype}; FLAIR models expect {IMAGE_DTYPE} aerial images (0..255 "
            "per band)",
            "convert it to 8 bits per band with the range your sensor uses, e.g. "
            "gdal_translate -ot Byte -scale 0 4095 0 255 in.tif out.tif (check the range with gdalinfo -mm)",
        )
    return info


def check_image(path: str | os.PathLike[str], bands: tuple[str, ...] | None = None) -> RasterInfo:
    """Validate an aerial image: georeferenced, readable to its end, 8-bit, and with the declared band count."""
    info = describe(path)
    _check_readable(info)
    check_image_dtype(info)
    if bands is None:
        band_names_for(info.count)
    elif len(bands) != info.count:
        exists = BAND_LAYOUTS.get(info.count)
        has = f" ({', '.join(exists)})" if exists else ""
        raise InvalidRaster(
            f"{info.path.name} has {info.count} band(s){has} but is declared with {len(bands)}: {', '.join(bands)}",
            "declare the bands the file really has, in order (FLAIR: R, G, B, NIR, elevation)",
        )
    return info


def check_mask(path: str | os.PathLike[str], nomenclature: str = "flair1", scan_values: bool = True) -> RasterInfo:
    """Validate a class raster: one band, values within the nomenclature (scanned block by block)."""
    info = describe(path)
    _check_readable(info)
    check_class_raster(info)
    if scan_values:
        allowed = np.zeros(256, dtype=bool)
        allowed[list(classes.valid_values(nomenclature))] = True
        bad: set[int] = set()
        with open_raster(path) as ds:
            for _, win in ds.block_windows(1):
                try:
                    vals = np.unique(ds.read(1, window=win))
                except RasterioIOError:
                    raise UnreadableRaster(f"Cannot read the pixels of {info.path.name}",
                                      "the file is probably truncated or corrupt; re-export it") from None
                bad.update(int(v) for v in vals[~allowed[vals]])
        if bad:
            if nomenclature in classes.NOMENCLATURES:
                lo, hi = (1, classes.N_CLASSES) if nomenclature == "flair1" else (0, len(classes.FLAIRHUB_ORDER) - 1)
                span = f"{lo}..{hi}"
            else:  # a mapped nomenclature: the codes its mapping file lists
                span = ", ".join(map(str, sorted(classes.valid_values(nomenclature))))
            raise InvalidRaster(
                f"Mask {info.path.name} holds values {sorted(bad)} outside the {nomenclature} nomenclature ({span})",
                "check the nomenclature declared for this mask (flair1, flairhub or a mapped one), or remap its values",
            )
    return info


def check_class_raster(info: RasterInfo, name: str | None = None) -> RasterInfo:
    """Require one band of uint8 class codes: the one rule of evaluate, change, metrics and validate.

    A float raster is refused, never truncated: read as classes, 3.4 would silently count as class 3.
    """
    name = name or info.path.name
    if info.count != 1:
        raise InvalidRaster(f"Class raster {name} has {info.count} bands; a class raster has exactly 1",
                            "give the single-band class raster (ground truth MSK_*.tif or a prediction), not the image")
    if info.dtype != "uint8":
        kind = "floating-point values, which would be truncated into classes" if np.dtype(info.dtype).kind == "f" \
            else "values beyond one byte"
        raise InvalidRaster(f"Class raster {name} is {info.dtype} ({kind}); class rasters hold uint8 class codes",
                            "convert it to uint8 class codes, e.g. gdal_translate -ot Byte (round float values "
                            "first if they are not whole numbers)")
    return info


GRID_TOL_PX = 1e-3  # the one tolerance of grid comparisons: a thousandth of a pixel
RES_RTOL = 1e-6  # pixel sizes (and rotation terms) relative to the pixel size


def grid_offset(a: RasterInfo, b: RasterInfo) -> tuple[int, int] | None:
    """Integer (col, row) of b's top-left pixel in a's grid, or None when the grids are not one lattice.

    Two rasters share a lattice when they have the same CRS and pixel size/orientation and b's origin
    falls on a pixel corner of a (same phase): then pixels pair one to one without resampling.
    """
    if a.crs != b.crs:
        return None
    ta, tb = a.transform, b.transform
    scale = max(abs(ta.a), abs(ta.b), abs(ta.d), abs(ta.e))
    if any(abs(p - q) > RES_RTOL * scale for p, q in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e))):
        return None
    dc, dr = ~ta @ (tb.c, tb.f)
    if abs(dc - round(dc)) > GRID_TOL_PX or abs(dr - round(dr)) > GRID_TOL_PX:
        return None
    return round(dc), round(dr)


def check_same_grid(a: RasterInfo, b: RasterInfo) -> None:
    """Require two rasters to share CRS and pixel grid, as an image and its ground truth must."""
    if a.crs != b.crs:
        raise AlignmentError(
            f"{a.path.name} is in {a.crs} but {b.path.name} is in {b.crs}",
            "reproject one of them so both share a CRS (FLAIR uses EPSG:2154)",
        )
    if (a.width, a.height) != (b.width, b.height) or grid_offset(a, b) != (0, 0):
        raise AlignmentError(
            f"{a.path.name} ({a.width}x{a.height}, {tuple(round(v, 3) for v in a.bounds)}) and {b.path.name} "
            f"({b.width}x{b.height}, {tuple(round(v, 3) for v in b.bounds)}) are not on the same pixel grid",
            "give an image and ground truth of the same patch, or resample one onto the other's grid",
        )
