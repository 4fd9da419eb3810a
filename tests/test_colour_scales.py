"""The colour scales Explore shows say what the tile server draws: the elevation preset and the uncertainty layers."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader

from flair_viz.core import elevation
from flair_viz.core.catalog import Catalog
from flair_viz.predict import tiles as predict_tiles
from flair_viz.predict.viewport import code
from flair_viz.server import factory
from flair_viz.web import maps
from tests.helpers import DEMO_CATALOG, centre_tile


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_the_scales_use_the_servers_own_colormaps_and_range():
    scale = maps.elevation_scale()
    assert factory.colormap_params(SimpleNamespace(is_class_raster=False), "elevation") == cmap.get(scale.cmap)
    levels = [float(v) for v in factory.ELEVATION_RESCALE.split(",")]
    assert (scale.low, scale.high) == (levels[0] / elevation.SCALE, levels[1] / elevation.SCALE) == (0.0, 12.0)
    for layer in ("entropy", "margin"):
        assert maps.uncertainty_scale(layer).cmap == predict_tiles.UNCERTAINTY_CMAP
        assert (maps.uncertainty_scale(layer).low, maps.uncertainty_scale(layer).high) == (0.0, 1.0)


def test_elevation_colours_are_those_of_the_servers_tiles(client):
    """Each pixel of a real elevation tile has the colour the legend gives its height (level / 5 metres)."""
    ds = Catalog.load(DEMO_CATALOG).get("IMG_050549")  # a real FLAIR-1 patch with its elevation band
    tile = centre_tile(ds.path, 19)
    resp = client.get(f"/datasets/{ds.id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png?preset=elevation")
    assert resp.status_code == 200
    drawn = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))
    with Reader(ds.path) as src:  # the same tile's raw band values, read apart from the server
        raw = src.tile(tile.x, tile.y, tile.z, indexes=ds.bands.index("elevation") + 1)
    levels, inside = raw.data[0], ~np.asarray(raw.mask == 0) & (drawn[..., 3] > 0)
    assert inside.sum() > 10_000 and len(np.unique(levels[inside])) > 10  # many heights checked, not one
    scale = maps.elevation_scale()
    wanted = {lv: rgb(scale.colour(lv / elevation.SCALE)) for lv in np.unique(levels[inside])}
    expected = np.stack([wanted[lv] for lv in levels[inside]])
    diff = np.abs(drawn[..., :3][inside].astype(int) - expected)
    assert diff.max() <= 3, diff.max()  # one ramp step at most (the server rounds the stretched value its own way)
    above = levels[inside] >= 60  # heights past the scale's end have its last colour
    if above.any():
        assert (np.abs(drawn[..., :3][inside][above].astype(int) - rgb(scale.colour(scale.high))) <= 3).all()


@pytest.mark.parametrize("layer", ["entropy", "margin"])
def test_uncertainty_colours_are_those_of_the_live_layer(layer):
    """The live layer draws an uncertainty ``u`` as its code's LUT entry: the legend gives the same colour."""
    scale = maps.uncertainty_scale(layer)
    u = np.linspace(0, 1, 101, dtype=np.float32)
    codes = code(u, np.ones_like(u, bool))
    drawn = predict_tiles._UNC_LUT[codes][:, :3].astype(int)
    legend = np.stack([rgb(scale.colour(float(v))) for v in u])
    assert np.abs(drawn - legend).max() <= 3
    assert (legend[-1] > legend[0]).all()  # bright is unsure, as the page says


def test_the_colour_bar_names_its_units_ends_and_ticks():
    html = maps.colour_scale_html(maps.elevation_scale())
    for text in ("Height above ground", "0 m", "≥ 12 m", "the ground", "12 m and higher", "5 levels per metre"):
        assert text in html, text
    assert html.count("%,") + 1 >= 16  # the gradient's stops
    html = maps.colour_scale_html(maps.uncertainty_scale("margin"))
    assert "1 − (top-1 − top-2 probability)" in html and "tie" in html
    compact = maps.colour_scale_html(maps.uncertainty_scale("entropy"), compact=True)  # on the map: short
    assert "◀ sure" in compact and "unsure ▶" in compact and "log K" not in compact
