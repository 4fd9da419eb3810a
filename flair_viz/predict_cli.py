"""``flair-viz models list`` and ``flair-viz predict``: the model registry and batch prediction from a shell."""

from __future__ import annotations

import argparse
import sys

from flair_viz import batch_cli, models


def cmd_models_list(args: argparse.Namespace) -> int:
    cards, problems = models.scan_cards()
    for card in list(cards):  # the slow check parse_card leaves out: is the arch a real smp model?
        try:
            models.check_arch(card)
        except models.ModelError as exc:
            cards.remove(card)
            problems.append(exc.message)
    rows = [(c.id, "DEMO" if c.demo else "", f"{c.arch}/{c.encoder}", ",".join(c.in_bands),
             f"{c.classes} {c.nomenclature}", c.licence, c.title) for c in cards]
    header = ("id", "demo", "architecture", "bands", "classes", "licence", "title")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    for c in cards:
        if c.demo:
            print(f"\n{c.id} is a DEMO model: {c.description.splitlines()[0] if c.description else 'not for evaluation'}")
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    print(f"\n{len(cards)} model(s) in {', '.join(str(d) for d in models.model_dirs())}")
    return 2 if problems else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from flair_viz import inference

    if args.out or batch_cli.wants_cluster(args) or len(args.inputs) != 2:
        return batch_cli.cmd_predict_many(args)  # many scenes on Dask (flair_viz.batch)
    args.input, args.output = args.inputs
    card = models.get_card(args.model)
    bands = tuple(b.strip() for b in args.bands.split(",")) if args.bands else None
    out = inference.predict_file(card, args.input, args.output, proba_path=args.proba, device=args.device,
                                 batch_size=args.batch_size, progress=not args.quiet, bands=bands)
    note = " (DEMO model: not for evaluation)" if card.demo else ""
    print(f"wrote {out}" + (f" and {args.proba}" if args.proba else "") +
          f" with {card.id} on {models.device_name(args.device)}{note}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list the model cards in models/ and $FLAIR_VIZ_MODELS")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser("list", help="list valid model cards (and report invalid ones)")
    ml.set_defaults(func=cmd_models_list)

    p = sub.add_parser("predict", help="predict a class COG from an aerial GeoTIFF (IGN sliding window)")
    p.add_argument("--model", required=True, help="model ID (see `flair-viz models list`) or path to a .toml card")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="INPUT.tif OUTPUT.tif for one scene; with --out DIR, "
                   "any number of folders, globs, files or catalog IDs")
    p.add_argument("--proba", metavar="PROBA.tif", help="also write per-class probabilities (19 bands, 0..255)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda, then mps, then cpu)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (halved on GPU OOM)")
    p.add_argument("--bands", help="the input's band names in order when not the FLAIR layout, e.g. NIR,R,G")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    batch_cli.add_predict_args(p)
    p.set_defaults(func=cmd_predict)
