"""Band stacks on real FLAIR-1 pixels: patches cut into BD ORTHO-like RGB and IRC JP2 dalles (lossless) and an
elevation GeoTIFF, on a dalle grid that does not follow the patch grid; the stack must give back the original
5-band mosaic's pixels, and the same predictions. Plus the elevation formula, a DSM/DTM pair at another
resolution, and every bad stack named with its layer and fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from flair_viz.core import elevation, raster, stack
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import AlignmentError, InvalidCatalog, MissingSource

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "data" / "demo" / "flair1" / "D034_2021" / "Z6_NU" / "img"
LOSSLESS_JP2 = {"driver": "JP2OpenJPEG", "QUALITY": "100", "REVERSIBLE": "YES"}


def flair_block(n: int = 2) -> tuple[np.ndarray, rasterio.Affine]:
    """The top-left n × n block of the real Z6_NU patches as one 5-band array, and its transform."""
    infos = [raster.describe(p) for p in sorted(PATCHES.glob("IMG_*.tif"))]
    left, top = min(i.bounds[0] for i in infos), max(i.bounds[3] for i in infos)
    res = infos[0].transform.a
    out = np.zeros((5, 512 * n, 512 * n), np.uint8)
    found = 0
    for info in infos:
        col, row = round((info.bounds[0] - left) / res), round((top - info.bounds[3]) / res)
        if col < 512 * n and row < 512 * n:
            out[:, row:row + 512, col:col + 512] = raster.read(info.path)
            found += 1
    assert found == n * n, "the demo zone is a complete block"
    return out, rasterio.Affine(res, 0, left, 0, -res, top)


def write(path: Path, data: np.ndarray, transform: rasterio.Affine, **opts) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": "EPSG:2154", "transform": transform, **opts}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def cut(folder: Path, data: np.ndarray, transform: rasterio.Affine, size: tuple[int, int], stem: str,
        **opts) -> list[Path]:
    """Dalles of ``size`` (w, h) px over ``data``, starting at its corner: the last row and column are smaller."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".jp2" if opts.get("driver") == "JP2OpenJPEG" else ".tif"
    paths = []
    for r in range(0, data.shape[1], size[1]):
        for c in range(0, data.shape[2], size[0]):
            part = data[:, r:r + size[1], c:c + size[0]]
            paths.append(write(folder / f"{stem}_{r}_{c}{suffix}", np.ascontiguousarray(part),
                               transform @ rasterio.Affine.translation(c, r), **opts))
    return paths


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> tuple[Path, np.ndarray, rasterio.Affine]:
    """A data root with rgb/ (R, G, B) and irc/ (NIR, R, G) JP2 dalles cut on two grids that follow neither the
    512 px patch grid nor each other, and one elevation GeoTIFF; and the original mosaic they were cut from."""
    root = tmp_path_factory.mktemp("delivery")
    img, transform = flair_block(2)
    cut(root / "ortho" / "rvb", img[[0, 1, 2]], transform, (384, 300), "RVB", **LOSSLESS_JP2)
    cut(root / "ortho" / "irc", img[[3, 0, 1]], transform, (700, 450), "IRC", **LOSSLESS_JP2)
    write(root / "ndsm.tif", img[[4]], transform)
    return root, img, transform


def catalog_with(root: Path, body: str) -> Path:
    path = root / "catalog.toml"
    path.write_text(f'data_root = "."\n\n[[stack]]\n{body}\n', encoding="utf-8")
    return path


FULL = 'id = "HERAULT_2021"\ntitle = "Hérault 2021"\nrgb = "ortho/rvb"\nirc = "ortho/irc/*.jp2"\n' \
       'elevation = "ndsm.tif"\nvintage = "2021"'


def test_jp2_dalles_are_lossless(delivery):
    root, img, _ = delivery
    with rasterio.open(root / "ortho" / "rvb" / "RVB_300_384.jp2") as ds:
        assert ds.driver == "JP2OpenJPEG"
        assert np.array_equal(ds.read(), img[:3, 300:600, 384:768])


