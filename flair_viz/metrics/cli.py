"""``flair-viz evaluate``: score predictions against ground truth and keep the per-patch matrices.

The table goes to stdout, or to stderr with ``--json`` so that stdout stays one parseable JSON
document for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from flair_viz.core import cliargs as shared
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput
from flair_viz.metrics.evaluate import EvaluationRun, evaluate
from flair_viz.metrics.pairs import Pair, resolve_pairs
from flair_viz.metrics.scores import PROTOCOLS, Scores, miou_classes, scores, summary
from flair_viz.metrics.store import default_store


def _fmt(x: float) -> str:
    return "   n/a" if np.isnan(x) else f"{x:6.3f}"


def print_table(sc: Scores, run: EvaluationRun, out: TextIO) -> None:
    """Per-class scores, then the headline, with the protocol named so numbers are not misread."""
    width = max(len(n) for n in sc.names)
    k = miou_classes(sc.protocol)
    print(f"{'class'.ljust(width)}     IoU      F1    prec  recall  truth px", file=out)
    for i, name in enumerate(sc.names):
        flag = "" if i < k else "  (not in mIoU)"
        print(f"{name.ljust(width)}  {_fmt(sc.iou[i])}  {_fmt(sc.f1[i])}  {_fmt(sc.precision[i])}  "
              f"{_fmt(sc.recall[i])}  {int(sc.support[i]):>9d}{flag}", file=out)
    proto = "FLAIR-1 protocol (13 classes, mIoU over the first 12)" if sc.protocol == "flair1" else "full 19 classes"
    print(f"\n{proto}: mIoU {_fmt(sc.miou).strip()}  ·  overall accuracy {_fmt(sc.oa).strip()}", file=out)
    if sc.undefined_in_miou:
        print(f"not in mIoU (absent from truth and prediction): {', '.join(sc.undefined_in_miou)}", file=out)
    ignored = int(run.table.meta["ignored"].sum()) if len(run.table) else 0
    print(f"{len(run.table)} pair(s): {run.computed} computed, {run.reused} reused from the store; "
          f"{ignored} pixel(s) ignored (nodata or outside 1..19)", file=out)


def evaluate_many(pairs: list[Pair], store: Path, args: argparse.Namespace) -> EvaluationRun:
    """``flair-viz evaluate ... --workers N | --scheduler ADDR``: the same store, counted on Dask."""
    if getattr(args, "gpu", False):
        raise InvalidInput("--gpu counts in this process; it cannot be combined with --workers/--scheduler",
                           "drop --gpu (per-patch counting is fast on CPU workers) or drop the cluster option")
    from flair_viz.metrics import batch  # Dask: imported only for cluster runs

    with shared.client(args) as client:
        return batch.batch_evaluate(pairs, store, client, retries=args.retries, progress=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    by_path = all(v is not None and Path(v).exists() for v in (args.truth, args.pred))
    catalog = None if by_path else Catalog.load(shared.catalog_file(args))
    out = args.out or default_store()
    pairs = resolve_pairs(args.truth, args.pred, catalog=catalog, model=args.model,
                          pred_nomenclature=args.pred_nomenclature)
    use_torch = False
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise InvalidInput("--gpu was given but torch sees no CUDA device", "drop --gpu to count on the CPU")
        use_torch = True
    if shared.wants_cluster(args):  # many pairs on Dask, same store and reuse rule
        run = evaluate_many(pairs, Path(out), args)
    else:
        run = evaluate(pairs, store=out, progress=True, use_torch=use_torch)
    sc = scores(run.table.total(), args.protocol)
    print_table(sc, run, sys.stderr if args.json else sys.stdout)
    if args.json:
        doc = summary(sc) | {"pairs": len(run.table), "computed": run.computed, "reused": run.reused,
                             "ignored_pixels": int(run.table.meta["ignored"].sum()), "store": str(out)}
        json.dump(doc, sys.stdout, indent=1)
        print()
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="confusion matrices and FLAIR-protocol scores of predictions vs ground truth",
                       description="T and P are two folders (MSK_<id>.tif vs PRED_<id>.tif, any subfolder), two files "
                                   "or two catalog IDs; omit both to score every prediction in the catalog that has "
                                   "a ground truth of the same patch. Pairs already in --out with the same inputs "
                                   "are not recomputed.")
    p.add_argument("--truth", metavar="T", help="ground truth: folder, file or catalog ID")
    p.add_argument("--pred", metavar="P", help="prediction: folder, file or catalog ID")
    p.add_argument("--out", type=Path, default=None, help="Parquet store of per-patch matrices "
                   "(default: $FLAIR_VIZ_METRICS or <user data>/metrics.parquet)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="flair1",
                   help="flair1: 13 classes (14..19 merged into other), mIoU over 12; full: all 19 (default flair1)")
    p.add_argument("--json", action="store_true", help="write a JSON summary to stdout (the table goes to stderr)")
    p.add_argument("--model", help="model name to record (default: from the catalog, or the prediction folder name)")
    p.add_argument("--pred-nomenclature", choices=("flair1", "flairhub"), default="flair1",
                   help="class values of prediction files given by path (catalog entries declare their own)")
    shared.add_catalog_arg(p, help="catalog TOML for IDs and catalog pairs (default: $FLAIR_VIZ_CATALOG or the demo)")
    p.add_argument("--gpu", action="store_true", help="count with torch on the GPU (whole scenes; patches gain nothing)")
    shared.add_cluster_args(p)
    p.set_defaults(func=cmd_evaluate)
