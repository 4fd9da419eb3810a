"""Run the tile server (``flair-viz serve``); the UI's client and ``ensure_running`` are in
:mod:`flair_viz.web.client`.

Scaling out is ``--workers N`` or more replicas: besides caches, a process keeps only its live tiles in flight
and its region batcher, so hinted views are turned off with several workers (``config.export_for_workers``).
It binds 127.0.0.1 unless ``--host`` says otherwise; an exposed server should set ``--token``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from flair_viz.core import config


def app_factory():
    """uvicorn ``--factory`` entry: reads catalog and token from the environment set by ``serve``."""
    from flair_viz.server.app import create_app

    s = config.settings()
    return create_app(s.catalog, token=s.token)


def serve(catalog: str | None, host: str, port: int, workers: int = 1, token: str | None = None,
          engine: str | None = None) -> None:
    import uvicorn

    config.bound_memory()  # GDAL cache and malloc arenas: see its doc
    config.export_for_workers(Path(catalog) if catalog else None, token, engine, workers)
    from flair_viz.predict import models

    models.prepare_cpu_engines(say=lambda line: print(line, file=sys.stderr, flush=True))  # before serving: see its doc
    if config.settings().warm:
        from flair_viz.predict import live

        live.WARMING.set()  # before the server answers: /healthz says "warming" from its first answer
        threading.Thread(target=warm_story, name="warm-story", daemon=True).start()
    if host not in ("127.0.0.1", "localhost", "::1") and not config.settings().token:
        print(f"warning: serving on {host} without a token; anyone who can reach it can read the catalog's "
              "datasets. Set --token or FLAIR_VIZ_TOKEN.", file=sys.stderr)
    uvicorn.run("flair_viz.server.run:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


def warm_story() -> None:
    """Predict the home story's zone and patch with the default model in this process, while it starts
    serving (``FLAIR_VIZ_WARM``, default on). Why: a user sent from the home page to the demo zone would
    otherwise wait for the whole zone's prediction; it is kept on disk, so a restart finds it done.
    With ``--workers N`` it runs in the supervisor, and the workers read the result from disk."""
    from flair_viz.core.catalog import Catalog
    from flair_viz.core.errors import FlairVizError
    from flair_viz.predict import cards, live
    from flair_viz.web import story

    try:
        try:
            targets, models = story.warm_targets(Catalog.load(config.catalog_path())), cards.list_cards()
        except FlairVizError as exc:
            print(f"flair-viz: nothing predicted ahead: {exc}", file=sys.stderr, flush=True)
            return
        if targets and models:
            live.warm(targets, models[0])
    finally:
        live.WARMING.clear()
