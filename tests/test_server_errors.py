"""Every tile route answers a broken input with JSON naming the file and the fix, at the table's status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flair_viz.core.errors import InvalidCatalog, UnknownDataset, UnreadableRaster, status_code
from tests.helpers import DEMO, app_client, centre_tile

PATCH = DEMO / "flair" / "D004_2021" / "Z6_NU"
IMAGE, MASK = PATCH / "img" / "IMG_000473.tif", PATCH / "msk" / "MSK_000473.tif"
MODEL = "demo-unet-r18"
BANDS = '["R", "G", "B", "NIR", "elevation"]'


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])  # the header survives, the pixel tail does not
    return dst


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict:
    """A catalog of one good patch and truncated copies of its image and mask."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copy(IMAGE, root / "IMG_good.tif")
    shutil.copy(MASK, root / "MSK_good.tif")
    _truncate(IMAGE, root / "IMG_cut.tif")
    _truncate(MASK, root / "MSK_cut.tif")
    # the good mask sits on a patch of its own, so the truncated mask is the truth of both images
    entries = [("IMG_OK", "IMG_good.tif", "image", "000473"), ("MSK_OK", "MSK_good.tif", "truth", "good"),
               ("IMG_CUT", "IMG_cut.tif", "image", "000473"), ("MSK_CUT", "MSK_cut.tif", "truth", "000473")]
    text = 'data_root = "."\n'
    for ds_id, path, role, patch in entries:
        text += f'\n[[dataset]]\nid = "{ds_id}"\npath = "{path}"\nrole = "{role}"\npatch = "{patch}"\n'
        text += f"bands = {BANDS}\n" if role == "image" else ""
    (root / "cat.toml").write_text(text, encoding="utf-8")
    tile = centre_tile(MASK, 18)
    return {"root": root, "client": app_client(root / "cat.toml"), "zxy": f"{tile.z}/{tile.x}/{tile.y}"}


ROUTES = {
    "dataset": ("/datasets/IMG_CUT/tiles/WebMercatorQuad/{zxy}.png", "IMG_cut.tif"),
    "dataset-mask": ("/datasets/MSK_CUT/tiles/WebMercatorQuad/{zxy}.png", "MSK_cut.tif"),
    "predict": (f"/datasets/IMG_CUT/predict/{MODEL}/tiles/WebMercatorQuad/{{zxy}}.png", "IMG_cut.tif"),
    "predict-error-layer": (f"/datasets/IMG_OK/predict/{MODEL}/tiles/WebMercatorQuad/{{zxy}}.png?layer=error",
                            "MSK_cut.tif"),  # a good image whose ground truth is truncated
    "confusion-truth": ("/datasets/MSK_CUT/confusion/MSK_OK/tiles/WebMercatorQuad/{zxy}.png?truth_class=1&pred_class=2",
                        "MSK_cut.tif"),
    "confusion-pred": ("/datasets/MSK_OK/confusion/MSK_CUT/tiles/WebMercatorQuad/{zxy}.png?truth_class=1&pred_class=2",
                       "MSK_cut.tif"),
    "change-after": ("/change/MSK_OK/MSK_CUT/tiles/WebMercatorQuad/{zxy}.png", "MSK_cut.tif"),
    "change-before": ("/change/MSK_CUT/MSK_OK/tiles/WebMercatorQuad/{zxy}.png?mode=flow", "MSK_cut.tif"),
}
UNREADABLE = status_code(UnreadableRaster("x"))


@pytest.mark.parametrize("route", ROUTES)
def test_a_truncated_raster_is_json_naming_the_file_and_the_fix(broken, route):
    path, name = ROUTES[route]
    r = broken["client"].get(path.format(zxy=broken["zxy"]))
    assert r.status_code == UNREADABLE == 500, (route, r.status_code, r.text[:300])
    body = r.json()
    assert name in body["detail"], (route, body)
    assert body["fix"].strip(), (route, body)


def test_the_good_copy_of_the_same_patch_still_serves(broken):
    r = broken["client"].get(f"/datasets/IMG_OK/tiles/WebMercatorQuad/{broken['zxy']}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_a_catalog_toml_syntax_error_is_500_naming_the_file_on_every_route(tmp_path):
    (tmp_path / "bad.toml").write_text('data_root = "."\n[[dataset]\nid = "X"\n', encoding="utf-8")
    c = app_client(tmp_path / "bad.toml")
    expected = status_code(InvalidCatalog("x"))
    assert expected == 500
    for path in [p for p, _ in ROUTES.values()] + ["/datasets", "/datasets/X/info"]:
        r = c.get(path.format(zxy="18/132000/95000"))
        assert r.status_code == expected, (path, r.status_code, r.text[:300])
        assert "bad.toml" in r.json()["detail"] and "not valid TOML" in r.json()["detail"], path
        assert "bad.toml" in r.json()["fix"], path


def test_an_unknown_dataset_id_is_still_404(broken):
    assert status_code(UnknownDataset("x")) == 404
    for path in ("/datasets/NOPE/tiles/WebMercatorQuad/{zxy}.png", "/change/NOPE/MSK_OK/tiles/WebMercatorQuad/{zxy}.png",
                 "/datasets/MSK_OK/confusion/NOPE/tiles/WebMercatorQuad/{zxy}.png?truth_class=1&pred_class=2",
                 f"/datasets/NOPE/predict/{MODEL}/tiles/WebMercatorQuad/{{zxy}}.png"):
        r = broken["client"].get(path.format(zxy=broken["zxy"]))
        assert r.status_code == 404 and "NOPE" in r.json()["detail"], (path, r.status_code, r.text[:300])


def test_fetch_json_raises_the_servers_own_detail_and_fix_by_status():
    """The UI's JSON client turns the server's error back into the condition of its status."""
    from flair_viz.core.errors import InvalidInput, NotFound
    from flair_viz.web.client import fetch_json
    from tests.helpers import start_server, stop_server

    proc, base = start_server()
    try:
        with pytest.raises(NotFound) as missing:
            fetch_json(base, "/datasets/NO_SUCH_ID/info")
        assert "NO_SUCH_ID" in missing.value.problem and missing.value.fix
        with pytest.raises(InvalidInput) as bad:
            fetch_json(base, "/datasets/MSK_000473/confusion/PRED_000473_demo-unet-r18/tiles/WebMercatorQuad/19/1/1.png"
                             "?truth_class=1&pred_class=2&tilesize=300")
        assert "tilesize=300" in bad.value.problem
    finally:
        stop_server(proc)
