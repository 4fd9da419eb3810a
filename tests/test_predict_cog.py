"""The one COG writer (flair_viz.core.cog): a real COG under the final name, or nothing and no leftovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from flair_viz.core import classes, cog
from tests.helpers import write_tif

PROFILE = {"width": 600, "height": 520, "count": 1, "dtype": "uint8", "crs": "EPSG:2154",
           "transform": from_origin(900000, 6300000, 0.2, 0.2), "nodata": 0}


def _classes(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(5).integers(1, 20, (h, w), dtype=np.uint8)


def _is_cog(path) -> None:
    with rasterio.open(path) as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.compression.name.lower() == "lzw"
        assert ds.overviews(1)  # zoomed-out tiles read overviews, not full resolution
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_write_cog_copies_pixels_georeferencing_and_colormap(tmp_path):
    data = _classes(520, 600)
    src = write_tif(tmp_path / "plain.tif", data)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, classes.colormap())
    out = cog.write_cog(src, tmp_path / "out" / "c.tif")
    _is_cog(out)
    with rasterio.open(out) as ds, rasterio.open(src) as ref:
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.transform == ref.transform and ds.crs == ref.crs
        assert ds.colormap(1)[5] == classes.colormap()[5]
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.tif"]


def test_cog_writer_streams_blocks_into_a_cog(tmp_path):
    data = _classes(520, 600)
    final = tmp_path / "streamed.tif"
    with cog.cog_writer(final, PROFILE) as dst:
        dst.write_colormap(1, classes.colormap())
        for r0 in range(0, 520, 128):  # blocks, as a windowed writer would
            dst.write(data[r0:r0 + 128], 1, window=rasterio.windows.Window(0, r0, 600, min(128, 520 - r0)))
        work = Path(dst.name + ".src.vrt")
        work.write_text("a caller's work file")
        assert not final.exists()  # nothing under the final name until the COG is complete
    _is_cog(final)
    with rasterio.open(final) as ds:
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.nodata == 0 and ds.transform == PROFILE["transform"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.tif"]  # scratch and work file removed


def test_cog_writer_failure_keeps_the_previous_output_and_leaves_nothing(tmp_path):
    final = write_tif(tmp_path / "keep.tif", np.full((64, 64), 7, np.uint8))
    before = final.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with cog.cog_writer(final, PROFILE) as dst:
            dst.write(_classes(520, 600), 1)
            raise RuntimeError("boom")
    assert final.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]
