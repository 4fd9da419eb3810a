"""Shared fixtures: an isolated user data folder for every test (nothing touches ~/.local), the in-process
tile server client, and the real tile server process, started only for the tests that ask for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import DEMO_CATALOG, REPO, app_client, free_port, start_server, stop_server

# Most tests compare torch results exactly with a reference; the ONNX engines (the CPU default, "auto")
# have their own tests (tests/test_engines.py), which ask for them by name. Servers started here inherit it.
os.environ.setdefault("FLAIR_VIZ_ENGINE", "torch")
# Servers the session starts (the shared tile server, the e2e app) predict nothing ahead at start: each would
# spend CPU on the demo zone beside the tests. Tests of the warm-up turn it on for their own server.
os.environ.setdefault("FLAIR_VIZ_WARM", "0")
# A page run without the tile_server fixture starts a tile server in the background (ui.common.tiles_url), detached
# from the test: on a port of this session's own, never the user's 8765, and stopped when the session ends.
SESSION_TILE_PORT = os.environ.setdefault("FLAIR_VIZ_TILE_PORT", str(free_port()))


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop background tile servers on the session's port: they would outlive the suite, serving its data."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "flair_viz" in cmd and "serve" in cmd and SESSION_TILE_PORT in cmd:
            try:
                proc.terminate()
            except psutil.Error:
                pass


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory, monkeypatch):
    data = tmp_path_factory.mktemp("flair-viz-data")
    monkeypatch.setenv("FLAIR_VIZ_DATA", str(data))
    monkeypatch.setenv("FLAIR_VIZ_CACHE", str(data / "cache"))
    monkeypatch.setenv("FLAIR_VIZ_WARM", "0")  # servers a test starts predict nothing ahead (tests/test_scene_codes.py)
    yield data


@pytest.fixture()
def model_dir(tmp_path, monkeypatch):
    """An empty model-card folder for this test only (``$FLAIR_VIZ_MODELS``), on the CPU."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("FLAIR_VIZ_MODELS", str(d))
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    return d


@pytest.fixture()
def artifacts_dir() -> Path:
    d = Path(os.environ.get("FLAIR_VIZ_ARTIFACTS", REPO / "artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def client():
    """The tile server on the demo catalog, in this process (FastAPI TestClient); one per test module."""
    return app_client(DEMO_CATALOG)


@pytest.fixture(scope="session")
def _tile_server_process(tmp_path_factory):
    """One real tile server (uvicorn) on a free port for the whole session, started on first request,
    with its own user data and cache folders."""
    home = tmp_path_factory.mktemp("tile-server")
    proc, url = start_server(catalog=DEMO_CATALOG, log=home / "log.txt",
                             env={"FLAIR_VIZ_DATA": str(home / "data"), "FLAIR_VIZ_CACHE": str(home / "cache")})
    yield url
    stop_server(proc)


@pytest.fixture()
def tile_server(_tile_server_process, monkeypatch) -> str:
    """The real tile server's URL, for tests that run pages: ``ui.common.tiles_url()`` would otherwise
    reuse or start a server on the default port, which may run other code. Request it wherever a page
    (AppTest) or a subprocess talks to the tile server."""
    monkeypatch.setenv("FLAIR_VIZ_TILE_PORT", _tile_server_process.rsplit(":", 1)[1])
    monkeypatch.setenv("FLAIR_VIZ_TILES_URL", _tile_server_process)
    return _tile_server_process


@pytest.fixture()
def tile_server_on(monkeypatch):
    """Factory for tests whose page needs a tile server on the test's own catalog and environment (models,
    data): ``url = tile_server_on(catalog)`` starts one with the current environment, points the pages at it
    and stops it after the test."""
    procs = []

    def start(catalog: Path, **env: str) -> str:
        proc, url = start_server(catalog=catalog, env=env)
        procs.append(proc)
        monkeypatch.setenv("FLAIR_VIZ_TILE_PORT", url.rsplit(":", 1)[1])
        monkeypatch.setenv("FLAIR_VIZ_TILES_URL", url)
        return url

    yield start
    for proc in procs:
        stop_server(proc)
