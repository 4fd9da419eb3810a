"""Explore's list at catalog scale: filters from the index, scenes only for what matches, mosaics past a limit."""

from __future__ import annotations

from flair_viz.core.catalog import Catalog
from flair_viz.core.describe import kind_of
from flair_viz.web import browse, explore
from tests.helpers import DEMO_CATALOG, filter_options, filter_scenes, scene_year
from tests.test_catalog_index import grid_tree, scan


def test_demo_options_and_listing_equal_the_scene_by_scene_answer():
    cat = Catalog.load(DEMO_CATALOG)
    scenes = explore.list_scenes(cat)  # the old way: every scene built, then filtered
    table = browse.image_table(cat)
    assert browse.options(table) == filter_options(scenes)
    d = filter_options(scenes)[0][0]
    assert browse.options(table, [d]) == filter_options(scenes, [d])
    for filters in ([], [d]), ([d], []), ((), ()):
        got = browse.browse(cat, *filters)
        want = filter_scenes(scenes, *filters)
        assert not got.limited and {s.image.id for s in got.scenes} == {s.image.id for s in want}
    zone = next(s for s in scenes if s.kind == "mosaic")
    got = browse.browse(cat, zones=[zone.zone], years=[scene_year(zone)])
    assert zone.image.id in {s.image.id for s in got.scenes}
    assert {s.truth.id if s.truth else None for s in got.scenes if s.image.id == zone.image.id} == \
        {zone.truth.id if zone.truth else None}


def test_past_the_limit_single_patches_give_way_to_zone_mosaics_but_a_linked_patch_stays(tmp_path, capsys):
    data = tmp_path / "data"
    grid_tree(data / "tree", rows=4, cols=5, zone="Z1_AA")
    grid_tree(data / "tree", rows=3, cols=3, zone="Z2_BB", first=100, seed=1)
    rc, cat_file = scan(tmp_path, data / "tree")
    assert rc == 0
    cat = Catalog.load(cat_file)
    images = cat.by_role("image")
    singles = [d for d in images if kind_of(d) == "patch"]
    assert len(singles) == 29

    everything = browse.browse(cat, limit=100)
    assert not everything.limited and len(everything.scenes) == len(images) == everything.total

    few = browse.browse(cat, limit=10, keep="000007")
    assert few.limited and few.total == len(images)
    listed = {s.image.id for s in few.scenes}
    assert listed == {d.id for d in images if kind_of(d) != "patch"} | {"IMG_000007"}
    assert {s.zone for s in few.scenes if s.kind == "mosaic"} == {"Z1_AA", "Z2_BB"}

    zone = browse.browse(cat, zones=["Z2_BB"], limit=10)  # a zone's 9 patches fit: listed one by one
    assert not zone.limited and len([s for s in zone.scenes if s.kind == "patch"]) == 9
