"""Catalog loading, FLAIR folder scanning and validation errors, on real GeoTIFFs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flair_viz.cli.main import main
from flair_viz.core import raster
from flair_viz.core.catalog import Catalog, Dataset, scan_flair_folder
from flair_viz.core.errors import AlignmentError, CatalogError, RasterError
from tests.helpers import DEMO_CATALOG, flair_folder, save_catalog, write_tif

rng = np.random.default_rng(0)


def img(bands=5, size=32):
    return rng.integers(0, 255, (bands, size, size), dtype=np.uint8)


def msk(size=32, lo=1, hi=19):
    return rng.integers(lo, hi + 1, (size, size), dtype=np.uint8)


def test_demo_catalog_lists_the_real_patches_with_metadata():
    cat = Catalog.load(DEMO_CATALOG)
    images = cat.by_role("image")
    assert {"IMG_000473", "IMG_084558", "IMG_034217", "IMG_050549"} <= {d.id for d in images}
    d = cat.get("IMG_000473")
    assert (d.domain, d.zone, d.vintage) == ("D004_2021", "Z6_NU", "2021-07-09")
    assert d.bands == ("R", "G", "B", "NIR", "elevation")
    assert cat.for_patch("000473", "truth").id == "MSK_000473"
    assert cat.validate_all(scan_values=True) == []


def test_scan_finds_images_and_masks_and_reads_metadata(tmp_path):
    root = flair_folder(tmp_path / "flair", {"000001": (img(), msk()), "000002": (img(4), None)})
    (root / "meta.json").write_text(json.dumps({"IMG_000001": {"domain": "D001_2020", "zone": "Z1_UA", "date": "2020-06-01"}}))
    found = {d.id: d for d in scan_flair_folder(root, metadata=root / "meta.json")}
    assert set(found) == {"IMG_000001", "MSK_000001", "IMG_000002"}
    assert found["IMG_000001"].vintage == "2020-06-01"
    assert found["IMG_000002"].bands == ("R", "G", "B", "NIR")
    assert found["MSK_000001"].role == "truth" and found["MSK_000001"].patch == "000001"


def test_corrupt_and_non_tiff_files_give_errors_naming_the_file(tmp_path):
    good = write_tif(tmp_path / "good.tif", img())
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[:300])
    fake = tmp_path / "notes.tif"
    fake.write_text("this is not a tiff")
    for path in (truncated, fake):
        with pytest.raises(RasterError) as e:
            raster.check_image(path)
        assert path.name in e.value.problem and e.value.fix


def test_band_count_mismatch_says_which_bands_exist(tmp_path):
    p = write_tif(tmp_path / "rgbi.tif", img(4))
    with pytest.raises(RasterError) as e:
        raster.check_image(p, ("R", "G", "B", "NIR", "elevation"))
    assert "4 band(s) (R, G, B, NIR)" in e.value.problem
    with pytest.raises(RasterError) as e:
        raster.check_image(write_tif(tmp_path / "two.tif", img(2)))
    assert "2 band(s)" in e.value.problem and "5 bands" in e.value.fix


def test_mask_errors_multiband_and_values_outside_nomenclature(tmp_path):
    with pytest.raises(RasterError, match="2 bands"):
        raster.check_mask(write_tif(tmp_path / "m2.tif", img(2)))
    bad = msk()
    bad[0, 0], bad[1, 1] = 42, 255
    with pytest.raises(RasterError) as e:
        raster.check_mask(write_tif(tmp_path / "m.tif", bad))
    assert "[42, 255]" in e.value.problem
    hub = msk(lo=0, hi=18)
    raster.check_mask(write_tif(tmp_path / "hub.tif", hub), "flairhub")  # valid FLAIR-HUB values pass


def test_crs_or_grid_mismatch_between_image_and_truth(tmp_path):
    a = raster.describe(write_tif(tmp_path / "a.tif", img()))
    b = raster.describe(write_tif(tmp_path / "b.tif", msk(), crs="EPSG:32631"))
    with pytest.raises(AlignmentError, match="EPSG:32631"):
        raster.check_same_grid(a, b)
    c = raster.describe(write_tif(tmp_path / "c.tif", msk(), origin=(961500.0, 6329262.4)))
    with pytest.raises(AlignmentError, match="same pixel grid"):
        raster.check_same_grid(a, c)
    root = tmp_path / "flair"
    write_tif(root / "D1" / "Z1" / "img" / "IMG_1.tif", img())
    write_tif(root / "D1" / "Z1" / "msk" / "MSK_1.tif", msk(), crs="EPSG:32631")
    with pytest.raises(AlignmentError, match="Patch 1"):
        scan_flair_folder(root)


def test_missing_file_unknown_id_and_outside_root(tmp_path):
    with pytest.raises(RasterError, match="nope.tif"):
        raster.describe(tmp_path / "nope.tif")
    cat = Catalog(tmp_path / "root")
    (tmp_path / "root").mkdir()
    with pytest.raises(CatalogError, match="Unknown dataset ID 'X'"):
        cat.get("X")
    outside = write_tif(tmp_path / "outside.tif", img())
    with pytest.raises(CatalogError, match="outside the catalog's data root"):
        cat.add(Dataset(id="OUT", path=outside, role="image"))
    with pytest.raises(CatalogError, match="outside"):
        cat.add(Dataset(id="OUT2", path=tmp_path / "root" / ".." / "outside.tif", role="image"))
    cat.add(Dataset(id="OUT", path=outside, role="image", outside_root=True))  # explicit: allowed
    assert cat.get("OUT").path == outside.resolve()
    with pytest.raises(CatalogError, match="Invalid dataset ID"):
        cat.add(Dataset(id="../etc", path=outside, role="image", outside_root=True))


def test_empty_folder_and_invalid_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="No FLAIR patches"):
        scan_flair_folder(tmp_path / "empty")
    root = flair_folder(tmp_path / "f", {"1": (img(), msk())})
    (root / "metadata.json").write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        scan_flair_folder(root)


def test_save_and_load_roundtrip(tmp_path):
    root = flair_folder(tmp_path / "f", {"7": (img(), msk())})
    cat = Catalog(root)
    for d in scan_flair_folder(root):
        cat.add(d)
    path = save_catalog(cat, tmp_path / "cat.toml")
    again = Catalog.load(path)
    assert [d.id for d in again] == [d.id for d in cat]
    assert again.get("IMG_7").path == cat.get("IMG_7").path


def test_cli_scan_and_list(tmp_path, capsys):
    root = flair_folder(tmp_path / "f", {"9": (img(), msk())})
    target = tmp_path / "c.toml"
    assert main(["catalog", "scan", str(root), "--catalog", str(target)]) == 0
    assert main(["catalog", "list", "--catalog", str(target)]) == 0
    out = capsys.readouterr().out
    assert "IMG_9" in out and "MSK_9" in out
    assert main(["catalog", "list", "--catalog", str(tmp_path / "missing.toml")]) == 2
    assert "Catalog file not found" in capsys.readouterr().err
