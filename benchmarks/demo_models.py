"""The two shipped demo models side by side in one run: forward time per 512² patch, and scores on Z6_NU.

    .venv/bin/python benchmarks/demo_models.py [--repeats 5] [--engines torch auto]

For each engine, both models run the same real, normalised 512 px windows (patches of the demo zone Z6_NU,
batch 1), interleaved round by round so drift on a shared machine hits both alike; the median time per patch
and the ratio of the second model to the first (the default) are printed (goal: at most 3x, so the live
view stays fast). The scores are read from each card's [scores] (written by scripts/make_demo_predictions.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def windows(n: int):
    """The first n image patches of the demo zone (uint8, 5 bands), as the live path reads them."""
    from flair_viz.core import raster

    paths = sorted((REPO / "data/demo/flair1/D034_2021/Z6_NU/img").glob("IMG_*.tif"))[:n]
    return [raster.read(p) for p in paths]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="rounds over the patches (median over all)")
    ap.add_argument("--patches", type=int, default=5)
    ap.add_argument("--engines", nargs="+", default=["torch", "auto"])
    args = ap.parse_args()


    from flair_viz.predict import bands, cards, inference, models

    ids = [c.id for c in cards.list_cards() if c.demo and c.card_path.parent == (REPO / "models").resolve()]
    if len(ids) < 2:
        raise SystemExit(f"need the two shipped demo models, found {ids}")
    first, second = ids[0], ids[1]  # the default card first
    imgs = windows(args.patches)
    print(f"models: {first} (default), {second}; {len(imgs)} real 512 px patches, batch 1, "
          f"{args.repeats} rounds")
    for engine in args.engines:
        fwd, batch = {}, {}
        for mid in (first, second):
            loaded = models.load_model(mid, "cpu", engine)
            fwd[mid] = inference.Forward(loaded, batch_size=1)
            card = loaded.card
            batch[mid] = [bands.normalise(card, img[None]) for img in imgs]
            fwd[mid](batch[mid][0])  # warm-up (and the engine's first compile)
        times = {first: [], second: []}
        for _ in range(args.repeats):
            for mid in (first, second):
                for x in batch[mid]:
                    t = time.perf_counter()
                    fwd[mid](x)
                    times[mid].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        print(f"engine {engine} ({fwd[first].loaded.engine} / {fwd[second].loaded.engine}): "
              f"{first} {med[first] * 1000:.0f} ms, {second} {med[second] * 1000:.0f} ms per patch, "
              f"ratio {med[second] / med[first]:.2f}x")
    for mid in (first, second):
        sc = cards.get_card(mid).scores
        if sc:
            print(f"{mid}: OA {sc['oa']:.3f}, mIoU {sc['miou']:.3f} on {sc['zone']} ({sc['patches']} unseen "
                  f"patches, {sc['protocol']} protocol)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
