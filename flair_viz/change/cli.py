"""``flair-viz change BEFORE AFTER --out DIR``: the Change page's figures, from the command line.

Writes into DIR, each file atomically (a crash never leaves a partial file under these names):

* ``change.tif`` — COG, uint8: the after FLAIR-1 class (1..19) where the class changed, 0 elsewhere;
* ``from_to.csv`` — hectares at full precision, rows = before class, columns = after class (names);
* ``summary.json`` — ZAN flows, overlap area, alignment notes, the grouping file used and its text;
* ``regions.csv`` — per-region hectares, when ``--regions`` is given (plus an "outside" row);
* ``regions.gpkg`` — the same per region with its polygon and from-to hectares, for QGIS;
* ``flow.tif`` — COG, uint8: ZAN flow code (1 artificialisation, 2 de-artificialisation, 3 other change);
* ``change.qml``, ``flow.qml`` — QGIS styles beside the COGs, so they open coloured.

``flair-viz change --model ID IMG_A IMG_B --out DIR`` compares the model's predictions of two images (cached) and
adds ``confidence.tif`` (1 sure change, 2 uncertain change: either prediction's margin below ``--margin-threshold``)
and ``uncertainty.json``.

``flair-viz trend V1 V2 ... VN --out DIR`` (or ``--series NAME``) writes ``trend.csv``: one row per interval
(and per region with ``--regions``, plus ``regions.gpkg`` with one column per interval), hectares per ZAN
flow and net, cumulated, and what each end is (truth, prediction, simulated, file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flair_viz.change import gpkg, qml
from flair_viz.change.compute import ChangeResult, compute_change
from flair_viz.change.outputs import write_outputs
from flair_viz.change.trend import Trend, catalog_series, compute_trend
from flair_viz.core import atomic, classes
from flair_viz.core import cliargs as shared
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput


def run(before: str, after: str, out: Path, catalog: Catalog | None, regions: str | None = None,
        grouping: str | None = None, nomenclature: str = "flair1", region_field: str | None = None) -> ChangeResult:
    """Compute a change and write every output into ``out``, published as one set (:func:`atomic.output_set`)."""
    out = atomic.output_folder(out, _input_files(catalog, nomenclature, before, after, regions, grouping),
                               names=CHANGE_FILES)
    with atomic.sigterm_cleanup(), atomic.output_set(out, "change") as published:
        result = compute_change(before, after, catalog=catalog, grouping=grouping, regions=regions,
                                region_name_field=region_field, change_cog=out / "change.tif",
                                nomenclature=nomenclature, flow_cog=out / "flow.tif")
        published.add(qml.write_qml(out / "change.tif", "change"), qml.write_qml(out / "flow.tif", "flow"))
        if result.regions is not None:
            result.outputs["regions_gpkg"] = str(gpkg.write_gpkg(gpkg.change_frame(result), out / "regions.gpkg"))
        published.add(*write_outputs(out, result).values())
    return result


# What `change --out DIR` may write: refused before any work when one of them is an input.
CHANGE_FILES = ("change.tif", "flow.tif", "confidence.tif", "change.qml", "flow.qml", "confidence.qml", "from_to.csv",
                "regions.csv", "regions.gpkg", "summary.json", "uncertainty.json", "trend.csv", "trend.json")


def _input_files(catalog: Catalog | None, nomenclature: str, *refs: str | None) -> list[Path]:
    """The files a command reads (catalog IDs resolved), so that no output is written over one of them."""
    files = []
    for ref in refs:
        if ref is None:
            continue
        if catalog is not None and ref in catalog:
            files.append(catalog.get(ref).path)
        elif Path(ref).exists():
            files.append(Path(ref))
    return files


def cmd_change(args: argparse.Namespace) -> int:
    cat_file = shared.catalog_file(args)
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    if args.pairs or shared.wants_cluster(args):  # many pairs on Dask
        return cmd_change_many(args, catalog)
    if args.model:
        return cmd_change_predictions(args, catalog)
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


def cmd_change_predictions(args: argparse.Namespace, catalog: Catalog | None) -> int:
    """``flair-viz change --model ID IMG_A IMG_B --out DIR``: change between the model's predictions of two images."""
    from flair_viz.change.predicted import predictions_change

    if not (args.before and args.after) or args.pairs or args.regions:
        raise InvalidInput("--model needs exactly two images (IMG_A IMG_B), without --pairs or --regions",
                           "e.g. flair-viz change --model demo-unet-r18 IMG_000473 IMG_000473_SIM2024 --out DIR")
    out = atomic.output_folder(Path(args.out), _input_files(catalog, "flair1", args.before, args.after, args.grouping),
                               names=CHANGE_FILES)
    with atomic.sigterm_cleanup(), atomic.output_set(out, f"change --model {args.model}") as published:
        pc = predictions_change(args.model, args.before, args.after, catalog=catalog, out_dir=out,
                                margin_threshold=args.margin_threshold, grouping=args.grouping, device=args.device)
        for name, kind in (("change.tif", "change"), ("flow.tif", "flow"), ("confidence.tif", "confidence")):
            published.add(out / name, qml.write_qml(out / name, kind))
        published.add(*write_outputs(out, pc.result).values())
        u = pc.uncertainty()
        published.add(atomic.write_text(out / "uncertainty.json", json.dumps(u, indent=2, ensure_ascii=False) + "\n"))
    if u["simulated"]:
        print("NOTE: this pair includes a SIMULATED image vintage")
    print(f"{pc.model}: changed {u['changed_ha']:.4f} ha, of which uncertain {u['uncertain_changed_ha']:.4f} ha "
          f"(either prediction's top-1 minus top-2 probability < {pc.margin_threshold})")
    z, zs = pc.result.zan(), u["zan_sure"]
    print(f"artificialisation {z['artificialisation_ha']:.4f} ha (sure {zs['artificialisation_ha']:.4f} ha), "
          f"de-artificialisation {z['deartificialisation_ha']:.4f} ha (sure {zs['deartificialisation_ha']:.4f} ha)")
    print(f"wrote change.tif, flow.tif, confidence.tif (+ .qml), from_to.csv, summary.json, uncertainty.json "
          f"into {args.out}")
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


