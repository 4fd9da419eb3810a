"""Band stacks: BD ORTHO RGB and IRC dalles and an elevation product, seen as one 5-band image.

IGN delivers BD ORTHO as RGB and IRC (NIR, R, G) products in separate dalles (JPEG 2000 or GeoTIFF),
and elevation as yet another product (a ready nDSM, or a surface and a terrain model). A FLAIR model
reads R, G, B, NIR, elevation from one file. A ``[[stack]]`` catalog entry names each product::

    [[stack]]
    id = "HERAULT_2021"
    title = "Hérault 2021, BD ORTHO"
    rgb = "ortho/rvb"          # a file, a folder or a glob of dalles with bands R, G, B
    irc = "ortho/irc"          # optional: NIR, R, G
    elevation = "ndsm"         # optional: a ready elevation band; or dsm = "…" and dtm = "…"
    vintage = "2021"

and this module turns it into ONE VRT, so the one window reader (:func:`flair_viz.core.raster.read_window`),
the tile server and batch prediction read a stack exactly as they read a FLAIR patch, by path:

* each layer is a seamless mosaic of its dalles (:func:`flair_viz.core.vrt.write_mosaic`, gaps masked);
* every layer is laid on the RGB layer's grid: pixel for pixel (nearest) at the same resolution,
  bilinear at another (an elevation model at 0.5 m or 1 m is smooth; a nearest 1 m model would print
  its pixel blocks into a 0.2 m image);
* the elevation of a DSM/DTM pair is computed inside the VRT (GDAL's ``diff`` pixel function on the two
  models scaled by :data:`flair_viz.core.elevation.SCALE`; a byte band clips to 0..255): nothing is
  written per dalle, and a windowed read computes only its window. Why not a cached COG: a département's
  DSM/DTM pair would be rewritten at 0.2 m (tens of GB) before the first tile could show;
* the stack's mask is the product of the layers' masks: a pixel is real only where every layer has data.
  A layer's mask follows the one rule of :func:`flair_viz.core.raster.read_window` (and GDAL's dataset
  mask): with a nodata value, a pixel is a hole only where EVERY band of the layer holds it. Band 1's
  nodata alone is not a hole: BD ORTHO tiles that declare nodata 255 have saturated white roofs reading
  255 in one band, real pixels a model must see (the demo's RGB tile has 27 of them in red, 4 in all bands);

The VRTs are written once under the cache folder, keyed by the entry and the stamps of every dalle
(:mod:`flair_viz.core.stamps`), so a catalog load only ``stat``s the dalles.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from flair_viz.core import atomic, config, elevation, raster, stamps, vrt
from flair_viz.core.dataset import Dataset
from flair_viz.core.errors import AlignmentError, InvalidCatalog, InvalidRaster, MissingSource, OutsideDataRoot, context

CACHE_FOLDER, VRT_NAME = "stacks", "stack.vrt"  # a stack is <cache>/stacks/<id>-<key>/stack.vrt (core/handles.py knows it)
FORMAT = 3  # bumped when what a stack writes changes (2: layer masks, dalles.json; 3: one mask read without nodata)
LAYER_KEYS = ("rgb", "irc", "elevation", "dsm", "dtm")
FIELDS = ("id", "title", *LAYER_KEYS, "vintage")  # the order of the documented form
DALLE_SUFFIXES = (".jp2", ".tif", ".tiff")
# Which layer gives a band: the error of a model needing a band a stack lacks names the key to add.
LAYER_OF_BAND = {"R": "rgb", "G": "rgb", "B": "rgb", "NIR": "irc", "elevation": "elevation"}
LAYER_HINT = {"rgb": "rgb = \"…\"", "irc": "irc = \"…\" (the IRC dalles: NIR, R, G)",
              "elevation": "elevation = \"…\" (a ready nDSM), or dsm = \"…\" and dtm = \"…\""}


def layers_fix(missing_bands: list[str]) -> str:
    """What a stack needs for the bands a model misses, naming the layer key (``; for a [[stack]]: elevation:
    add elevation = … to the [[stack]]``), or "" when no layer gives them."""
    keys = list(dict.fromkeys(LAYER_OF_BAND[b] for b in missing_bands if b in LAYER_OF_BAND))
    return "".join(f"; for a [[stack]] image: {k}: add {LAYER_HINT[k]} to the [[stack]]" for k in keys)


@dataclass(frozen=True)
class StackEntry:
    """A ``[[stack]]`` entry as a person wrote it: each layer a file, a folder or a glob under the data root."""

    id: str
    rgb: str
    title: str = ""
    vintage: str | None = None
    irc: str | None = None
    elevation: str | None = None
    dsm: str | None = None
    dtm: str | None = None

    @classmethod
    def from_toml(cls, entry: Mapping[str, object], where: str) -> StackEntry:
        """The entry, or an InvalidCatalog naming the key that is wrong and the form that works."""
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise InvalidCatalog(f"{where}: unknown key(s) {', '.join(unknown)}",
                                 f"a [[stack]] takes {', '.join(FIELDS)} (see the README, 'Your own BD ORTHO')")
        if not entry.get("id") or not entry.get("rgb"):
            raise InvalidCatalog(f"{where}: a [[stack]] needs an id and an rgb layer",
                                 'add id = "MY_AREA" and rgb = "<file, folder or glob of the RGB dalles>"')
        if entry.get("elevation") and (entry.get("dsm") or entry.get("dtm")):
            raise InvalidCatalog(f"{where}: elevation and dsm/dtm are both given",
                                 "give either a ready elevation band (elevation = …) or a dsm and a dtm, not both")
        if bool(entry.get("dsm")) != bool(entry.get("dtm")):
            raise InvalidCatalog(f"{where}: {'dsm' if entry.get('dsm') else 'dtm'} is given without "
                                 f"{'dtm' if entry.get('dsm') else 'dsm'}",
                                 "the elevation band is the surface (dsm) minus the terrain (dtm): give both")
        return cls(**{k: (None if v is None else str(v)) for k, v in entry.items()})

    def layers(self) -> dict[str, str]:
        """The layers given, in band order: rgb, then irc, then elevation or dsm and dtm."""
        return {k: getattr(self, k) for k in LAYER_KEYS if getattr(self, k)}

    def bands(self) -> tuple[str, ...]:
        return ("R", "G", "B") + (("NIR",) if self.irc else ()) + \
            (("elevation",) if self.elevation or self.dsm else ())

    def to_toml(self) -> dict[str, str]:
        """The entry as the catalog writer stores it, keys in the documented order."""
        return {k: getattr(self, k) for k in FIELDS if getattr(self, k)}


@dataclass(frozen=True)
class Layer:
    """One product of a stack: its dalles' headers and the seamless mosaic (VRT) written over them."""

    key: str
    infos: tuple[raster.RasterInfo, ...]
    mosaic: raster.RasterInfo  # the layer's VRT

    @property
    def dalles(self) -> int:
        return len(self.infos)


