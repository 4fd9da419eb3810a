"""QGIS styles: valid XML whose palette equals the class table and the flow colours, written beside COGs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio

from flair_viz.change import FLOW_COLORS, FLOW_NAMES, qml
from flair_viz.cli import main as cli
from flair_viz.core import classes
from tests.helpers import DEMO


def entries(text: str) -> dict[int, tuple[str, str]]:
    root = ET.fromstring(text.split("\n", 1)[1])  # after the DOCTYPE line
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    return {int(e.get("value")): (e.get("color"), e.get("label")) for e in renderer.iter("paletteEntry")}


@pytest.mark.parametrize("kind", ["class", "change"])
def test_class_and_change_palettes_equal_the_class_table(kind):
    got = entries(qml.qml_text(kind))
    assert {v: c for v, (c, _) in got.items()} == {c.value: c.color for c in classes.FLAIR1_CLASSES}
    assert all(classes.BY_VALUE[v].name in label for v, (_, label) in got.items())


def test_flow_palette_equals_the_change_tile_colours():
    got = entries(qml.qml_text("flow"))
    assert {v: c for v, (c, _) in got.items()} == {k: "#%02x%02x%02x" % rgba[:3] for k, rgba in FLOW_COLORS.items()}
    assert {v: label for v, (_, label) in got.items()} == FLOW_NAMES


def test_mapped_nomenclature_style_colours_raw_codes_as_their_flair1_class():
    got = entries(qml.qml_text("class", "odeon-naf"))
    lut = classes.class_lut("odeon-naf")
    assert got and all(c == classes.BY_VALUE[int(lut[v])].color for v, (c, _) in got.items())


def test_shipped_styles_are_the_generated_ones():
    for name, kind in (("flair1_classes.qml", "class"), ("change.qml", "change"), ("flow.qml", "flow")):
        assert (qml.STYLES_DIR / name).read_text(encoding="utf-8") == qml.qml_text(kind)


def test_change_cli_writes_styles_beside_its_cogs_and_the_flow_cog_matches(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["change", "MSK_084558", "MSK_084558_SIM2023", "--out", str(out),
                     "--catalog", str(DEMO / "catalog.toml")]) == 0
    assert entries((out / "change.qml").read_text()) == entries(qml.qml_text("change"))
    assert entries((out / "flow.qml").read_text()) == entries(qml.qml_text("flow"))
    with rasterio.open(out / "change.tif") as c, rasterio.open(out / "flow.tif") as f:
        changed, flow = c.read(1), f.read(1)
    assert ((changed > 0) == (flow > 0)).all()  # a flow exactly where the class changed
    assert set(np.unique(flow)) <= {0, 1, 2, 3} and (flow == 1).any()