def run_trend(refs: list[str], out: Path, catalog: Catalog | None, regions: str | None = None,
              grouping: str | None = None, nomenclature: str = "flair1", region_field: str | None = None,
              cogs: bool = False) -> Trend:
    """Compute a series' trend and write trend.csv, trend.json (and regions.gpkg, interval COGs) into ``out``,
    published as one set (:func:`atomic.output_set`)."""
    out = atomic.output_folder(out, _input_files(catalog, nomenclature, *refs, regions, grouping), names=CHANGE_FILES)
    with atomic.sigterm_cleanup(), atomic.output_set(out, "trend") as published:
        res = compute_trend(refs, catalog=catalog, grouping=grouping, regions=regions, region_name_field=region_field,
                            cog_dir=out if cogs else None, nomenclature=nomenclature)
        for r in res.intervals if cogs else ():
            published.add(r.outputs["change_cog"], qml.write_qml(r.outputs["change_cog"], "change"),
                          r.outputs["flow_cog"], qml.write_qml(r.outputs["flow_cog"], "flow"))
        with atomic.atomic_path(out / "trend.csv") as tmp:
            res.table().to_csv(tmp, index=False, float_format="%.17g")
        published.add(out / "trend.csv")
        if res.regions is not None:
            published.add(gpkg.write_gpkg(gpkg.trend_frame(res), out / "regions.gpkg"))
        published.add(atomic.write_text(out / "trend.json", json.dumps(res.summary(), indent=2, ensure_ascii=False)
                                        + "\n"))
    return res


