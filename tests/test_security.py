"""Security: requests never make the server open a file outside the catalog; binding and tokens; data root.

``tests/test_tiles.py`` already checks that path-like query parameters are refused on ``/info``;
here every router is attacked through query *and* path parameters (URL-encoded too) while every
file the server opens is recorded, and the real ``flair-viz serve`` process is checked for what it
binds to and whether it demands its token. Traffic only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio

from flair_viz.cli.main import main
from flair_viz.core import config
from flair_viz.core import raster as fv_raster
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import CatalogError
from tests.helpers import DEMO_CATALOG, REPO, app_client, flair_folder, free_port, write_tif

DEMO_MODEL = "demo-unet-r18"
SECRET = REPO / "tests" / "conftest.py"  # a real file outside the catalog that a traversal could reach


# -- every file the server opens ------------------------------------------------------------------
@pytest.fixture()
def opened(monkeypatch) -> list[str]:
    """Record every path passed to rasterio.open / open_raster (what rio-tiler and our reader call)."""
    seen: list[str] = []
    real_open, real_open_raster = rasterio.open, fv_raster.open_raster

    def spy_open(fp, mode="r", *args, **kwargs):
        if mode == "r":
            seen.append(str(fp))
        return real_open(fp, mode, *args, **kwargs)

    def spy_open_raster(path):
        seen.append(str(path))
        return real_open_raster(path)

    monkeypatch.setattr(rasterio, "open", spy_open)
    monkeypatch.setattr(fv_raster, "open_raster", spy_open_raster)
    return seen


def allowed_paths() -> tuple[set[Path], Path]:
    """Catalog files, plus the server's own prediction cache (it reads back COGs it wrote there)."""
    return {d.path.resolve() for d in Catalog.load(DEMO_CATALOG)}, config.cache_dir().resolve()


def assert_only_catalog_files(seen: list[str]) -> None:
    files, cache = allowed_paths()
    for p in seen:
        rp = Path(p).resolve()
        assert rp in files or rp.is_relative_to(cache), f"opened {p}, which is not in the catalog"


ROUTES = {
    "aerial": "/datasets/{a}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "info": "/datasets/{a}/info",
    "predict": "/datasets/{a}/predict/{m}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "confusion": "/datasets/{a}/confusion/{b}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?truth_class=1&pred_class=2",
    "change": "/change/{a}/{b}/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
    "preview": "/datasets/{a}/preview.png",
    "point": "/datasets/{a}/point/3.8785,43.6113",
    "statistics": "/datasets/{a}/statistics",
}
IDS = {"aerial": ("IMG_000473", "", ""), "info": ("IMG_000473", "", ""), "preview": ("IMG_000473", "", ""),
       "point": ("MSK_000473", "", ""), "statistics": ("MSK_000473", "", ""), "predict": ("IMG_000473", "", DEMO_MODEL),
       "confusion": ("MSK_000473", "PRED_000473_demo-unet-r18", ""), "change": ("MSK_000473", "MSK_000473_SIM2024", "")}
ZXY = (19, 266376, 187216)  # a tile that exists; the data does not need to cover it for these checks
TRAVERSALS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
              "..", "%2E%2E", "..%5C..%5Cetc", f"{SECRET}".replace("/", "%2F"), "%252E%252E%252Fetc"]
REFUSED = ["url=/etc/passwd", "file=%2Fetc%2Fpasswd", "path=../../etc/passwd", "src=" + str(SECRET),
           "filename=data/demo/flair/D004_2021/Z6_NU/img/IMG_000473.tif", "url=/vsicurl/http://127.0.0.1:9/x.tif",
           "preset=..%2F..%2Fetc%2Fpasswd", "layer=/vsicurl/http://127.0.0.1:9/x.tif", "mode=%2Fvsizip%2F%2Ftmp%2Fa.zip",
           "bidx=..%2F1", "expression=b1%2B..%2Fetc", "URL=/etc/passwd", "tilesize=%2E%2E%2Fx", "FILE=x.tif"]
