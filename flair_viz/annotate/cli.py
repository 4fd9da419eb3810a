"""``flair-viz candidates`` ranks places to annotate; ``flair-viz selections`` lists, exports and imports selections."""

from __future__ import annotations

import argparse
from pathlib import Path

import geopandas as gpd

from flair_viz.annotate import ranking, scenes, selections
from flair_viz.annotate.grid import cell_m_for
from flair_viz.annotate.scoring import score_files
from flair_viz.core import geotable, raster
from flair_viz.core.catalog import Catalog
from flair_viz.core.cliargs import add_catalog_arg, catalog_file
from flair_viz.core.errors import InvalidInput


def _check_inputs(args: argparse.Namespace) -> None:
    if Path(args.out).suffix.lower() not in geotable.FORMATS:
        raise InvalidInput(f"Cannot write {Path(args.out).name}: unknown format", "name it .gpkg, .geojson or .csv")
    if args.proba and len(args.proba) != len(args.dataset):
        raise InvalidInput(f"{len(args.proba)} --proba file(s) for {len(args.dataset)} --dataset ID(s)",
                           "give one probability GeoTIFF per dataset, in the same order")
    if not args.model and not args.proba:
        raise InvalidInput("Nothing to score with", "give --model ID (see `flair-viz models list`) or --proba FILE...")


def _score(cat: Catalog, args: argparse.Namespace, i: int, cell_m: float) -> gpd.GeoDataFrame:
    """Cells of the i-th --dataset, from its --proba GeoTIFF or from --model (and --model-b)."""
    ds_id = args.dataset[i]
    if args.proba and not args.model_b:  # stream the GeoTIFF one grid row at a time
        sc = scenes.scene(cat, ds_id)
        raster.check_same_grid(sc.info, raster.describe(args.proba[i]))
        truth = cat.get(sc.truth_id) if sc.truth_id and not args.no_truth else None
        return score_files(args.proba[i], dataset=ds_id, truth_path=str(truth.path) if truth else None,
                           truth_nomenclature=truth.nomenclature if truth else "flair1", n_classes=args.n_classes,
                           cell_m=cell_m)
    if args.proba:
        raster.check_same_grid(scenes.scene(cat, ds_id).info, raster.describe(args.proba[i]))
        pred = scenes.Probabilities(raster.read(args.proba[i]), n_classes=args.n_classes)
    else:
        pred = scenes.predict_scene(cat, ds_id, args.model)
    pred_b = scenes.predict_scene(cat, ds_id, args.model_b) if args.model_b else None
    return scenes.score_dataset(cat, ds_id, pred, pred_b=pred_b, cell_m=cell_m, use_truth=not args.no_truth)


def cmd_candidates(args: argparse.Namespace) -> int:
    weights = ranking.parse_weights(args.weights)
    _check_inputs(args)
    cat = Catalog.load(catalog_file(args))
    cell_m = cell_m_for(args.cell_px)
    frames = []
    for i, ds_id in enumerate(args.dataset):
        frames.append(_score(cat, args, i, cell_m))
        print(f"scored {ds_id}: {len(frames[-1])} cells of {cell_m:g} m")
    ranked = ranking.rank(frames, weights, args.top, args.spacing, rare_below=args.rare_below)
    table = ranking.candidate_table(ranked)
    out = Path(args.out)
    geotable.write_table(table, out, layer="candidates")
    rare = ", ".join(str(v) for v in ranked.attrs.get("rare_classes", []))
    print(f"wrote {len(table)} candidates to {out} (EPSG:2154; rare classes: {rare or 'none'})")
    if args.select:
        store = selections.SelectionStore(args.selections)
        ids = store.add_candidates(ranked)
        print(f"added {len(ids)} FLAIR cells to {store.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    gdf = selections.SelectionStore(args.selections).load()
    cols = ["id", "source", "dataset", "score", "status", "note"]
    print(gdf[cols].to_string(index=False) if len(gdf) else "no selections yet")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = selections.SelectionStore(args.selections)
    path = store.export(args.out)
    print(f"exported {len(store.load())} selections to {path} (EPSG:2154)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    added, replaced = selections.SelectionStore(args.selections).import_file(args.file)
    print(f"imported {args.file}: {added} added, {replaced} replaced")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("candidates", help="rank FLAIR-grid cells to annotate (uncertainty, errors, rare classes)")
    p.add_argument("--dataset", nargs="+", required=True, metavar="ID", help="catalog image IDs to score")
    p.add_argument("--model", help="model card ID to predict with (runs the inference module)")
    p.add_argument("--proba", nargs="+", metavar="FILE",
                   help="probability GeoTIFFs (from `flair-viz predict --proba`), one per --dataset, instead of --model")
    p.add_argument("--model-b", help="second model: adds the disagreement-between-models component")
    p.add_argument("--n-classes", type=int, metavar="N",
                   help="classes of the model behind --proba (entropy is divided by log N; default: the band count, "
                        "19 for `flair-viz predict --proba`)")
    p.add_argument("--top", type=int, default=20, help="number of candidates (default 20)")
    p.add_argument("--out", required=True, help="output .gpkg, .geojson or .csv (EPSG:2154)")
    p.add_argument("--weights", help="e.g. entropy=1,margin=1,gt=2,models=1,rare=0.5 (unnamed components keep 1)")
    p.add_argument("--spacing", type=float, default=0.0, metavar="METRES",
                   help="skip a cell whose centre is closer than this to one already picked")
    p.add_argument("--cell-px", type=int, default=512, help="grid cell in 0.2 m pixels: 512 (FLAIR patch) or 256/128/64")
    p.add_argument("--rare-below", type=float, default=ranking.RARE_BELOW,
                   help="a class is rare below this share of predicted pixels (default 0.02)")
    p.add_argument("--no-truth", action="store_true", help="ignore the ground truth even where the catalog has one")
    p.add_argument("--select", action="store_true", help="also add the candidates to the selections GeoPackage")
    p.add_argument("--selections", help="selections GeoPackage (default: $FLAIR_VIZ_SELECTIONS or the user data folder)")
    add_catalog_arg(p)
    p.set_defaults(func=cmd_candidates)

    s = sub.add_parser("selections", help="list, export or import the regions selected for annotation")
    ssub = s.add_subparsers(dest="selections_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--selections", help="selections GeoPackage (default: $FLAIR_VIZ_SELECTIONS or the user data folder)")
    ssub.add_parser("list", parents=[common], help="print the selections").set_defaults(func=cmd_list)
    e = ssub.add_parser("export", parents=[common], help="export to .gpkg, .geojson or .csv (EPSG:2154)")
    e.add_argument("out")
    e.set_defaults(func=cmd_export)
    i = ssub.add_parser("import", parents=[common], help="merge an export back by id (later `updated` wins)")
    i.add_argument("file")
    i.set_defaults(func=cmd_import)
