"""Arguments shared by several ``flair-viz`` commands, declared once.

``--catalog`` and the cluster options mean the same thing on every command, so they are declared
here and every command reads them through :func:`catalog_file` and :func:`client`. They live in core,
below the features, because each feature's ``cli.py`` uses them while ``flair_viz.cli.main`` imports
those modules: in ``flair_viz.cli`` they made features import their own entry point.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flair_viz.core import config
from flair_viz.core.jobs import DEFAULT_RETRIES, client_for

CATALOG_HELP = "catalog TOML (default: $FLAIR_VIZ_CATALOG or the demo catalog)"


def add_catalog_arg(p: argparse.ArgumentParser, help: str = CATALOG_HELP) -> None:
    p.add_argument("--catalog", help=help)


def catalog_file(args: argparse.Namespace, default: Path | None = None) -> Path:
    """The catalog a command works on: ``--catalog``, else ``$FLAIR_VIZ_CATALOG``, else ``default`` or the demo."""
    return Path(args.catalog) if getattr(args, "catalog", None) else config.catalog_path(default)


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """``--workers N`` (local cluster) or ``--scheduler ADDR`` (existing cluster), plus ``--retries``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None,
                   help="run on a local Dask cluster of N worker processes (one per GPU on GPU machines)")
    g.add_argument("--scheduler", metavar="ADDR", help="run on an existing Dask cluster, e.g. tcp://HOST:8786")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help=f"times a failed task is retried (default {DEFAULT_RETRIES}); a dead worker's tasks "
                        "are rescheduled anyway")


def wants_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "workers", None) or getattr(args, "scheduler", None))


def client(args: argparse.Namespace):
    """A context manager giving the Dask client the cluster options ask for."""
    return client_for(workers=args.workers or 2, scheduler=args.scheduler)