def find_dalles(key: str, spec: str, root: Path) -> list[Path]:
    """The dalles a layer names: a file, every raster in a folder (and its subfolders, as IGN delivers
    them), or a glob; relative to the data root. Nothing found is an error naming the key and the pattern."""
    where = Path(spec) if os.path.isabs(spec) else root / spec
    if where.is_file():
        files = [where]
    elif where.is_dir():
        files = sorted(p for p in where.rglob("*") if p.suffix.lower() in DALLE_SUFFIXES and p.is_file())
    else:
        pattern = os.path.relpath(where, root) if where.is_relative_to(root) else None
        files = sorted(p for p in root.glob(pattern) if p.is_file()) if pattern and not pattern.startswith("..") else []
    if not files:
        raise MissingSource(f"layer {key}: {spec!r} matches no raster under the data root {root}",
                            f"give a file, a folder of .jp2/.tif dalles or a glob such as \"ortho/*.jp2\", relative "
                            f"to {root}")
    outside = [p for p in files if not p.resolve().is_relative_to(root)]
    if outside:
        raise OutsideDataRoot(f"layer {key}: {outside[0]} is outside the catalog's data root {root}",
                              "move the dalles under the data root, or set data_root so that it holds them")
    return files


def cache_key(entry: StackEntry, files: Mapping[str, list[Path]]) -> str:
    """The entry and every dalle's stamp: replacing, adding or removing a dalle writes new VRTs."""
    stamped = {k: [stamps.file_stamp(p) for p in v] for k, v in files.items()}
    text = json.dumps([FORMAT, entry.to_toml(), stamped], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def load(entry: StackEntry, root: Path, out_root: Path | None = None) -> Dataset:
    """The stack as a catalog image: its VRT, written once (cached by :func:`cache_key`), and its bands.

    Errors name the stack and the layer (``[[stack]] HERAULT_2021, layer irc: …``) with the fix.
    """
    root = Path(root).resolve()
    with context(f"[[stack]] {entry.id}"):
        files = {k: find_dalles(k, spec, root) for k, spec in entry.layers().items()}
        out = (out_root or config.cache_dir() / CACHE_FOLDER) / f"{entry.id}-{cache_key(entry, files)}"
        path = out / VRT_NAME
        if not path.exists():  # written last: its presence means the layers are done
            layers = [_layer(k, v, out) for k, v in files.items()]
            _check_layers(layers)
            write_dalles(layers, out / DALLES_FILE)
            write_stack(layers, path)
    extra = {"stack": ",".join(files), "dalles": str(len(files["rgb"]))}
    return Dataset(id=entry.id, path=path, role="image", vintage=entry.vintage, bands=entry.bands(),
                   title=entry.title or entry.id, outside_root=not path.resolve().is_relative_to(root), extra=extra)


DALLES_FILE = "dalles.json"  # beside stack.vrt: every layer's dalles and their EPSG:2154 bounds


def write_dalles(layers: list[Layer], path: Path) -> Path:
    """Each layer's dalles (absolute path, bounds): Overview draws one footprint per dalle and ``predict`` refuses
    an output over one, without re-reading a header."""
    doc = {layer.key: [{"path": str(Path(i.path).resolve()), "bounds": [float(v) for v in i.bounds]}
                       for i in layer.infos] for layer in layers}
    return atomic.write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def is_stack(ds: Dataset) -> bool:
    """Whether a catalog image is a ``[[stack]]`` (its VRT lies beside its dalle list)."""
    return bool(ds.extra.get("stack")) and (Path(ds.path).parent / DALLES_FILE).is_file()


def dalles(ds: Dataset, key: str | None = None) -> list[tuple[Path, tuple[float, float, float, float]]]:
    """The dalles of a stack image (one layer's with ``key``, else every layer's) as (path, L93 bounds); [] for
    any other image."""
    if not is_stack(ds):
        return []
    doc = json.loads((Path(ds.path).parent / DALLES_FILE).read_text(encoding="utf-8"))
    return [(Path(d["path"]), tuple(d["bounds"])) for k, v in doc.items() if key in (None, k) for d in v]


def _layer(key: str, files: list[Path], out: Path) -> Layer:
    """One layer's dalles, checked (georeferenced, EPSG:2154, 8-bit for image layers) and mosaicked."""
    with context(f"layer {key}"):
        infos = tuple(raster.describe(p) for p in files)
        for info in infos:
            if info.crs is None:
                raise InvalidRaster(f"{info.path.name} has no CRS or georeference",
                                    "give the dalles with their georeference (a .jp2/.tif with its CRS, or its "
                                    ".tfw/.aux.xml beside it), in EPSG:2154")
            if info.crs != raster.LAMBERT93:
                raise AlignmentError(f"{info.path.name} is in {info.crs.to_string()}, not EPSG:2154 (Lambert-93): "
                                     "a stack is laid on the Lambert-93 grid of its RGB dalles",
                                     f"reproject it first: gdalwarp -t_srs EPSG:2154 {info.path.name} out.tif")
            if key in ("rgb", "irc"):
                raster.check_image_dtype(info)
        if key == "rgb" and infos[0].count < 3:
            raise InvalidRaster(f"{infos[0].path.name} has {infos[0].count} band(s); the rgb layer needs R, G, B",
                                "give the BD ORTHO RVB dalles as rgb (the IRC ones go to irc)")
        mosaic = raster.describe(vrt.write_mosaic(list(infos), out / f"{key}.vrt"))
        _write_layer_mask(mosaic, out / f"{key}_mask.vrt")
    return Layer(key, infos, mosaic)


def _write_layer_mask(mosaic: raster.RasterInfo, path: Path) -> Path:
    """A layer's mask on its own grid: 255 where ANY band holds data (the sum of the bands' masks, saturated
    to a byte), 0 where every band is nodata or outside every dalle: :func:`raster.read_window`'s rule. Without
    a nodata value every band has the one footprint mask: band 1's is read alone (each mask read decodes the
    dalle again: three of them made JP2 tiles slower)."""
    t = mosaic.transform
    name = escape(mosaic.path.name)
    rect = f'xOff="0" yOff="0" xSize="{mosaic.width}" ySize="{mosaic.height}"'
    sources = [f'    <ComplexSource>\n      <SourceFilename relativeToVRT="1">{name}</SourceFilename>\n'
               f"      <SourceBand>mask,{b}</SourceBand>\n      <SrcRect {rect}/>\n      <DstRect {rect}/>\n"
               "    </ComplexSource>" for b in range(1, (mosaic.count if mosaic.nodata is not None else 1) + 1)]
    lines = [f'<VRTDataset rasterXSize="{mosaic.width}" rasterYSize="{mosaic.height}">',
             f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(raster.LAMBERT93.to_wkt())}</SRS>',
             f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
             *_combined("sum", sources, ' band="1"', "  "), "</VRTDataset>", ""]
    return atomic.write_text(path, "\n".join(lines))