# absolute paths in parameters that are not path-like: rejected by validation, or ignored (never opened)
IGNORED_OR_REJECTED = ["colormap_name=" + str(SECRET), "rescale=%2Fetc%2Fpasswd", "preset=/etc/passwd",
                       "layer=" + str(SECRET), "mode=/etc/passwd", "colormap=" + str(SECRET)]


def _url(route: str, **over: str) -> str:
    a, b, m = IDS[route]
    ids = {"a": a, "b": b, "m": m, **over}
    z, x, y = ZXY
    return ROUTES[route].format(z=z, x=x, y=y, **ids)


def test_the_spy_sees_what_a_legitimate_request_opens(client, opened):
    """Guard for the tests below: a normal tile request is recorded, and only catalog files appear."""
    cat = Catalog.load(DEMO_CATALOG)
    r = client.get("/datasets/MSK_000473/info")
    assert r.status_code == 200
    assert str(cat.get("MSK_000473").path) in {str(Path(p).resolve()) for p in opened}
    assert_only_catalog_files(opened)


@pytest.mark.parametrize("route", list(ROUTES))
def test_traversal_in_path_parameters_never_opens_outside_the_catalog(client, opened, route):
    slots = ["a"] + (["b"] if IDS[route][1] else []) + (["m"] if IDS[route][2] else [])
    for slot in slots:
        for evil in TRAVERSALS:
            r = client.get(_url(route, **{slot: evil}))
            assert 400 <= r.status_code < 500, (route, slot, evil, r.status_code)
            assert "root:" not in r.text and "import" not in r.text
    assert_only_catalog_files(opened)


@pytest.mark.parametrize("route", list(ROUTES))
def test_path_like_query_parameters_are_refused_on_every_router(client, opened, route):
    base = _url(route)
    sep = "&" if "?" in base else "?"
    for q in REFUSED:
        r = client.get(f"{base}{sep}{q}")
        assert r.status_code == 400 and "catalog ID only" in r.json()["detail"], (route, q, r.status_code)
    assert not opened  # refused before any reader ran
    for q in IGNORED_OR_REJECTED:
        r = client.get(f"{base}{sep}{q}")
        assert r.status_code in (200, 400, 404, 422), (route, q, r.status_code, r.text[:200])
        assert "root:" not in r.text and "import" not in r.text
    assert_only_catalog_files(opened)


def test_a_traversal_that_reaches_a_real_raster_outside_the_catalog_is_not_served(client, opened, tmp_path):
    """Even a GeoTIFF that exists next to the demo data is out of reach unless the catalog lists it."""
    outside = write_tif(REPO / "data" / "demo" / f"_not_in_catalog_{os.getpid()}.tif", np.ones((8, 8), np.uint8))
    try:
        for raw in (f"..%2F{outside.name}", f"{outside.stem}", outside.name.replace(".", "%2E")):
            r = client.get(f"/datasets/{raw}/info")
            assert r.status_code in (400, 404, 422), (raw, r.status_code)
        assert str(outside) not in opened and all(Path(p).name != outside.name for p in opened)
    finally:
        outside.unlink()


# -- the real server process: bind address and token ------------------------------------------------
def _start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flair_viz", "serve", "--port", str(port),
                             "--catalog", str(DEMO_CATALOG), *args], cwd=REPO, text=True,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, port