def cmd_trend(args: argparse.Namespace) -> int:
    cat_file = shared.catalog_file(args)
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    refs = list(args.vintages)
    if args.series:
        if catalog is None:
            raise InvalidInput(f"--series needs a catalog; {cat_file} does not exist", "give --catalog FILE")
        if refs:
            raise InvalidInput("Give either vintages or --series, not both", "drop the vintages or --series")
        refs = [d.id for d in catalog_series(catalog, args.series)]
    res = run_trend(refs, Path(args.out), catalog, regions=args.regions, grouping=args.grouping,
                    nomenclature=args.nomenclature, region_field=args.region_field, cogs=args.cogs)
    if res.simulated:
        print("NOTE: this series includes SIMULATED vintages")
    for note in res.notes:
        print(f"note: {note}")
    table = res.table()
    whole = table[table["region"] == "(all)"]
    cols = ["label", "before_source", "after_source", "artificialisation_ha", "deartificialisation_ha",
            "net_artificialisation_ha", "cumulative_net_ha"]
    print(whole[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote trend.csv, trend.json{', regions.gpkg' if res.regions else ''} into {args.out}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    add_trend_cli(sub)
    p = sub.add_parser("change", help="from-to matrix in hectares, ZAN flows and a change COG between two vintages",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("before", nargs="?", help="earlier class raster: catalog ID or file (its grid is the reference)")
    p.add_argument("after", nargs="?",
                   help="later class raster: catalog ID or file (resampled onto BEFORE's grid if needed)")
    p.add_argument("--out", required=True, help="output folder")
    _add_counting_args(p, "GeoPackage/GeoJSON of polygons for a per-region breakdown")
    p.add_argument("--model", help="change from predictions: BEFORE and AFTER are two images (IDs or files), "
                   "predicted by this model (cached) and compared; uncertain change is counted apart")
    p.add_argument("--margin-threshold", type=float, default=0.2,
                   help="with --model: a changed pixel is uncertain where either prediction's top-1 minus top-2 "
                   "probability is below this (default 0.2)")
    p.add_argument("--device", help="with --model: cpu, cuda or cuda:N (default: the best available)")
    shared.add_catalog_arg(p)
    p.add_argument("--pairs", metavar="PAIRS.csv", help="many pairs: a CSV with columns before,after[,name] (catalog "
                   "IDs or files relative to the CSV); each pair gets a folder OUT/<name>, and OUT/changes.csv and "
                   "changes.parquet combine their summaries")
    shared.add_cluster_args(p)
    p.set_defaults(func=cmd_change)


def _add_counting_args(p: argparse.ArgumentParser, regions_help: str) -> None:
    """How `change` and `trend` count: regions, ZAN grouping and the nomenclature of plain files."""
    p.add_argument("--regions", help=regions_help)
    p.add_argument("--region-field", help="column naming the regions (default: name/nom/NOM_COM/... if present)")
    p.add_argument("--grouping", help="ZAN grouping TOML (default: flair_viz/change/zan_grouping.toml)")
    p.add_argument("--nomenclature", choices=classes.nomenclature_names(), default="flair1",
                   help="nomenclature of rasters given as files (catalog IDs carry their own)")


def add_trend_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trend", help="ZAN flows per interval of a series of N vintages (trend.csv)",
                       description="Change of each consecutive interval of a series of vintages of one area: "
                       "trend.csv (one row per interval, and per region), trend.json, regions.gpkg.")
    p.add_argument("vintages", nargs="*", help="class rasters (catalog IDs or files), put in date order")
    p.add_argument("--series", help="a catalog series instead of listed vintages (entries with series = NAME)")
    p.add_argument("--out", required=True, help="output folder")
    _add_counting_args(p, "GeoPackage/GeoJSON of polygons: per-region rows and regions.gpkg")
    p.add_argument("--cogs", action="store_true", help="also write each interval's change.tif and flow.tif "
                   "(with QGIS .qml styles) into OUT/<i>_<before>__<after>/")
    shared.add_catalog_arg(p)
    p.set_defaults(func=cmd_trend)
