"""The tile server bounds its memory before serving: GDAL's block cache and glibc's malloc arenas."""

from __future__ import annotations

import os
import subprocess
import sys

from flair_viz.core import config
from tests.helpers import REPO


def test_bound_memory_sets_defaults_and_keeps_the_users(monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    config.bound_memory()
    assert os.environ["GDAL_CACHEMAX"] == config.GDAL_CACHE_MB
    assert os.environ["MALLOC_ARENA_MAX"] == config.MALLOC_ARENAS
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    config.bound_memory()
    assert (os.environ["GDAL_CACHEMAX"], os.environ["MALLOC_ARENA_MAX"]) == ("64", "4")


def test_gdal_takes_the_cache_limit_set_before_the_first_read():
    """In a fresh process (as `flair-viz serve`): GDAL's cache limit is the bound, not 5 % of the RAM."""
    code = ("import os\nos.environ.pop('GDAL_CACHEMAX', None)\nfrom flair_viz.core import config\nconfig.bound_memory()\n"
            "import rasterio\nfrom rasterio._env import get_gdal_config\nwith rasterio.Env():\n"
            "    print(get_gdal_config('GDAL_CACHEMAX'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GDAL_CACHEMAX", "MALLOC_ARENA_MAX")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert int(proc.stdout.split()[-1]) == int(config.GDAL_CACHE_MB) * 2**20  # GDAL answers in bytes (default: 5 % of RAM)