def test_stack_gives_back_the_original_five_band_mosaic(delivery):
    root, img, transform = delivery
    cat = Catalog.load(catalog_with(root, FULL))
    ds = cat.get("HERAULT_2021")
    assert ds.role == "image" and ds.bands == ("R", "G", "B", "NIR", "elevation") and ds.vintage == "2021"
    assert ds.extra["stack"] == "rgb,irc,elevation" and ds.extra["dalles"] == str(len(list((root / "ortho" / "rvb").glob("*.jp2"))))
    with rasterio.open(ds.path) as src:
        assert (src.count, src.width, src.height) == (5, 1024, 1024) and src.transform.almost_equals(transform)
        assert np.array_equal(src.read(), img)
        assert (src.read_masks(1) == 255).all()
    data, valid = raster.read_window(ds.path, [1, 2, 3, 4, 5], Window(900, -20, 200, 200), None)
    assert valid[20:, :124].all() and not valid[:20].any() and not valid[:, 124:].any()
    assert np.array_equal(data[:, 20:, :124], img[:, :180, 900:])


def test_a_model_reads_the_stack_as_it_reads_the_mosaic(delivery, model_dir, tmp_path, monkeypatch):
    """Batch prediction of the stack equals prediction of the original mosaic as one GeoTIFF."""
    from flair_viz.predict import inference, models
    from tests.model_fixtures import make_model

    root, img, transform = delivery
    make_model(model_dir, "tiny", "safetensors")
    loaded = models.load_model("tiny", "cpu")
    ds = Catalog.load(catalog_with(root, FULL)).get("HERAULT_2021")
    original = write(tmp_path / "mosaic.tif", img, transform, tiled=True, blockxsize=256, blockysize=256)
    a = inference.predict_file(loaded, ds.path, tmp_path / "stack_pred.tif", progress=False, bands=ds.bands)
    b = inference.predict_file(loaded, original, tmp_path / "mosaic_pred.tif", progress=False)
    with rasterio.open(a) as pa, rasterio.open(b) as pb:
        got, want = pa.read(1), pb.read(1)
    assert got.shape == (1024, 1024) and (want > 0).all()
    assert np.array_equal(got, want)


def test_a_stack_without_irc_or_elevation_has_only_its_bands(delivery):
    root, img, _ = delivery
    ds = Catalog.load(catalog_with(root, 'id = "RGB_ONLY"\nrgb = "ortho/rvb/*.jp2"')).get("RGB_ONLY")
    assert ds.bands == ("R", "G", "B")
    with rasterio.open(ds.path) as src:
        assert src.count == 3 and np.array_equal(src.read(), img[:3])
        # one layer, one mask source: read as it is (GDAL's pixel functions need two sources or more)
        assert (src.read_masks(1) == 255).all() and (src.read_masks(1) == 255).all()


def test_missing_band_names_the_layer_to_add(delivery, model_dir):
    from flair_viz.predict import bands, cards
    from tests.model_fixtures import make_model

    root, _, _ = delivery
    ds = Catalog.load(catalog_with(root, 'id = "RGBN"\nrgb = "ortho/rvb"\nirc = "ortho/irc"')).get("RGBN")
    make_model(model_dir, "five", "safetensors")
    make_model(model_dir, "four", "safetensors", in_bands=["R", "G", "B", "NIR"])
    assert bands.band_indexes(cards.get_card("four"), ds.bands, ds.id) == [1, 2, 3, 4]
    with pytest.raises(Exception) as exc:
        bands.band_indexes(cards.get_card("five"), ds.bands, ds.id)
    assert "missing elevation" in exc.value.problem
    assert 'elevation: add elevation = "…" (a ready nDSM), or dsm = "…" and dtm = "…" to the [[stack]]' in exc.value.fix


