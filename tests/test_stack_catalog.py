"""``flair-viz catalog stack`` writes the documented ``[[stack]]`` entry through the one catalog writer; the demo
catalog registers its BD ORTHO pair as a stack; Explore offers only the models a stack's bands can feed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import rasterio

from flair_viz.cli.main import main
from flair_viz.core import raster
from flair_viz.core.catalog import Catalog
from tests.test_stack import delivery  # noqa: F401  (the fixture: real FLAIR-1 pixels cut into JP2 dalles)

REPO = Path(__file__).resolve().parents[1]
HAND_WRITTEN = "# my own catalog\ndata_root = \".\"\n\n[[dataset]]\n# kept\nid = \"NDSM\"\npath = \"ndsm.tif\"\nrole = \"image\"\nbands = [\"elevation\"]\n"


def test_catalog_stack_writes_the_documented_entry_through_the_writer(delivery, tmp_path, monkeypatch):  # noqa: F811
    root, img, _ = delivery
    cat = root / "cli_catalog.toml"
    cat.write_text(HAND_WRITTEN, encoding="utf-8")
    monkeypatch.chdir(root / "ortho")  # paths are given from the current folder, stored from the data root
    rc = main(["catalog", "stack", "--id", "HERAULT_2021", "--title", "Hérault 2021, BD ORTHO", "--rgb", "rvb",
               "--irc", "irc/*.jp2", "--elevation", "../ndsm.tif", "--vintage", "2021", "--catalog", str(cat)])
    assert rc == 0
    text = cat.read_text(encoding="utf-8")
    assert text.startswith("# my own catalog\n") and "# kept" in text
    entry = tomllib.loads(text)["stack"]
    assert entry == [{"id": "HERAULT_2021", "title": "Hérault 2021, BD ORTHO", "rgb": "ortho/rvb",
                      "irc": "ortho/irc/*.jp2", "elevation": "ndsm.tif", "vintage": "2021"}]
    assert list(entry[0]) == ["id", "title", "rgb", "irc", "elevation", "vintage"]  # the README's order
    ds = Catalog.load(cat).get("HERAULT_2021")
    with rasterio.open(ds.path) as src:
        assert src.count == 5 and (src.read(4) == img[3]).all()
    # run again without irc: the entry is replaced in place, not added twice
    assert main(["catalog", "stack", "--id", "HERAULT_2021", "--rgb", "rvb", "--catalog", str(cat)]) == 0
    assert tomllib.loads(cat.read_text(encoding="utf-8"))["stack"] == [{"id": "HERAULT_2021", "rgb": "ortho/rvb"}]


def test_a_bad_stack_leaves_the_catalog_unchanged(delivery, capsys):  # noqa: F811
    root, _, _ = delivery
    cat = root / "bad_catalog.toml"
    cat.write_text(HAND_WRITTEN, encoding="utf-8")
    rc = main(["catalog", "stack", "--id", "X", "--rgb", str(root / "ortho" / "rvb"), "--irc",
               str(root / "nowhere" / "*.jp2"), "--catalog", str(cat)])
    assert rc == 2 and cat.read_text(encoding="utf-8") == HAND_WRITTEN
    err = capsys.readouterr().err
    assert "layer irc" in err and "matches no raster" in err and "left unchanged" in err


def test_the_demo_bd_ortho_pair_is_a_four_band_stack():
    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    ds = cat.get("BDORTHO_STACK")
    assert ds.role == "image" and ds.bands == ("R", "G", "B", "NIR")
    rgb, irc = cat.get("BDORTHO_RGB").path, cat.get("BDORTHO_IRC").path
    with rasterio.open(ds.path) as src:
        assert src.count == 4 and src.transform == raster.describe(rgb).transform
        data, mask = src.read(), src.read_masks(1) > 0
    # the demo tiles declare nodata 255, yet their 255s are saturated white roofs (27 in red, 4 in all three bands):
    # the stack's mask is GDAL's dataset mask of each file (a hole only where every band is nodata), as a plain file
    # reads in read_window, so the roofs stay real pixels; the stack's bands are the files' bands as stored
    with rasterio.open(rgb) as a, rasterio.open(irc) as b:
        want = (a.dataset_mask() > 0) & (b.dataset_mask() > 0)
        r, i = a.read(), b.read()
    assert np.array_equal(mask, want) and (~mask).sum() == 4 == ((r == 255).all(axis=0) | (i == 255).all(axis=0)).sum()
    assert (mask & (r[0] == 255)).sum() == 23  # saturated red, real
    assert np.array_equal(data[:3], r) and np.array_equal(data[3], i[0])
    # the "47 pixels that read 255 in the stack but 0 in the file": raster.read passes fill_value=0, and rasterio
    # then writes 0 over every value equal to the file's nodata (44 in R, G, B; 3 in NIR), not the stack's doing
    filled = np.concatenate([raster.read(rgb), raster.read(irc, [1])])
    stored = np.concatenate([r, i[:1]])
    assert (filled != stored).sum() == 47 and (stored[filled != stored] == 255).all() and (filled[filled != stored] == 0).all()


def test_a_stack_lists_its_dalles():
    from flair_viz.core import stack

    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    ds = cat.get("BDORTHO_STACK")
    rgb = raster.describe(cat.get("BDORTHO_RGB").path)
    assert stack.dalles(ds, "rgb") == [(rgb.path.resolve(), tuple(rgb.bounds))]
    assert [p.name for p, _ in stack.dalles(ds)] == ["test_data_rgb.tif", "test_data_irc.tif"]
    assert stack.dalles(cat.get("BDORTHO_RGB")) == []


def test_explore_offers_only_the_models_a_stack_can_feed():
    from flair_viz.web import explore

    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    five = {"id": "five", "title": "Five", "in_bands": ["R", "G", "B", "NIR", "elevation"]}
    four = {"id": "four", "title": "Four", "in_bands": ["R", "G", "B", "NIR"]}
    usable, note = explore.usable_models(cat.get("BDORTHO_STACK"), [five, four])
    assert usable == ["four"] and "Five" in note and "elevation" in note and "[[stack]]" in note
    usable, note = explore.usable_models(cat.get("BDORTHO_STACK"), [five])
    assert usable == [] and "No model" in note
    assert explore.usable_models(cat.get("IMG_025651"), [five, four]) == (["five", "four"], None)