def _check_layers(layers: list[Layer]) -> None:
    """Every layer must overlap the RGB layer; one that does not is named with both extents."""
    rgb = layers[0].mosaic
    for layer in layers[1:]:
        b = layer.mosaic.bounds
        if b[0] >= rgb.bounds[2] or b[2] <= rgb.bounds[0] or b[1] >= rgb.bounds[3] or b[3] <= rgb.bounds[1]:
            raise AlignmentError(f"layer {layer.key} ({_box(b)}) does not overlap the rgb layer ({_box(rgb.bounds)})",
                                 f"give {layer.key} dalles of the same area as the RGB ones (same département "
                                 "and year)")


def _box(b: tuple[float, ...]) -> str:
    return f"x {b[0]:.0f}..{b[2]:.0f}, y {b[1]:.0f}..{b[3]:.0f} m"


def write_stack(layers: list[Layer], path: Path) -> Path:
    """The stack VRT on the RGB layer's grid: R, G, B, then NIR (IRC band 1), then elevation, and the mask."""
    by_key = {layer.key: layer for layer in layers}
    grid = by_key["rgb"].mosaic
    t = grid.transform
    wkt = raster.LAMBERT93.to_wkt()
    lines = [f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">',
             f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(wkt)}</SRS>',
             f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>"]
    bands = [[_source(grid, by_key["rgb"], b)] for b in (1, 2, 3)]
    if "irc" in by_key:
        bands.append([_source(grid, by_key["irc"], 1)])
    for n, sources in enumerate(bands, 1):
        lines += [f'  <VRTRasterBand dataType="Byte" band="{n}">', *sources, "  </VRTRasterBand>"]
    if "elevation" in by_key or "dsm" in by_key:
        lines += _elevation_band(grid, by_key, len(bands) + 1)
    masks = [_source(grid, layer, 1, resampling="nearest", file=f"{layer.key}_mask.vrt") for layer in layers]
    lines += ["  <MaskBand>", *_combined("mul", masks, "", "    "), "  </MaskBand>", "</VRTDataset>", ""]
    return atomic.write_text(path, "\n".join(lines))


