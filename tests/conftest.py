"""Shared fixtures: an isolated user data folder for every test, so nothing touches ~/.local."""

from __future__ import annotations

import os
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
def artifacts_dir() -> Path:
    d = Path(os.environ.get("FLAIR_VIZ_ARTIFACTS", REPO / "artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d
