"""The UI's side of the tile server: a JSON client that raises the server's own errors, and a server
started when none answers.

Why in the web layer: the pages and the launcher are the server's clients, not part of it. Kept in
``server/run.py`` they made the UI import the server package (and its uvicorn entry) to fetch a list
of models, and the launcher kept its own copy of the start-and-wait loop.
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

START_WAIT_S = 120.0  # a first start exports the CPU engines before it binds: seconds per model


def _health(url: str, timeout: float) -> dict | None:
    """The server's /healthz answer ({} when it is not JSON), or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as r:
            if r.status != 200:
                return None
            try:
                return json.loads(r.read())
            except ValueError:
                return {}
    except Exception:
        return None


def is_up(url: str, timeout: float = 0.5) -> bool:
    return _health(url, timeout) is not None


def wait_while_warming(url: str, limit_s: float = 60.0, say=print) -> float:
    """Wait (at most ``limit_s``) while the tile server predicts the demo zone ahead, and return how long.

    Why: the launcher announces the app when its first map is ready. On a first start the zone's prediction
    (seconds on a CPU, kept on disk, so later starts skip it) would otherwise share the CPUs with the
    first page and arrive after its aerial tiles."""
    t0 = time.monotonic()
    said = False
    while time.monotonic() - t0 < limit_s:
        health = _health(url, 2)
        if not (health and health.get("warming")):
            break  # done, or a server that does not say: nothing to wait for
        if not said:
            say("Predicting the demo zone ahead (first start only; kept on disk)...")
            said = True
        time.sleep(0.2)
    return time.monotonic() - t0


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


def start_server(port: int, catalog: str | os.PathLike[str] | None = None, *,
                 log: Path | None = None) -> subprocess.Popen:
    """Start ``flair-viz serve`` on ``port`` and return at once.

    With ``log``, the server is detached (its own session, output appended to the log): it outlives the
    Streamlit process that started it. Without, it is the caller's child writing to the caller's
    terminal, which the launcher stops when it exits.
    """
    cmd = [sys.executable, "-m", "flair_viz", "serve", "--port", str(port)]
    if catalog:
        cmd += ["--catalog", str(catalog)]
    if log is None:
        return subprocess.Popen(cmd, cwd=config.REPO_ROOT)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True, cwd=config.REPO_ROOT)


def wait_until_up(url: str, proc: subprocess.Popen, wait_s: float = START_WAIT_S) -> bool:
    """Whether a server answers at ``url`` before ``wait_s`` ends; stops waiting if ``proc`` exits.

    A process that exited may have lost the port to another server started meanwhile: if that one
    answers, it is as good.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if is_up(url):
            return True
        time.sleep(0.1)
    return is_up(url)


def ensure_running(url: str | None = None, catalog: str | os.PathLike[str] | None = None,
                   wait_s: float = START_WAIT_S) -> str:
    """Start a local tile server in the background unless one already answers at ``url``."""
    url = url or config.tile_server_url()
    if is_up(url):
        return url
    port = int(url.rsplit(":", 1)[-1].split("/")[0])
    log = config.user_data_dir() / "tile-server.log"
    if wait_until_up(url, start_server(port, catalog, log=log), wait_s):
        return url
    raise Misconfigured(f"The tile server did not start on {url}",
                        f"see {log}; is port {port} taken? Set FLAIR_VIZ_TILE_PORT to another port")
