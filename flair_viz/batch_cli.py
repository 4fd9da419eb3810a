"""The many-scenes forms of ``flair-viz predict``, ``evaluate`` and ``change``, run on Dask.

The single-scene commands stay in their own modules; they hand over to these functions when the
user asks for a cluster (``--workers``/``--scheduler``) or for many scenes (``predict --out DIR``,
``change --pairs FILE``), so each command keeps one name and one set of familiar options.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from flair_viz import batch, config, models, scenes
from flair_viz.catalog import Catalog
from flair_viz.errors import FlairVizError


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """``--workers N`` (local cluster) or ``--scheduler ADDR`` (existing cluster), plus ``--retries``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None,
                   help="run on a local Dask cluster of N worker processes (one per GPU on GPU machines)")
    g.add_argument("--scheduler", metavar="ADDR", help="run on an existing Dask cluster, e.g. tcp://HOST:8786")
    p.add_argument("--retries", type=int, default=batch.DEFAULT_RETRIES,
                   help=f"times a failed task is retried (default {batch.DEFAULT_RETRIES}); a dead worker's tasks "
                        "are rescheduled anyway")


def wants_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "workers", None) or getattr(args, "scheduler", None))


def _client(args: argparse.Namespace):
    return batch.client_for(workers=args.workers or 2, scheduler=args.scheduler)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="predict many scenes: one PRED_<scene>.tif per scene in DIR, plus a "
                   "VRT mosaic registered in the catalog; INPUTs are folders (FLAIR layout), globs, files, catalog "
                   "IDs or `catalog:` (every image of the catalog)")
    p.add_argument("--catalog", help="catalog for IDs and for registering the mosaic (default: $FLAIR_VIZ_CATALOG "
                   "or the demo catalog)")
    p.add_argument("--domain", help="only scenes of this domain (e.g. D004_2021)")
    p.add_argument("--zone", help="only scenes of this zone (e.g. Z6_NU)")
    p.add_argument("--with-proba", action="store_true", help="also write PROBA_<scene>.tif (19 bands, 0..255)")
    p.add_argument("--block-px", type=int, default=batch.DEFAULT_BLOCK_PX,
                   help=f"split scenes wider or taller than this into blocks of windows, one task each "
                        f"(default {batch.DEFAULT_BLOCK_PX}; 0: one task per scene)")
    p.add_argument("--no-register", action="store_true", help="do not register the mosaic in the catalog")
    p.add_argument("--outside-root", action="store_true",
                   help="register the mosaic even though DIR is outside the catalog's data root")
    add_cluster_args(p)


def cmd_predict_many(args: argparse.Namespace) -> int:
    """``flair-viz predict --model M --out DIR [--workers N | --scheduler ADDR] INPUT...``."""
    if not args.out:
        raise FlairVizError("Several inputs or --workers/--scheduler need --out DIR",
                            "add --out DIR for one COG per scene, or give exactly INPUT.tif OUTPUT.tif")
    if args.proba:
        raise FlairVizError("--proba names one file, so it only works with a single scene",
                            "use --with-proba to write PROBA_<scene>.tif for every scene")
    card = models.get_card(args.model)
    cat_file = Path(args.catalog) if args.catalog else config.catalog_path()
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    found = scenes.expand(args.inputs, catalog, domain=args.domain, zone=args.zone)
    if args.bands:
        bands = tuple(b.strip() for b in args.bands.split(","))
        found = [replace(s, bands=bands) for s in found]
    with _client(args) as client:
        res = batch.batch_predict(found, card, args.out, client, proba=args.with_proba, batch_size=args.batch_size,
                                  device=args.device, retries=args.retries, progress=not args.quiet,
                                  catalog_file=None if args.no_register else cat_file,
                                  outside_root=args.outside_root, block_px=args.block_px)
    note = " (DEMO model: not for evaluation)" if card.demo else ""
    print(f"{len(found)} scene(s) with {card.id}{note}: {len(res.computed)} predicted, {len(res.skipped)} already "
          f"done, in {Path(args.out).resolve()}")
    if res.mosaic:
        print(f"mosaic {res.mosaic}" + (f", registered as {res.catalog_id} in {cat_file}" if res.catalog_id else ""))
    return 0


def evaluate_many(pairs: list, store: Path, args: argparse.Namespace):
    """``flair-viz evaluate ... --workers N | --scheduler ADDR``: the same store, counted on Dask."""
    if getattr(args, "gpu", False):
        raise FlairVizError("--gpu counts in this process; it cannot be combined with --workers/--scheduler",
                            "drop --gpu (per-patch counting is fast on CPU workers) or drop the cluster option")
    with _client(args) as client:
        return batch.batch_evaluate(pairs, store, client, retries=args.retries, progress=True)


def add_change_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", metavar="PAIRS.csv", help="many pairs: a CSV with columns before,after[,name] (catalog "
                   "IDs or files relative to the CSV); each pair gets a folder OUT/<name>, and OUT/changes.csv and "
                   "changes.parquet combine their summaries")
    add_cluster_args(p)


def cmd_change_many(args: argparse.Namespace, catalog: Catalog | None) -> int:
    """``flair-viz change --pairs PAIRS.csv --out DIR [--workers N | --scheduler ADDR]``."""
    if args.before or args.after:
        raise FlairVizError("Give either BEFORE AFTER or --pairs, not both", "put every pair in the --pairs CSV")
    if args.regions:
        raise FlairVizError("--regions is not supported with --pairs", "run the pairs that need regions one by one")
    jobs = batch.read_pairs_csv(args.pairs, catalog, args.nomenclature)
    with _client(args) as client:
        table = batch.batch_change(jobs, args.out, client, grouping=args.grouping, retries=args.retries)
    cols = ["name", "changed_area_ha", "artificialisation_ha", "deartificialisation_ha", "net_artificialisation_ha"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if table["simulated"].any():
        print("NOTE: some pairs include a SIMULATED vintage", file=sys.stderr)
    print(f"wrote {Path(args.out).resolve() / 'changes.csv'} and changes.parquet ({len(table)} pair(s))")
    return 0
