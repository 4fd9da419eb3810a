"""Run the tile server (``flair-viz serve``) and make sure one is up for the app.

The server is stateless apart from caches, so scaling out is ``--workers N`` or more replicas.
It binds 127.0.0.1 unless ``--host`` says otherwise; an exposed server should set ``--token``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from flair_viz.core import config
from flair_viz.core.errors import FlairVizError, InvalidInput, Misconfigured, NotFound


def app_factory():
    """uvicorn ``--factory`` entry: reads catalog and token from the environment set by ``serve``."""
    from flair_viz.server.app import create_app

    s = config.settings()
    return create_app(s.catalog, token=s.token)


def is_up(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def fetch_json(base_url: str, path: str, timeout: float = 5.0):
    """GET a JSON document from the tile server (e.g. ``/models``, ``/device``), or a clear error.

    When the server answers an error, its own ``detail`` and ``fix`` are raised with the condition
    its status stands for, so the page shows *why* (an unknown model, a bad raster), not just "failed".
    """
    request = urllib.request.Request(f"{base_url.rstrip('/')}{path}")
    token = config.settings().token
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise _server_error(exc, base_url, path) from None
    except Exception as exc:
        raise Misconfigured(f"The tile server at {base_url} did not answer {path}: {exc}",
                            "check that it runs (`flair-viz serve`) and see its log") from None


def _server_error(exc: urllib.error.HTTPError, base_url: str, path: str) -> FlairVizError:
    """The server's JSON error as the condition of its status (the inverse of ``STATUS_CODES``)."""
    try:
        body = json.loads(exc.read())
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    detail = (detail if isinstance(detail, str) else f"{path} failed" + (f": {detail}" if detail else "")) \
        + f" (HTTP {exc.code} from the tile server)"
    fix = body.get("fix", "") if isinstance(body, dict) else ""
    condition = {404: NotFound, 400: InvalidInput, 422: InvalidInput}.get(exc.code, Misconfigured)
    return condition(detail, fix or f"see the tile server's log ({base_url})")


def serve(catalog: str | None, host: str, port: int, workers: int = 1, token: str | None = None,
          engine: str | None = None) -> None:
    import uvicorn

    config.bound_memory()  # GDAL cache and malloc arenas: see its doc
    config.export_for_workers(Path(catalog) if catalog else None, token, engine, workers)
    from flair_viz.predict import models

    models.prepare_cpu_engines(say=lambda line: print(line, file=sys.stderr, flush=True))  # before serving: see its doc
    if host not in ("127.0.0.1", "localhost", "::1") and not config.settings().token:
        print(f"warning: serving on {host} without a token; anyone who can reach it can read the catalog's "
              "datasets. Set --token or FLAIR_VIZ_TOKEN.", file=sys.stderr)
    uvicorn.run("flair_viz.server.run:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


def ensure_running(url: str | None = None, catalog: str | os.PathLike[str] | None = None,
                   wait_s: float = 120.0) -> str:
    """Start a local tile server in the background unless one already answers at ``url``."""
    url = url or config.tile_server_url()
    if is_up(url):
        return url
    port = int(url.rsplit(":", 1)[-1].split("/")[0])
    cmd = [sys.executable, "-m", "flair_viz", "serve", "--port", str(port)]
    if catalog:
        cmd += ["--catalog", str(catalog)]
    log = open(config.user_data_dir() / "tile-server.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, cwd=config.REPO_ROOT)
    deadline = time.monotonic() + wait_s  # a first start exports the CPU engines before binding: seconds per model
    while time.monotonic() < deadline and proc.poll() is None:
        if is_up(url):
            return url
        time.sleep(0.2)
    if is_up(url):  # it exited because another server took the port meanwhile: that one answers
        return url
    raise Misconfigured(f"The tile server did not start on {url}",
                        f"see {config.user_data_dir() / 'tile-server.log'}; is port {port} taken? "
                        "Set FLAIR_VIZ_TILE_PORT to another port")