def _wait_listening(proc: subprocess.Popen, port: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        socks = [c for c in psutil.Process(proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        if socks:
            return socks
        time.sleep(0.2)
    raise AssertionError(f"server on port {port} did not start")


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _other_local_address() -> str | None:
    """A non-loopback address of this machine, if it has one (to prove 127.0.0.1 is the only way in)."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


def test_serve_binds_loopback_by_default_and_exposed_servers_require_the_token():
    default, p1 = _start()
    flag, p2 = _start("--host", "0.0.0.0", "--token", "s3cret-flag")
    from_env, p3 = _start("--host", "0.0.0.0", env={"FLAIR_VIZ_TOKEN": "s3cret-env"})
    # a non-default host without a token must warn; 127.0.0.2 (still loopback) so nothing is ever exposed untokened
    bare, p4 = _start("--host", "127.0.0.2", env={"FLAIR_VIZ_TOKEN": ""})
    try:
        socks = _wait_listening(default, p1)
        assert {c.laddr.ip for c in socks} == {"127.0.0.1"}
        assert _get(p1, "/healthz") == 200
        other = _other_local_address()
        if other is not None:  # the machine's own LAN address must not reach a loopback-only server
            with pytest.raises(OSError):
                socket.create_connection((other, p1), timeout=2).close()

        for proc, port, token in ((flag, p2, "s3cret-flag"), (from_env, p3, "s3cret-env")):
            assert {c.laddr.ip for c in _wait_listening(proc, port)} == {"0.0.0.0"}
            assert _get(port, "/datasets") == 401
            assert _get(port, "/datasets/IMG_000473/info") == 401
            assert _get(port, "/datasets?token=wrong") == 401
            assert _get(port, f"/datasets?token={token}") == 200
            assert _get(port, "/datasets/IMG_000473/info", {"Authorization": f"Bearer {token}"}) == 200
        assert {c.laddr.ip for c in _wait_listening(bare, p4)} == {"127.0.0.2"}
    finally:
        errs = [_stop(p) for p in (default, flag, from_env, bare)]
    assert "without a token" in errs[3]
    assert all("without a token" not in e for e in errs[:3])


# -- the catalog's data root --------------------------------------------------------------------------
def _catalog(path: Path, entries: str) -> Path:
    path.write_text('data_root = "."\n' + entries, encoding="utf-8")
    return path


def test_catalog_refuses_paths_outside_its_root_unless_added_explicitly(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    inside = write_tif(root / "inside.tif", np.ones((8, 8), np.uint8))
    outside = write_tif(elsewhere / "outside.tif", np.ones((8, 8), np.uint8))
    (root / "link_to_outside.tif").symlink_to(outside)
    (root / "linked_dir").symlink_to(elsewhere, target_is_directory=True)
    entry = '[[dataset]]\nid = "X"\nrole = "truth"\npath = "{}"\n'
    for path in ("../elsewhere/outside.tif", str(outside), "link_to_outside.tif", "linked_dir/outside.tif",
                 "sub/../../elsewhere/outside.tif"):
        with pytest.raises(CatalogError) as exc:
            Catalog.load(_catalog(root / "cat.toml", entry.format(path)))
        assert "outside the catalog's data root" in exc.value.problem and "outside_root = true" in exc.value.fix
    # the same file is accepted when a person marks it explicitly
    cat = Catalog.load(_catalog(root / "cat.toml", entry.format(str(outside)) + "outside_root = true\n"))
    assert cat.get("X").path == outside and cat.get("X").outside_root
    assert Catalog.load(_catalog(root / "cat.toml", entry.format("inside.tif"))).get("X").path == inside


def test_scanning_a_folder_with_a_symlink_out_of_the_root_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img, msk = rng.integers(0, 255, (5, 32, 32), dtype=np.uint8), rng.integers(1, 20, (32, 32), dtype=np.uint8)
    root = flair_folder(tmp_path / "root", {"000001": (img, msk)})
    elsewhere = write_tif(tmp_path / "elsewhere" / "secret.tif", img)
    (root / "D001_2020" / "Z1_UA" / "img" / "IMG_000002.tif").symlink_to(elsewhere)
    cat_file = root / "cat.toml"
    _catalog(cat_file, "")
    rc = main(["catalog", "scan", str(root), "--catalog", str(cat_file)])
    err = capsys.readouterr().err
    assert rc == 2 and "outside the catalog's data root" in err and "secret.tif" in err and "fix:" in err
    assert cat_file.read_text(encoding="utf-8") == 'data_root = "."\n'  # unchanged


def test_tile_server_on_a_catalog_with_an_outside_entry_serves_nothing_from_it(tmp_path, opened):
    root = tmp_path / "root"
    outside = write_tif(tmp_path / "outside.tif", np.full((8, 8), 3, np.uint8))
    cat_file = _catalog(root / "cat.toml" if root.mkdir() is None else root / "cat.toml",
                        f'[[dataset]]\nid = "X"\nrole = "truth"\npath = "{outside}"\n')
    c = app_client(cat_file)
    r = c.get("/datasets/X/info")
    assert r.status_code == 404 and "outside the catalog's data root" in r.json()["detail"]
    assert str(outside) not in opened
