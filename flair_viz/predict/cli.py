"""``flair-viz models list`` and ``flair-viz predict``: the model registry and batch prediction from a shell."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from flair_viz.core import atomic, raster, scenes
from flair_viz.core import cliargs as shared
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, InvalidModel, UnknownDataset
from flair_viz.core.jobs import DEFAULT_BLOCK_PX
from flair_viz.predict import cards, engines
from flair_viz.predict.bands import model_input


def cmd_models_list(args: argparse.Namespace) -> int:
    found, scanned = cards.scan_cards()
    problems, valid = list(scanned), []  # copies: scan_cards' lists are its cache
    for card in found:  # the check parse_card leaves out: is the arch a real smp model? (no torch import)
        try:
            cards.check_arch(card)
            valid.append(card)
        except InvalidModel as exc:
            problems.append(exc.message)
    rows = [(c.id, "DEMO" if c.demo else "", f"{c.arch}/{c.encoder}", ",".join(c.in_bands),
             f"{c.classes} {c.nomenclature}", c.licence, c.title) for c in valid]
    header = ("id", "demo", "architecture", "bands", "classes", "licence", "title")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    for c in valid:
        if c.demo:
            print(f"\n{c.id} is a DEMO model: {c.description.splitlines()[0] if c.description else 'not for evaluation'}")
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    print(f"\n{len(valid)} model(s) in {', '.join(str(d) for d in cards.model_dirs())}")
    return 2 if problems else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from flair_viz.predict import inference, models  # torch: imported only when predicting

    if args.out or shared.wants_cluster(args) or len(args.inputs) != 2:
        return cmd_predict_many(args)  # many scenes on Dask
    args.input, args.output = args.inputs
    scene, sources = single_scene(args)
    args.input = scene.path
    # outputs and the image are checked before the model loads, let alone runs; a stack's dalles are inputs too
    out = atomic.check_output(args.output, sources, "OUTPUT")
    proba = atomic.check_output(args.proba, sources, "--proba") if args.proba else None
    card = cards.get_card(args.model)
    bands = tuple(b.strip() for b in args.bands.split(",")) if args.bands else scene.bands
    info = raster.check_image(args.input, bands)
    model_input(card, info, bands, scene.dataset_id or Path(args.input).name)
    atomic.sweep(out.absolute().parent, {out.name})  # what killed runs left beside the outputs
    if proba is not None:
        atomic.sweep(proba.absolute().parent, {proba.name})
    loaded = models.load_model(card, args.device, args.engine)
    with atomic.sigterm_cleanup():
        out = inference.predict_file(loaded, args.input, args.output, proba_path=args.proba,
                                     batch_size=args.batch_size, progress=not args.quiet, bands=bands)
    note = " (DEMO model: not for evaluation)" if card.demo else ""
    print(f"wrote {out}" + (f" and {args.proba}" if args.proba else "") +
          f" with {card.id} on {models.device_name(args.device)} ({loaded.engine} engine){note}")
    return 0


def single_scene(args: argparse.Namespace) -> tuple[scenes.Scene, list[Path]]:
    """``predict INPUT OUTPUT.tif``'s INPUT and the files an output must not replace (the image; a stack's dalles
    too): an image file as given, else a catalog image by ID (a patch, a zone mosaic, a ``[[stack]]``), with the
    bands its entry declares. An ID the catalog does not know, or a folder or glob (many scenes: they need
    ``--out``), is refused before the model loads."""
    path = Path(args.input)
    as_file = scenes.Scene(name=scenes.scene_name(path), path=path), [path]
    if path.is_file():
        return as_file
    cat_file = shared.catalog_file(args)
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    if catalog is not None and args.input in catalog:
        from flair_viz.core import stack

        scene = scenes.expand([args.input], catalog)[0]  # a non-image ID is refused there, by its role
        return scene, [scene.path, *(p for p, _ in stack.dalles(catalog.get(args.input)))]
    if path.suffix.lower() in (*scenes.RASTER_SUFFIXES, ".jp2") and not scenes.GLOB_CHARS.search(args.input):
        return as_file  # a missing file: the raster reader names it ("File not found")
    if path.is_dir() or scenes.GLOB_CHARS.search(args.input):
        raise InvalidInput(f"INPUT {args.input!r} names many scenes; OUTPUT.tif holds one",
                           f"add --out DIR: flair-viz predict --model {args.model} --out DIR {args.input}")
    raise UnknownDataset(f"INPUT {args.input!r} is neither an image file nor a dataset ID of the catalog {cat_file}",
                         "check the path, or run `flair-viz catalog list` (with the same --catalog) for the IDs")


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="predict many scenes: one PRED_<scene>.tif per scene in DIR, plus a "
                   "VRT mosaic, registered in the catalog when DIR is under its data root (else a note says how); "
                   "INPUTs are folders (FLAIR layout), globs, files, catalog IDs or `catalog:` (every image of the "
                   "catalog)")
    shared.add_catalog_arg(p, "catalog for IDs and for registering the mosaic (default: $FLAIR_VIZ_CATALOG "
                           "or the demo catalog)")
    p.add_argument("--domain", help="only scenes of this domain (e.g. D004_2021)")
    p.add_argument("--zone", help="only scenes of this zone (e.g. Z6_NU)")
    p.add_argument("--with-proba", action="store_true", help="also write PROBA_<scene>.tif (19 bands, 0..255)")
    p.add_argument("--block-px", type=int, default=DEFAULT_BLOCK_PX,
                   help=f"split scenes wider or taller than this into blocks of windows, one task each "
                        f"(default {DEFAULT_BLOCK_PX}; 0: one task per scene)")
    p.add_argument("--no-register", action="store_true", help="do not register the mosaic in the catalog")
    p.add_argument("--outside-root", action="store_true",
                   help="register the mosaic even though DIR is outside the catalog's data root")
    shared.add_cluster_args(p)


def cmd_predict_many(args: argparse.Namespace) -> int:
    """``flair-viz predict --model M --out DIR [--workers N | --scheduler ADDR] INPUT...``."""
    if not args.out:
        raise InvalidInput("Several inputs or --workers/--scheduler need --out DIR",
                           "add --out DIR for one COG per scene, or give exactly INPUT.tif OUTPUT.tif")
    if args.proba:
        raise InvalidInput("--proba names one file, so it only works with a single scene",
                           "use --with-proba to write PROBA_<scene>.tif for every scene")
    from flair_viz.predict import batch  # Dask and torch: imported only for batch runs

    card = cards.get_card(args.model)
    cat_file = shared.catalog_file(args)
    catalog = Catalog.load(cat_file) if cat_file.exists() else None
    found = scenes.expand(args.inputs, catalog, domain=args.domain, zone=args.zone)
    if args.bands:
        bands = tuple(b.strip() for b in args.bands.split(","))
        found = [replace(s, bands=bands) for s in found]
    with atomic.sigterm_cleanup(), shared.client(args) as client:
        res = batch.batch_predict(found, card, args.out, client, proba=args.with_proba, batch_size=args.batch_size,
                                  device=args.device, engine=args.engine, retries=args.retries, progress=not args.quiet,
                                  catalog_file=None if args.no_register else cat_file,
                                  outside_root=args.outside_root, block_px=args.block_px)
    note = " (DEMO model: not for evaluation)" if card.demo else ""
    print(f"{len(found)} scene(s) with {card.id}{note}: {len(res.computed)} predicted, {len(res.skipped)} already "
          f"done, in {Path(args.out).resolve()}")
    if res.mosaic:
        print(f"mosaic {res.mosaic}" + (f", registered as {res.catalog_id} in {cat_file}" if res.catalog_id else ""))
    if res.not_registered:  # the outputs are written: a note, not an error
        print(f"note: {res.not_registered.problem}\nto register it: {res.not_registered.fix}", file=sys.stderr)
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list the model cards in models/ and $FLAIR_VIZ_MODELS")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser("list", help="list valid model cards (and report invalid ones)")
    ml.set_defaults(func=cmd_models_list)

    p = sub.add_parser("predict", help="predict a class COG from an aerial GeoTIFF (IGN sliding window)")
    p.add_argument("--model", required=True, help="model ID (see `flair-viz models list`) or path to a .toml card")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="INPUT OUTPUT.tif for one scene (INPUT: an image file or "
                   "a catalog ID: a patch, a zone mosaic, a [[stack]]); with --out DIR, any number of folders, globs, "
                   "files or catalog IDs")
    p.add_argument("--proba", metavar="PROBA.tif", help="also write per-class probabilities (19 bands, 0..255)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda, then mps, then cpu)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (halved on GPU OOM)")
    p.add_argument("--engine", choices=(engines.AUTO, *engines.ENGINES), default=None,
                   help="inference engine (default: $FLAIR_VIZ_ENGINE or auto: torch on a GPU; on a CPU the fastest "
                        "of openvino-bf16, onnx-int8, openvino, onnx that keeps torch's classes: a reduced-precision "
                        "engine only when its measured agreement with torch is >= 98%%)")
    p.add_argument("--bands", help="the input's band names in order when not the FLAIR layout, e.g. NIR,R,G")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_predict_args(p)
    p.set_defaults(func=cmd_predict)
