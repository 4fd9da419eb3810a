"""``flair-viz finetune`` learns painted corrections; ``flair-viz corrections`` lists and exports them."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from flair_viz.core import atomic
from flair_viz.core.catalog import Catalog
from flair_viz.core.cliargs import add_catalog_arg, catalog_file
from flair_viz.core.errors import FlairVizError
from flair_viz.correct import export, jobs, store, training


def _terminate(signum, frame) -> None:
    """SIGTERM (the page's Cancel) unwinds like Ctrl-C, so the staging folder is removed."""
    raise KeyboardInterrupt


def cmd_finetune(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _terminate)

    def progress(doc: dict) -> None:
        jobs.write_progress(args.progress, doc)
        if "loss" in doc:
            print(f"epoch {doc['epoch']}/{doc['epochs']} loss {doc['loss']}", flush=True)

    try:
        doc = jobs.finetune_and_compare(args.model, str(args.corrections), args.out, str(catalog_file(args)),
                                        epochs=args.epochs, lr=args.lr, train=args.train, keep=args.keep,
                                        seed=args.seed, device=args.device, evaluate=args.evaluate,
                                        models_dir=args.models_dir, progress=progress)
    except FlairVizError as exc:
        jobs.write_progress(args.progress, {"state": "failed", "problem": exc.problem, "fix": exc.fix})
        raise
    except KeyboardInterrupt:
        jobs.write_progress(args.progress, {"state": "cancelled", "model_id": args.out})
        raise
    print(f"wrote {doc['card_path']} ({doc['pixels']} corrected px in {doc['windows']} window(s), "
          f"{doc['seconds']:.1f} s on {doc['device']})")
    print(f"painted class predicted on {100 * doc['agreement_before']:.1f}% of corrected pixels before, "
          f"{100 * doc['agreement_after']:.1f}% after")
    for r in doc["evaluation"]:
        print(f"  {r['role']:>10} {r['pixels']:<19} OA {r['overall_accuracy']}  mIoU {r['miou']}  "
              f"({r['truth_pixels']} truth px)")
    if args.json:
        print(json.dumps(doc))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    rows = jobs.compare(args.parent, args.model, str(args.corrections), str(catalog_file(args)), args.scope,
                        args.device, args.models_dir)
    if args.json_out:
        atomic.write_text(args.json_out, json.dumps(rows))
    for r in rows:
        print(f"{r['role']:>10} {r['model']} {r['pixels']:<19} OA {r['overall_accuracy']}  mIoU {r['miou']}  "
              f"({r['truth_pixels']} truth px)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cat = Catalog.load(catalog_file(args))
    paths = export.export_masks(store.read_file(args.corrections or store.default_path()), cat, args.out, args.grid)
    for p in paths:
        print(p)
    print(f"wrote {len(paths)} FLAIR mask(s) to {args.out}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    gdf = store.read_file(args.corrections or store.default_path())
    for cols in zip(*(gdf[c] for c in store.COLUMNS)):
        print("\t".join(map(str, cols)))
    print(f"{len(gdf)} correction(s)", file=sys.stderr)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model on corrections painted on the map")
    p.add_argument("--model", required=True, help="parent model ID (`flair-viz models list`)")
    p.add_argument("--corrections", required=True, help="corrections GeoPackage (layer `corrections`)")
    p.add_argument("--out", required=True, help="ID of the new model")
    p.add_argument("--epochs", type=int, default=training.Settings.epochs)
    p.add_argument("--lr", type=float, default=training.Settings.lr)
    p.add_argument("--train", choices=training.TRAIN_PARTS, default=training.Settings.train,
                   help="what is trained: head, decoder (+head, default) or all (the encoder too)")
    p.add_argument("--keep", type=float, default=training.Settings.keep,
                   help="weight of staying close to the parent on uncorrected pixels (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the best available)")
    p.add_argument("--evaluate", choices=("corrected", "all", "none"), default="corrected",
                   help="compare parent and new model on the ground truth of the corrected images (default), "
                        "of every image, or not at all")
    p.add_argument("--models-dir", default=None, help="where the new card goes (default: models/ in the user data folder)")
    p.add_argument("--progress", default=None, help="JSON progress file, rewritten after every epoch")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    add_catalog_arg(p)
    p.set_defaults(func=cmd_finetune)

    c = sub.add_parser("corrections", help="list corrections or export them as FLAIR masks")
    csub = c.add_subparsers(dest="corrections_command", metavar="ACTION", required=True)
    e = csub.add_parser("export", help="rasterise corrections into FLAIR masks (MSK_<id>.tif, 512 px, 0.2 m)")
    e.add_argument("--grid", choices=export.GRIDS, default="flair")
    e.add_argument("--out", required=True, help="folder for the masks")
    e.add_argument("--corrections", default=None, help="corrections GeoPackage (default: the user's)")
    add_catalog_arg(e)
    e.set_defaults(func=cmd_export)
    cp = csub.add_parser("compare", help="parent vs fine-tuned model on ground truth, fine-tuning pixels apart")
    cp.add_argument("--parent", required=True)
    cp.add_argument("--model", required=True, help="the fine-tuned model")
    cp.add_argument("--corrections", required=True, help="the corrections it was fine-tuned on")
    cp.add_argument("--scope", choices=("corrected", "all"), default="corrected")
    cp.add_argument("--device", default=None)
    cp.add_argument("--models-dir", default=None, help="a folder of cards to search too")
    cp.add_argument("--json-out", default=None, help="also write the rows as JSON")
    add_catalog_arg(cp)
    cp.set_defaults(func=cmd_compare)
    ls = csub.add_parser("list", help="list corrections")
    ls.add_argument("--corrections", default=None)
    ls.set_defaults(func=cmd_list)