# -- elevation ----------------------------------------------------------------------------------------
def test_elevation_formula_on_known_values():
    dsm = np.array([[100.0, 100.2, 110.0, 99.0], [100.5, 160.0, 100.25, np.nan]])
    dtm = np.full_like(dsm, 100.0)
    got = elevation.ndsm_uint8(dsm, dtm)
    # 0 m → 0; 0.2 m → 1 level; 10 m → 50; below ground → 0; 2.5 levels → 3 (half up, as GDAL); 60 m → 255;
    # 1.25 levels → 1; a hole → 0
    assert got.tolist() == [[0, 1, 50, 0], [3, 255, 1, 0]] and got.dtype == np.uint8
    assert elevation.height_to_uint8(np.array([51.0, 50.9, 0.3]), scale=5).tolist() == [255, 255, 2]


def test_dsm_dtm_at_another_resolution_is_computed_bilinear(delivery, tmp_path):
    """A 1 m DSM that is a tilted plane, over a 1 m flat DTM: bilinear resampling of a plane is exact, so inside
    the models' extent the stack's band equals the formula at each 0.2 m pixel centre. The models are float32,
    as LiDAR HD's are: pixels within a thousandth of a level of a rounding boundary may round either way and are
    left out (under 1 % of them)."""
    root, img, transform = delivery
    left, top = transform.c, transform.f
    res = 1.0
    n = 1024 // 5  # 204.8 m of image = 204 full 1 m pixels
    ys, xs = np.mgrid[0:n, 0:n]
    height = 2.0137 + 0.0531 * xs + 0.1093 * ys  # metres above the DTM, at 1 m pixel centres
    (root / "lidar").mkdir(exist_ok=True)
    grid = from_origin(left, top, res, res)
    write(root / "lidar" / "mns.tif", (300.0 + height)[None].astype(np.float32), grid)
    write(root / "lidar" / "mnt.tif", np.full((1, n, n), 300.0, np.float32), grid)
    body = 'id = "PAIR"\nrgb = "ortho/rvb"\ndsm = "lidar/mns.tif"\ndtm = "lidar/mnt.tif"'
    ds = Catalog.load(catalog_with(root, body)).get("PAIR")
    assert ds.bands == ("R", "G", "B", "elevation")
    with rasterio.open(ds.path) as src:
        band, mask = src.read(4), src.read_masks(1)
    # image pixel (r, c) has its centre at (c + 0.5) * 0.2 m: (c + 0.5) / 5 - 0.5 in 1 m pixel coordinates
    r, c = np.mgrid[0:1024, 0:1024]
    fx, fy = (c + 0.5) / 5 - 0.5, (r + 0.5) / 5 - 0.5
    levels = (2.0137 + 0.0531 * fx + 0.1093 * fy) * elevation.SCALE
    want = elevation.height_to_uint8(levels / elevation.SCALE)
    inside = (fx >= 0) & (fy >= 0) & (fx <= n - 1) & (fy <= n - 1)
    clear = inside & (np.abs(levels - np.floor(levels) - 0.5) > 1e-3)
    assert clear.sum() > 0.99 * inside.sum() and want[inside].min() < 20 and want[inside].max() > 100
    assert np.array_equal(band[clear], want[clear])
    assert (mask[: n * 5, : n * 5] == 255).all() and (mask[n * 5:, :] == 0).all()


# -- bad stacks -----------------------------------------------------------------------------------------
def test_a_glob_matching_nothing_names_the_layer(delivery):
    root, _, _ = delivery
    with pytest.raises(MissingSource) as exc:
        Catalog.load(catalog_with(root, 'id = "X"\nrgb = "ortho/rvb"\nirc = "ortho/irc/*.ecw"'))
    assert "[[stack]] X: layer irc: 'ortho/irc/*.ecw' matches no raster" in exc.value.problem
    assert "glob" in exc.value.fix


def test_layers_that_do_not_overlap_are_refused(delivery, tmp_path):
    root, img, transform = delivery
    far = transform @ rasterio.Affine.translation(100_000, 0)
    write(root / "far_ndsm.tif", img[[4]], far)
    with pytest.raises(AlignmentError) as exc:
        Catalog.load(catalog_with(root, 'id = "FAR"\nrgb = "ortho/rvb"\nelevation = "far_ndsm.tif"'))
    assert "layer elevation" in exc.value.problem and "does not overlap the rgb layer" in exc.value.problem
    assert "same area" in exc.value.fix


