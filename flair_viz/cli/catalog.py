"""``flair-viz catalog``: scan FLAIR folders into a catalog file, list and validate it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from flair_viz.core import catalog_file, config, describe, index, mosaics, raster, stack
from flair_viz.core import cliargs as shared
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import FlairVizError, OutsideDataRoot, context
from flair_viz.core.names import safe_name


def _scan_target(args: argparse.Namespace) -> Path:
    """Where a scan is saved: --catalog, $FLAIR_VIZ_CATALOG, else a user catalog (never the bundled demo)."""
    return shared.catalog_file(args, default=config.user_data_dir() / "catalog.toml")


def cmd_scan(args: argparse.Namespace) -> int:
    """Index a FLAIR tree (headers read in parallel) into Parquet beside the catalog, with zone mosaics.

    The TOML file gains (or replaces) one ``[[index]]`` entry for the folder through the one catalog writer,
    so what a person wrote in it survives. Broken files, duplicate IDs, misaligned masks and masks without
    an image are listed and left out (and kept in the index, so ``catalog validate`` names them later).
    """
    target = _scan_target(args).resolve()
    folder = Path(args.dir).resolve()
    root = Catalog.load(target).root if target.exists() else Path(args.root or folder).resolve()
    if not folder.is_relative_to(root):
        raise OutsideDataRoot(f"{folder} is outside the data root {root} of {target}",
                              "scan a folder under the data root, or use another --catalog (a new one takes --root)")
    levels = [lv for lv in args.mosaics.split(",") if lv] if args.mosaics != "none" else []
    mosaics.check_levels(levels)  # a typo fails now, not after reading 100k headers
    started = time.perf_counter()
    result = index.scan_tree(folder, root, args.metadata, workers=args.threads)
    table, errors = result.rows, list(result.errors)
    if not args.headers_only:
        table, errors = _check_values(table, root, errors, args.threads)
    name = safe_name(str(folder.relative_to(root))) if folder != root else "root"
    idx_dir = target.parent / f"{target.stem}.index"
    built, mosaic_errors = mosaics.build_mosaics(table, root, idx_dir / name, levels) if levels else (table[:0], [])
    errors += mosaic_errors
    full = pd.concat([table, built], ignore_index=True) if len(built) else table
    index.write_index(full, idx_dir / f"{name}.parquet", index.folder_stamp(folder), [e.message for e in errors])
    entry = {"path": os.path.relpath(idx_dir / f"{name}.parquet", target.parent),
             "folder": str(folder.relative_to(root)) or "."}
    catalog_file.upsert(target, "index", [entry], key="path", data_root=os.path.relpath(root, target.parent))
    for e in errors:  # stdout lists them with the summary; stderr says each problem and its fix
        print(f"invalid: {e.message}")
        print(f"error: {e.problem}\nfix: {e.fix}", file=sys.stderr)
    n_patches = int((table["role"] == "image").sum())
    print(f"indexed {len(table)} datasets ({n_patches} patches) and {len(built)} mosaics from {folder} into "
          f"{idx_dir / (name + '.parquet')} in {time.perf_counter() - started:.1f} s; {len(errors)} problem(s)")
    if target != config.catalog_path().resolve():
        print(f"to use it: FLAIR_VIZ_CATALOG={target} scripts/run.sh")
    return 2 if errors else 0


def _check_values(table: pd.DataFrame, root: Path, errors: list, threads: int | None) -> tuple[pd.DataFrame, list]:
    """Read every mask (on threads) and leave out those with values outside FLAIR-1; --headers-only skips it."""
    from concurrent.futures import ThreadPoolExecutor

    masks = table[table["role"] == "truth"]

    def check(row) -> FlairVizError | None:
        try:
            with context(f"Dataset {row.id} (left out)"):
                raster.check_mask(root / row.path, scan_values=True)
        except FlairVizError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=threads or 8) as pool:
        found = list(pool.map(check, masks.itertuples()))
    bad = {row.id for row, e in zip(masks.itertuples(), found) if e is not None}
    return table[~table["id"].isin(bad)].reset_index(drop=True), errors + [e for e in found if e is not None]


def cmd_list(args: argparse.Namespace) -> int:
    cat = Catalog.load(shared.catalog_file(args))
    for p in cat.problems:  # on stderr: --json keeps stdout for the JSON alone
        print(f"warning: {p}", file=sys.stderr)
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
    print(json.dumps(describe.catalog_listing(cat), indent=2, ensure_ascii=False))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cat = Catalog.load(shared.catalog_file(args))
    problems = cat.problems + cat.validate_all(scan_values=True)
    for p in problems:
        print(f"invalid: {p}")
    print(f"{len(cat)} datasets checked, {len(problems)} problem(s)")
    return 2 if problems else 0


def cmd_stack(args: argparse.Namespace) -> int:
    """Register BD ORTHO dalles and their elevation as one image: the ``[[stack]]`` entry a person would write,
    through the one catalog writer, which loads the new text (every layer found, on one grid) before the file
    changes. Paths may be given from the current folder; they are stored relative to the data root."""
    target = _scan_target(args).resolve()
    root = Catalog.load(target).root if target.exists() else Path(args.root or target.parent).resolve()
    layers = {k: getattr(args, k) for k in stack.LAYER_KEYS if getattr(args, k)}
    fields = {"id": args.id, "title": args.title, **{k: os.path.relpath(os.path.abspath(v), root)
                                                    for k, v in layers.items()}, "vintage": args.vintage}
    entry = stack.StackEntry.from_toml({k: v for k, v in fields.items() if v}, "catalog stack")
    catalog_file.upsert(target, "stack", [entry.to_toml()], key="id", data_root=os.path.relpath(root, target.parent))
    ds = Catalog.load(target).get(entry.id)
    print(f"registered stack {ds.id} in {target}: bands {', '.join(ds.bands)}, {ds.extra['dalles']} RGB dalle(s)")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="scan, list and validate the dataset catalog")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    shared.add_catalog_arg(common, help="catalog TOML file (default: $FLAIR_VIZ_CATALOG, else the demo catalog for "
                                        "list/validate and <user data>/catalog.toml for scan)")
    s = csub.add_parser("scan", parents=[common], help="index a folder in FLAIR layout <domain>/<zone>/img/IMG_<id>.tif (+ zone mosaics)")
    s.add_argument("dir")
    s.add_argument("--metadata", help="FLAIR metadata JSON keyed by IMG_<id> (default: *metadata*.json in DIR)")
    s.add_argument("--root", help="data root for a new catalog (default: DIR)")
    s.add_argument("--threads", type=int, default=None, help="header-reading threads (default: 4 per CPU, at most 32)")
    s.add_argument("--mosaics", default="zone", help="mosaics to build: zone, domain, zone,domain or none (default: zone)")
    s.add_argument("--headers-only", action="store_true",
                   help="read headers (and each file's last pixel) only, not every mask's values: for 100k-patch trees")
    s.set_defaults(func=cmd_scan)
    l_ = csub.add_parser("list", parents=[common], help="list registered datasets")
    l_.add_argument("--json", action="store_true",
                    help="print a JSON array (id, role, kind, domain, zone, vintage, bounds in EPSG:2154, ...)")
    l_.set_defaults(func=cmd_list)
    v = csub.add_parser("validate", parents=[common], help="check every dataset (band counts, mask values, grids)")
    v.set_defaults(func=cmd_validate)
    k = csub.add_parser("stack", parents=[common], help="register BD ORTHO RGB/IRC dalles and elevation as one image")
    k.add_argument("--id", required=True, help="the catalog ID of the stack, e.g. HERAULT_2021")
    k.add_argument("--title", default="")
    k.add_argument("--vintage", default=None, help="year or ISO date of the images, e.g. 2021")
    k.add_argument("--root", help="data root for a new catalog (default: the catalog's folder)")
    for key, what in (("rgb", "R, G, B"), ("irc", "NIR, R, G (optional)"), ("elevation", "a ready elevation band"),
                      ("dsm", "a surface model in metres (with --dtm)"), ("dtm", "a terrain model in metres")):
        k.add_argument(f"--{key}", required=key == "rgb", help=f"a file, folder or quoted glob of dalles: {what}")
    k.set_defaults(func=cmd_stack)