def _combined(function: str, sources: list[str], attrs: str, indent: str) -> list[str]:
    """A byte band of ``function`` (GDAL's ``sum``, ``mul``) over the sources, saturated to 0..255; one source is
    read as it is: GDAL's pixel functions need two or more and return garbage for one (an RGB-only stack, a
    one-band layer)."""
    if len(sources) == 1:
        return [f'{indent}<VRTRasterBand dataType="Byte"{attrs}>', *sources, f"{indent}</VRTRasterBand>"]
    return [f'{indent}<VRTRasterBand dataType="Byte"{attrs} subClass="VRTDerivedRasterBand">',
            f"{indent}  <PixelFunctionType>{function}</PixelFunctionType>",
            f"{indent}  <SourceTransferType>Float64</SourceTransferType>", *sources, f"{indent}</VRTRasterBand>"]


def _elevation_band(grid: raster.RasterInfo, by_key: Mapping[str, Layer], band: int) -> list[str]:
    """A ready 8-bit band is copied; a float one is metres, scaled; a DSM/DTM pair is their scaled difference."""
    scale, offset = elevation.SCALE, elevation.OFFSET
    if "elevation" in by_key:
        layer = by_key["elevation"]
        metres = np.dtype(layer.mosaic.dtype) != np.uint8
        src = _source(grid, layer, 1, scale=(offset, scale) if metres else None)
        return [f'  <VRTRasterBand dataType="Byte" band="{band}">', src, "  </VRTRasterBand>"]
    return [f'  <VRTRasterBand dataType="Byte" band="{band}" subClass="VRTDerivedRasterBand">',
            "    <PixelFunctionType>diff</PixelFunctionType>", "    <SourceTransferType>Float64</SourceTransferType>",
            _source(grid, by_key["dsm"], 1, scale=(offset, scale)), _source(grid, by_key["dtm"], 1, scale=(0.0, scale)),
            "  </VRTRasterBand>"]


