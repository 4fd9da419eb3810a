"""The ``flair-viz`` command line. Each feature module adds its own subcommands.

A :class:`FlairVizError` becomes a two-line message (problem, fix) and exit code 2: users of a
CLI on messy data need the fix, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flair_viz.errors import FlairVizError

# Modules that define ``add_cli(subparsers)``; each registers its subcommands with ``func=``.
CLI_MODULES = (
    "flair_viz.catalog_cli",
    "flair_viz.server",
    "flair_viz.metrics_cli",
    "flair_viz.change_cli",
    "flair_viz.annotation_cli",
    "flair_viz.predict_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flair-viz", description="Explore land-cover predictions on IGN FLAIR imagery.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in CLI_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FlairVizError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no partial output was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
