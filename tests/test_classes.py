import numpy as np

from flair_viz.core import classes


def test_flair1_table_matches_design_values_and_colours():
    assert [c.value for c in classes.FLAIR1_CLASSES] == list(range(1, 20))
    assert classes.BY_VALUE[1].color == "#db0e9a" and classes.BY_VALUE[1].rgb == (0xDB, 0x0E, 0x9A)
    assert classes.BY_VALUE[13].name == "swimming pool"
    assert len({c.color for c in classes.FLAIR1_CLASSES}) == 19  # distinct colours


def test_flairhub_mapping_roundtrips_every_class():
    to1, tohub = classes.flairhub_to_flair1_lut(), classes.flair1_to_flairhub_lut()
    hub = np.arange(19, dtype=np.uint8)
    f1 = to1[hub]
    assert sorted(f1.tolist()) == list(range(1, 20))
    assert (tohub[f1] == hub).all()
    # spot checks against the published FLAIR-HUB order
    assert classes.BY_VALUE[int(to1[0])].key == "building"
    assert classes.BY_VALUE[int(to1[1])].key == "greenhouse"
    assert classes.BY_VALUE[int(to1[13])].key == "coniferous"


def test_to_flair1_converts_a_flairhub_raster():
    hub = np.array([[0, 3], [8, 18]], dtype=np.uint8)
    expected = np.array([[classes.BY_KEY[classes.FLAIRHUB_ORDER[v]].value for v in row] for row in hub])
    assert (classes.to_flair1(hub, "flairhub") == expected).all()


def test_protocol_lut_merges_14_to_19_into_other():
    lut = classes.protocol_flair1_lut()
    assert lut[0] == 0
    assert [int(lut[v]) for v in range(1, 14)] == list(range(1, 14))
    assert {int(lut[v]) for v in range(14, 20)} == {13}
    assert len(classes.protocol_names("flair1")) == 13 and classes.protocol_names("flair1")[-1] == "other"


def test_colormap_makes_nodata_transparent_and_classes_opaque():
    cmap = classes.colormap()
    assert cmap[0][3] == 0
    assert all(cmap[v][3] == 255 for v in range(1, 20))
    pal = classes.palette_rgba()
    assert tuple(pal[3][:3]) == classes.BY_VALUE[3].rgb