def placement(grid: raster.RasterInfo, layer: raster.RasterInfo) -> tuple[float, float, float, float]:
    """Where a layer's mosaic lies on the RGB grid, in RGB pixels: (x offset, y offset, width, height)."""
    g, t = grid.transform, layer.transform
    xoff, yoff = (t.c - g.c) / g.a, (t.f - g.f) / g.e
    xsize, ysize = layer.width * t.a / g.a, layer.height * t.e / g.e
    return tuple(round(v) if abs(v - round(v)) < 1e-6 else v for v in (xoff, yoff, xsize, ysize))


def _source(grid: raster.RasterInfo, layer: Layer, band: int | str, scale: tuple[float, float] | None = None,
            resampling: str | None = None, file: str | None = None) -> str:
    """One ComplexSource reading a layer's mosaic (or ``file``, on the same grid: its mask) onto the RGB grid
    (bilinear where the resolution differs)."""
    info = layer.mosaic
    xoff, yoff, xsize, ysize = placement(grid, info)
    same = (xsize, ysize) == (info.width, info.height)
    method = resampling or ("" if same else "bilinear")
    lines = [f'    <ComplexSource{f" resampling={chr(34)}{method}{chr(34)}" if method else ""}>',
             f'      <SourceFilename relativeToVRT="1">{escape(file or info.path.name)}</SourceFilename>',
             f"      <SourceBand>{band}</SourceBand>",
             f'      <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
             f'      <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{xsize}" ySize="{ysize}"/>']
    if scale is not None:
        lines += [f"      <ScaleOffset>{scale[0]!r}</ScaleOffset>", f"      <ScaleRatio>{scale[1]!r}</ScaleRatio>"]
    return "\n".join(lines + ["    </ComplexSource>"])
