"""Shared fixtures: an isolated user data folder for every test, so nothing touches ~/.local."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = REPO / "data" / "demo" / "catalog.toml"


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory, monkeypatch):
    data = tmp_path_factory.mktemp("flair-viz-data")
    monkeypatch.setenv("FLAIR_VIZ_DATA", str(data))
    monkeypatch.setenv("FLAIR_VIZ_CACHE", str(data / "cache"))
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def tile_server(tmp_path_factory):
    """One real tile server (uvicorn) for the session's page tests, on a free port, stopped at the end.

    Pages call ``ui.common.tiles_url()``, which would otherwise reuse or start a server on the default
    port that may run other code.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    os.environ["FLAIR_VIZ_TILE_PORT"] = str(port)
    os.environ["FLAIR_VIZ_TILES_URL"] = url
    log = open(tmp_path_factory.mktemp("tile-server") / "log.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "flair_viz", "serve", "--port", str(port),
                             "--catalog", str(DEMO_CATALOG)], cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except Exception:
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
