"""``flair-viz serve``: run the tile server (binds 127.0.0.1 unless ``--host`` says otherwise)."""

from __future__ import annotations

import argparse

from flair_viz.core import cliargs as shared
from flair_viz.core import config
from flair_viz.server.run import serve


def cmd_serve(args: argparse.Namespace) -> int:
    serve(str(shared.catalog_file(args)), args.host, args.port, args.workers, args.token, args.engine)
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the tile server (binds 127.0.0.1 unless --host is given)")
    shared.add_catalog_arg(p)
    p.add_argument("--host", default=config.DEFAULT_HOST)
    p.add_argument("--port", type=int, default=config.tile_port())
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--token", default=None, help="require this token on every request (or FLAIR_VIZ_TOKEN)")
    from flair_viz.predict.engines import AUTO, ENGINES

    p.add_argument("--engine", choices=(AUTO, *ENGINES), default=None,
                   help="live-prediction engine (sets FLAIR_VIZ_ENGINE; default auto: the fastest CPU engine that "
                        "keeps torch's classes, torch on a GPU)")
    p.set_defaults(func=cmd_serve)
