"""Where things live: the repo's demo data, the default catalog, and the user data folder.

Paths come from environment variables first so that a deployment (or a test) can move them
without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "data" / "demo"
DEMO_CATALOG = DEMO_DIR / "catalog.toml"
MODELS_DIR = REPO_ROOT / "models"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TILE_PORT = 8765
DEFAULT_APP_PORT = 8501


def catalog_path(default: Path | None = None) -> Path:
    """The catalog the app and the tile server use: ``$FLAIR_VIZ_CATALOG``, else ``default``, else the demo."""
    return Path(os.environ.get("FLAIR_VIZ_CATALOG") or default or DEMO_CATALOG)


def user_data_dir() -> Path:
    """Per-user writable folder for selections, metrics and caches: ``$FLAIR_VIZ_DATA`` or XDG default."""
    base = os.environ.get("FLAIR_VIZ_DATA")
    if base:
        p = Path(base)
    else:
        p = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "flair-viz"
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    """Disk cache for prediction tiles and batch predictions."""
    p = Path(os.environ.get("FLAIR_VIZ_CACHE", user_data_dir() / "cache"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def tile_server_url() -> str:
    """Base URL of the tile server the UI talks to (``$FLAIR_VIZ_TILES_URL`` or loopback default)."""
    return os.environ.get("FLAIR_VIZ_TILES_URL", f"http://{DEFAULT_HOST}:{tile_port()}")


def tile_port() -> int:
    return int(os.environ.get("FLAIR_VIZ_TILE_PORT", DEFAULT_TILE_PORT))


def basemap_url() -> str | None:
    """An optional online basemap (XYZ template) set by the operator; unset by default, so the app
    never depends on the internet."""
    return os.environ.get("FLAIR_VIZ_BASEMAP_URL") or None