def test_a_layer_in_another_crs_is_refused_with_the_reprojection(delivery):
    root, img, _ = delivery
    utm = {"crs": "EPSG:32631"}
    write(root / "utm.tif", img[[4]], from_origin(560000, 4830000, 0.2, 0.2), **utm)
    with pytest.raises(AlignmentError) as exc:
        Catalog.load(catalog_with(root, 'id = "UTM"\nrgb = "ortho/rvb"\nelevation = "utm.tif"'))
    assert "layer elevation: utm.tif is in EPSG:32631, not EPSG:2154" in exc.value.problem
    assert "gdalwarp -t_srs EPSG:2154" in exc.value.fix


def test_dalles_of_one_layer_with_different_resolutions_are_refused(delivery):
    root, img, transform = delivery
    mixed = root / "mixed"
    mixed.mkdir(exist_ok=True)
    write(mixed / "a.tif", img[:3, :512, :512], transform)
    coarse = rasterio.Affine(0.5, 0, transform.c + 102.4, 0, -0.5, transform.f)
    write(mixed / "b.tif", img[:3, :200, :200], coarse)
    with pytest.raises(AlignmentError) as exc:
        Catalog.load(catalog_with(root, 'id = "MIXED"\nrgb = "mixed"'))
    assert "[[stack]] MIXED: layer rgb:" in exc.value.problem and "0.5 m pixels" in exc.value.problem
    assert "one resolution" in exc.value.fix


@pytest.mark.parametrize("body, words", [
    ('id = "A"\nrgb = "ortho/rvb"\ndsm = "x.tif"', "dsm is given without dtm"),
    ('id = "A"\nrgb = "ortho/rvb"\nelevation = "ndsm.tif"\ndsm = "a"\ndtm = "b"', "elevation and dsm/dtm"),
    ('id = "A"\nirc = "ortho/irc"', "needs an id and an rgb layer"),
    ('id = "A"\nrgb = "ortho/rvb"\nnir = "ortho/irc"', "unknown key(s) nir"),
])
def test_bad_entries_are_named(delivery, body, words):
    root, _, _ = delivery
    with pytest.raises(InvalidCatalog) as exc:
        Catalog.load(catalog_with(root, body))
    assert words in exc.value.problem and "[[stack]]" in exc.value.problem


def test_the_vrts_are_cached_by_the_dalles_stamps(delivery):
    root, _, _ = delivery
    first = Catalog.load(catalog_with(root, 'id = "C"\nrgb = "ortho/rvb"')).get("C").path
    assert Catalog.load(catalog_with(root, 'id = "C"\nrgb = "ortho/rvb"')).get("C").path == first
    dalle = root / "ortho" / "rvb" / "RVB_0_0.jp2"
    st = dalle.stat()
    import os

    os.utime(dalle, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert Catalog.load(catalog_with(root, 'id = "C"\nrgb = "ortho/rvb"')).get("C").path != first
    assert stack.StackEntry.from_toml({"id": "C", "rgb": "ortho/rvb"}, "x").bands() == ("R", "G", "B")


def test_a_layer_without_a_crs_is_refused_with_the_georeference_fix(delivery):
    """No CRS at all: nothing to reproject from, so the error asks for the georeference, naming the layer."""
    from flair_viz.core.errors import InvalidRaster

    root, img, _ = delivery
    bare = root / "bare"
    bare.mkdir(exist_ok=True)
    with rasterio.open(bare / "irc.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(img[[3, 0, 1], :64, :64])
    with pytest.raises(InvalidRaster) as exc:
        Catalog.load(catalog_with(root, 'id = "BARE"\nrgb = "ortho/rvb"\nirc = "bare"'))
    assert "[[stack]] BARE: layer irc: irc.tif has no CRS or georeference" in exc.value.problem
    assert ".tfw" in exc.value.fix and "EPSG:2154" in exc.value.fix
