"""``flair-viz catalog``: scan FLAIR folders into a catalog file, list and validate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flair_viz.cli import args as shared
from flair_viz.core import config, describe
from flair_viz.core.catalog import Catalog, Dataset, scan_flair_folder
from flair_viz.core.errors import FlairVizError


def _scan_target(args: argparse.Namespace) -> Path:
    """Where a scan is saved: --catalog, $FLAIR_VIZ_CATALOG, else a user catalog (never the bundled demo)."""
    return shared.catalog_file(args, default=config.user_data_dir() / "catalog.toml")


def cmd_scan(args: argparse.Namespace) -> int:
    target = _scan_target(args)
    folder = Path(args.dir).resolve()
    if target.exists():
        cat = Catalog.load(target)
    else:
        cat = Catalog(root=Path(args.root).resolve() if args.root else folder, source=target)
    found = scan_flair_folder(folder, metadata=args.metadata, root=cat.root)
    for ds in found:
        cat.add(ds, replace_existing=True)
    problems: list[str] = []
    for ds in found:  # an invalid dataset is reported and left out, never registered
        found_problems = _problems(cat, ds)
        if found_problems:
            cat.remove(ds.id)
            problems += found_problems
    for p in problems:
        print(f"invalid: {p} (not registered)")
    cat.save(target)
    print(f"registered {len(found) - len(problems)} of {len(found)} datasets from {folder} into {target}")
    if target.resolve() != config.catalog_path().resolve():
        print(f"to use it: FLAIR_VIZ_CATALOG={target} scripts/run.sh")
    return 2 if problems else 0


def _problems(cat: Catalog, ds: Dataset) -> list[str]:
    try:
        cat.validate(ds, scan_values=True)
        return []
    except FlairVizError as exc:
        return [exc.message]


def cmd_list(args: argparse.Namespace) -> int:
    cat = Catalog.load(shared.catalog_file(args))
    if args.json:
        return _print_json(cat)
    rows = [(d.id, d.role, d.domain or "", d.zone or "", d.vintage or "", ",".join(d.bands) or d.nomenclature,
             "SIMULATED" if d.simulated else "") for d in cat]
    widths = [max(len(str(r[i])) for r in rows + [("id", "role", "domain", "zone", "vintage", "bands", "")]) for i in range(7)]
    header = ("id", "role", "domain", "zone", "vintage", "bands/nomenclature", "")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if cat.attribution:
        print(f"\n{len(cat)} datasets · {cat.attribution}")
    return 0


def _print_json(cat: Catalog) -> int:
    """The catalog as a JSON array on stdout and nothing else, so scripts can pipe it; bad files carry an error."""
    print(json.dumps([describe.listing(d) for d in cat], indent=2, ensure_ascii=False))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cat = Catalog.load(shared.catalog_file(args))
    problems = cat.validate_all(scan_values=True)
    for p in problems:
        print(f"invalid: {p}")
    print(f"{len(cat)} datasets checked, {len(problems)} problem(s)")
    return 2 if problems else 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="scan, list and validate the dataset catalog")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    shared.add_catalog_arg(common, help="catalog TOML file (default: $FLAIR_VIZ_CATALOG, else the demo catalog for "
                                        "list/validate and <user data>/catalog.toml for scan)")
    s = csub.add_parser("scan", parents=[common], help="register a folder in FLAIR layout <domain>/<zone>/img/IMG_<id>.tif")
    s.add_argument("dir")
    s.add_argument("--metadata", help="FLAIR metadata JSON keyed by IMG_<id> (default: *metadata*.json in DIR)")
    s.add_argument("--root", help="data root for a new catalog (default: DIR)")
    s.set_defaults(func=cmd_scan)
    l_ = csub.add_parser("list", parents=[common], help="list registered datasets")
    l_.add_argument("--json", action="store_true",
                    help="print a JSON array (id, role, kind, domain, zone, vintage, bounds in EPSG:2154, ...)")
    l_.set_defaults(func=cmd_list)
    v = csub.add_parser("validate", parents=[common], help="check every dataset (band counts, mask values, grids)")
    v.set_defaults(func=cmd_validate)
