"""``flair-viz change BEFORE AFTER --out DIR``: the Change page's figures, from the command line.

Writes into DIR, each file atomically (a crash never leaves a partial file under these names):

* ``change.tif`` — COG, uint8: the after FLAIR-1 class (1..19) where the class changed, 0 elsewhere;
* ``from_to.csv`` — hectares at full precision, rows = before class, columns = after class (names);
* ``summary.json`` — ZAN flows, overlap area, alignment notes, the grouping file used and its text;
* ``regions.csv`` — per-region hectares, when ``--regions`` is given (plus an "outside" row).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flair_viz.change.compute import ChangeResult, compute_change
from flair_viz.change.outputs import write_outputs
from flair_viz.cli import args as shared
from flair_viz.core import atomic, classes
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput


def run(before: str, after: str, out: Path, catalog: Catalog | None, regions: str | None = None,
        grouping: str | None = None, nomenclature: str = "flair1", region_field: str | None = None) -> ChangeResult:
    """Compute a change and write every output into ``out``."""
    atomic.output_folder(out)
    result = compute_change(before, after, catalog=catalog, grouping=grouping, regions=regions,
                            region_name_field=region_field, change_cog=out / "change.tif", nomenclature=nomenclature)
    write_outputs(out, result)
    return result


def cmd_change(args: argparse.Namespace) -> int:
    cat_file = shared.catalog_file(args)
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    if args.pairs or shared.wants_cluster(args):  # many pairs on Dask
        return cmd_change_many(args, catalog)
    if not (args.before and args.after):
        raise InvalidInput("BEFORE and AFTER are required (or --pairs PAIRS.csv)",
                           "give two class rasters, or a CSV of pairs with --pairs")
    res = run(args.before, args.after, Path(args.out), catalog, regions=args.regions, grouping=args.grouping,
              nomenclature=args.nomenclature, region_field=args.region_field)
    z = res.zan()
    s = res.summary()
    if res.simulated:
        print("NOTE: this pair includes a SIMULATED vintage")
    for note in s["alignment"]["notes"]:
        print(f"note: {note}")
    print(f"overlap {s['overlap_area_ha']:.4f} ha, changed {s['changed_area_ha']:.4f} ha")
    print(f"artificialisation {z['artificialisation_ha']:.4f} ha, de-artificialisation "
          f"{z['deartificialisation_ha']:.4f} ha, net {z['net_artificialisation_ha']:.4f} ha "
          f"(grouping: {res.grouping.source})")
    print(f"wrote {', '.join(Path(p).name for p in res.outputs.values())} into {args.out}")
    return 0


def cmd_change_many(args: argparse.Namespace, catalog: Catalog | None) -> int:
    """``flair-viz change --pairs PAIRS.csv --out DIR [--workers N | --scheduler ADDR]``."""
    if args.before or args.after:
        raise InvalidInput("Give either BEFORE AFTER or --pairs, not both", "put every pair in the --pairs CSV")
    if args.regions:
        raise InvalidInput("--regions is not supported with --pairs", "run the pairs that need regions one by one")
    from flair_viz.change import batch  # Dask: imported only for batch runs

    jobs = batch.read_pairs_csv(args.pairs, catalog, args.nomenclature)
    with shared.client(args) as client:
        table = batch.batch_change(jobs, args.out, client, grouping=args.grouping, retries=args.retries)
    cols = ["name", "changed_area_ha", "artificialisation_ha", "deartificialisation_ha", "net_artificialisation_ha"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if table["simulated"].any():
        print("NOTE: some pairs include a SIMULATED vintage", file=sys.stderr)
    print(f"wrote {Path(args.out).resolve() / 'changes.csv'} and changes.parquet ({len(table)} pair(s))")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("change", help="from-to matrix in hectares, ZAN flows and a change COG between two vintages",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("before", nargs="?", help="earlier class raster: catalog ID or file (its grid is the reference)")
    p.add_argument("after", nargs="?",
                   help="later class raster: catalog ID or file (resampled onto BEFORE's grid if needed)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--regions", help="GeoPackage/GeoJSON of polygons for a per-region breakdown")
    p.add_argument("--region-field", help="column naming the regions (default: name/nom/NOM_COM/... if present)")
    p.add_argument("--grouping", help="ZAN grouping TOML (default: flair_viz/change/zan_grouping.toml)")
    p.add_argument("--nomenclature", choices=classes.nomenclature_names(), default="flair1",
                   help="nomenclature of rasters given as files (catalog IDs carry their own)")
    shared.add_catalog_arg(p)
    p.add_argument("--pairs", metavar="PAIRS.csv", help="many pairs: a CSV with columns before,after[,name] (catalog "
                   "IDs or files relative to the CSV); each pair gets a folder OUT/<name>, and OUT/changes.csv and "
                   "changes.parquet combine their summaries")
    shared.add_cluster_args(p)
    p.set_defaults(func=cmd_change)
