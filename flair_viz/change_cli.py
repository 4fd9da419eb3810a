"""``flair-viz change BEFORE AFTER --out DIR``: the Change page's figures, from the command line.

Writes into DIR, each file atomically (a crash never leaves a partial file under these names):

* ``change.tif`` — COG, uint8: the after FLAIR-1 class (1..19) where the class changed, 0 elsewhere;
* ``from_to.csv`` — hectares at full precision, rows = before class, columns = after class (names);
* ``summary.json`` — ZAN flows, overlap area, alignment notes, the grouping file used and its text;
* ``regions.csv`` — per-region hectares, when ``--regions`` is given (plus an "outside" row).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from flair_viz import atomic, batch_cli, classes, config
from flair_viz.catalog import Catalog
from flair_viz.change import ChangeResult, compute_change
from flair_viz.errors import FlairVizError

REGION_COLUMNS = ("region", "name", "area_ha", "changed_ha", "artificialisation_ha", "deartificialisation_ha",
                  "net_artificialisation_ha")


def from_to_csv(result: ChangeResult) -> str:
    """The 19 × 19 matrix as CSV; ``repr`` of floats keeps every digit (well below 1 m²)."""
    names = [c.name for c in classes.FLAIR1_CLASSES]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["before \\ after", *names])
    for name, row in zip(names, result.from_to_ha().tolist()):
        w.writerow([name, *(repr(float(v)) for v in row)])
    return buf.getvalue()


def regions_csv(result: ChangeResult) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REGION_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in result.region_table():
        w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def write_outputs(result_dir: Path, result: ChangeResult) -> dict[str, str]:
    """Write the tables and summary of a result whose change COG is already in ``result_dir``."""
    outputs = dict(result.outputs)
    outputs["from_to_csv"] = str(atomic.write_text(result_dir / "from_to.csv", from_to_csv(result)))
    if result.regions is not None:
        outputs["regions_csv"] = str(atomic.write_text(result_dir / "regions.csv", regions_csv(result)))
    outputs["summary_json"] = str(result_dir / "summary.json")
    result.outputs = outputs
    atomic.write_text(result_dir / "summary.json", json.dumps(result.summary(), indent=2, ensure_ascii=False) + "\n")
    return outputs


def run(before: str, after: str, out: Path, catalog: Catalog | None, regions: str | None = None,
        grouping: str | None = None, nomenclature: str = "flair1", region_field: str | None = None) -> ChangeResult:
    """Compute a change and write every output into ``out``."""
    if out.exists() and not out.is_dir():
        raise FlairVizError(f"--out {out} is a file", "give a folder (it is created if missing)")
    result = compute_change(before, after, catalog=catalog, grouping=grouping, regions=regions,
                            region_name_field=region_field, change_cog=out / "change.tif", nomenclature=nomenclature)
    write_outputs(out, result)
    return result


def cmd_change(args: argparse.Namespace) -> int:
    cat_file = Path(args.catalog) if args.catalog else config.catalog_path()
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    if args.pairs or batch_cli.wants_cluster(args):  # many pairs on Dask (flair_viz.batch)
        return batch_cli.cmd_change_many(args, catalog)
    if not (args.before and args.after):
        raise FlairVizError("BEFORE and AFTER are required (or --pairs PAIRS.csv)",
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


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("change", help="from-to matrix in hectares, ZAN flows and a change COG between two vintages",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("before", nargs="?", help="earlier class raster: catalog ID or file (its grid is the reference)")
    p.add_argument("after", nargs="?",
                   help="later class raster: catalog ID or file (resampled onto BEFORE's grid if needed)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--regions", help="GeoPackage/GeoJSON of polygons for a per-region breakdown")
    p.add_argument("--region-field", help="column naming the regions (default: name/nom/NOM_COM/... if present)")
    p.add_argument("--grouping", help="ZAN grouping TOML (default: flair_viz/zan_grouping.toml)")
    p.add_argument("--nomenclature", choices=classes.NOMENCLATURES, default="flair1",
                   help="nomenclature of rasters given as files (catalog IDs carry their own)")
    p.add_argument("--catalog", help="catalog TOML (default: $FLAIR_VIZ_CATALOG or the demo catalog)")
    batch_cli.add_change_args(p)
    p.set_defaults(func=cmd_change)
