"""Annotate in words an annotation manager reads: the ranking components' labels and the candidate tooltip."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from flair_viz.annotate.scoring import COMPONENTS
from flair_viz.web import annotate as annotate_map


def _table() -> gpd.GeoDataFrame:
    rows = [{"id": "IMG_1_r000_c000_25.6m", "rank": 1, "score": 0.5764, "entropy": 0.5831, "margin": 0.851,
             "gt": 0.9821, "models": np.nan, "rare": 0.0},
            {"id": "IMG_1_r000_c001_25.6m", "rank": 2, "score": 0.41, "entropy": 0.2, "margin": 0.3,
             "gt": np.nan, "models": 0.125, "rare": 0.05}]
    geoms = [shapely.box(721104 + 25.6 * i, 6249288, 721104 + 25.6 * (i + 1), 6249288 + 25.6) for i in range(2)]
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:2154")


def test_every_component_has_a_plain_label_and_help():
    assert set(annotate_map.WEIGHT_LABELS) == set(COMPONENTS)
    for c in COMPONENTS:
        assert annotate_map.WEIGHT_LABELS[c] != c and len(annotate_map.WEIGHT_HELP[c]) > 30
    assert "ground truth" in annotate_map.WEIGHT_LABELS["gt"] and "disagree" in annotate_map.WEIGHT_LABELS["models"]


def test_tooltip_is_three_short_rows_that_follow_the_pointer():
    import folium

    layer, on_map = annotate_map.candidates_layer(_table())
    props = [f["properties"] for f in layer.data["features"]]
    assert props[0]["candidate"] == "#1 · IMG_1_r000_c000_25.6m" and props[0]["score"] == "0.58"
    assert props[0]["why"] == "unsure 0.58 · close call 0.85 · wrong vs truth 0.98 · rare classes 0.00"  # no 2nd model
    assert props[1]["why"] == ("unsure 0.20 · close call 0.30 · wrong vs truth n/a · models disagree 0.12 · "
                               "rare classes 0.05")
    assert on_map.crs.to_epsg() == 4326 and len(on_map) == 2
    m = folium.Map()
    layer.add_to(m)
    html = m.get_root().render()
    assert '"sticky": true' in html and "Why" in html and '"entropy"' not in html


def test_the_layer_switcher_is_folded():
    import folium

    m = folium.Map()
    annotate_map.add_layer_control(m)
    assert '"collapsed": true' in m.get_root().render()
