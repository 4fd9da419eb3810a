"""Overview footprints of a [[stack]]: one per RGB dalle, at the dalle's own bounds, and a click on one finds the
stack (its catalog ID opens it in Explore)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer

from flair_viz.core.catalog import Catalog
from flair_viz.overview.footprints import footprints, patch_at
from tests.test_stack import catalog_with, delivery  # noqa: F401  (delivery: the fixture)

REPO = Path(__file__).resolve().parents[1]
TO_LONLAT = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)


def test_one_footprint_per_rgb_dalle(delivery):  # noqa: F811
    root, _, _ = delivery
    cat = Catalog.load(catalog_with(root, 'id = "FP"\nrgb = "ortho/rvb"\nirc = "ortho/irc"\nvintage = "2021"'))
    fp = footprints(cat)
    dalles = sorted((root / "ortho" / "rvb").glob("*.jp2"))
    want = []
    for p in dalles:
        with rasterio.open(p) as ds:
            want.append(tuple(ds.bounds))
    rows = fp.table["id"] == "FP"
    assert rows.sum() == len(dalles) == 12 and len(fp) == 12  # no IRC dalle drawn: one footprint per RGB dalle
    assert sorted(map(tuple, fp.l93[rows.to_numpy()])) == sorted(want)
    assert set(fp.table.loc[rows, "vintage"]) == {"2021"} and fp.table.loc[rows, "patch"].isna().all()
    # a click inside the last dalle finds one of the stack's footprints, the one holding the point
    left, bottom, right, top = want[-1]
    lon, lat = TO_LONLAT.transform((left + right) / 2, (bottom + top) / 2)
    hit = patch_at(fp, lon, lat)
    assert hit is not None and fp.table["id"].iloc[hit] == "FP"
    assert np.allclose(fp.l93[hit], want[-1])


def test_the_demo_stack_has_the_footprint_of_its_rgb_tile():
    cat = Catalog.load(REPO / "data" / "demo" / "catalog.toml")
    fp = footprints(cat)
    rows = np.flatnonzero(fp.table["id"] == "BDORTHO_STACK")
    with rasterio.open(cat.get("BDORTHO_RGB").path) as ds:
        assert len(rows) == 1 and np.allclose(fp.l93[rows[0]], tuple(ds.bounds))
    assert (fp.table["patch"].notna()).sum() == len(fp) - 1  # every other footprint is a patch


def test_the_overview_counts_patches_and_dalles_apart_and_names_a_missing_domain(delivery):  # noqa: F811
    from flair_viz.overview.layer import catalog_colouring
    from flair_viz.web.overview import footprint_count

    root, _, _ = delivery
    cat = Catalog.load(catalog_with(root, 'id = "H"\nrgb = "ortho/rvb"'))
    n_dalles = len(list((root / "ortho" / "rvb").glob("*.jp2")))
    assert footprint_count(footprints(cat)) == f"0 patch footprints and {n_dalles} BD ORTHO dalles"
    legend = catalog_colouring(cat, "domain")[1].legend
    assert ("no domain given", "#969696") in legend.entries  # a stack names no domain: not "unknown"
