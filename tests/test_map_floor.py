"""Maps stop zooming out where the tile server starts refusing tiles (its per-dataset zoom range)."""

from __future__ import annotations

import re

import pytest

from flair_viz.core.catalog import Catalog
from flair_viz.web import explore, maps
from tests.helpers import DEMO_CATALOG, centre_tile


@pytest.mark.parametrize("key", ["050549", "ZONE_D034_2021_Z6_NU"])
def test_explore_map_floor_is_the_coarsest_zoom_every_layer_is_served_at(client, key):
    cat = Catalog.load(DEMO_CATALOG)
    scene = explore.find_scene(explore.list_scenes(cat), key)
    layers = explore.scene_layers(scene, cat, "http://t")
    datasets = [scene.image] + ([scene.truth] if scene.truth else []) + list(scene.predictions)
    assert len(datasets) >= 2
    for ds in datasets:  # the server answers every layer at the floor, and refuses one of them a level out
        tile = centre_tile(ds.path, layers.min_zoom)
        url = f"/datasets/{ds.id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        assert client.get(url).status_code == 200, url
    refused = []
    for ds in datasets:
        tile = centre_tile(ds.path, layers.min_zoom - 1)
        refused.append(client.get(f"/datasets/{ds.id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png").status_code)
    assert 400 in refused, refused
    m = maps.make_map(layers.bounds, min_zoom=layers.min_zoom)
    html = m.get_root().render()  # Leaflet is told, so the browser never asks below it
    assert re.search(r'"minZoom": (\d+)', html).group(1) == str(layers.min_zoom)
