"""The ``flair-viz`` command line: one entry point; each feature's ``cli`` module adds its subcommands.

A :class:`FlairVizError` becomes a two-line message (problem, fix) and exit code 2: users of a
CLI on messy data need the fix, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flair_viz.core import config
from flair_viz.core.errors import FlairVizError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flair-viz", description="Explore land-cover predictions on IGN FLAIR imagery.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each feature's CLI module adds its subcommands (with ``func=``); imported here, so that the
    # library never imports a CLI module. They import nothing heavy (torch, Dask) at module level.
    from flair_viz.annotate import cli as annotate_cli
    from flair_viz.change import cli as change_cli
    from flair_viz.cli import catalog as catalog_cli
    from flair_viz.cli import serve as serve_cli
    from flair_viz.correct import cli as correct_cli
    from flair_viz.metrics import cli as metrics_cli
    from flair_viz.predict import cli as predict_cli

    for module in (catalog_cli, serve_cli, metrics_cli, change_cli, annotate_cli, predict_cli, correct_cli):
        module.add_cli(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command and let its :class:`FlairVizError` propagate.

    What the UI runs in a child process (:mod:`flair_viz.core.child`): the page then gets the error's
    condition, problem and fix as an exception, instead of parsing two lines of stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.command != "serve":
        config.one_shot_process()  # no background engine build that the exit would abort
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
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
