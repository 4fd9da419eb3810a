"""Predict the demo FLAIR patches with every shipped demo model, register the results, and score each model.

The metrics, change and annotation pages need predictions that exist before anyone opens the app; these
are them. Both shipped DEMO models were trained on other zones of Hérault only (their cards say which), so
every patch predicted here is unseen: the 25 patches of zone Z6_NU (data/demo/flair1/) and the 4 FLAIR-2
patches of other départements. With two models, Model A vs B, disagreement ranking and the model comparison
all work out of the box.

Each card then gets a ``[scores]`` table: OA and mIoU (FLAIR-1 protocol) on zone D034_2021/Z6_NU, counted by
the same library code the Metrics page uses, so the Home story can quote them without scoring anything.

    .venv/bin/python scripts/make_demo_predictions.py [--model ID ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomlkit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flair_viz import metrics  # noqa: E402
from flair_viz.core import atomic, catalog_file, config  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402
from flair_viz.predict import cards, inference, models  # noqa: E402

SCRIPT = "scripts/make_demo_predictions.py"
SCORED_ZONE = ("D034_2021", "Z6_NU")  # the demo zone: never a training zone of a shipped model


def prediction_id(patch: str, model_id: str) -> str:
    return f"PRED_{patch}_{model_id}"


def shipped_demo_models() -> list[str]:
    """The demo cards in the repository's models/ folder, default first (the order every page offers)."""
    folder = config.MODELS_DIR.resolve()
    return [c.id for c in cards.list_cards() if c.demo and c.card_path.parent == folder]


def predict_all(cat: Catalog, card: cards.ModelCard) -> list[dict]:
    """One prediction COG per FLAIR patch that has a ground truth; refuses a patch of a training zone."""
    loaded = models.load_model(card, "cpu")  # CPU: the committed outputs must not depend on the machine's GPU
    trained_on = {str(z) for z in card.training.get("train_zones", [])}
    entries = []
    for img in sorted(cat.by_role("image"), key=lambda d: d.id):
        if not img.patch or cat.truth_of(img) is None:
            continue  # only FLAIR patches with a ground truth: that is what predictions are compared with
        if img.zone in trained_on:  # zone names repeat across domains: refusing a namesake is the safe side
            raise SystemExit(f"{img.id} is in zone {img.zone}, a training zone of {card.id}: its score would "
                             "measure memorisation; remove it from the demo or retrain without that zone")
        out = cat.root / "predictions" / f"PRED_{img.patch}_{card.id}.tif"
        inference.predict_file(loaded, img.path, out, progress=False, bands=img.bands or None)
        entry = {"id": prediction_id(img.patch, card.id), "path": str(out.relative_to(cat.root)),
                 "role": "prediction", "vintage": img.vintage, "domain": img.domain, "zone": img.zone,
                 "patch": img.patch,
                 "title": f"Prediction of patch {img.patch} by {card.title or card.id} (DEMO model, unseen patch)",
                 "extra": {"model": card.id, "model_sha256": loaded.checksum, "demo_model": "true",
                           "made_by": SCRIPT, "image": img.id, "model_train_zones": " ".join(sorted(trained_on))}}
        entries.append({k: v for k, v in entry.items() if v is not None})
        print(f"{img.id} -> {out.relative_to(REPO)}")
    return entries


def score_card(cat: Catalog, card: cards.ModelCard) -> dict:
    """The card's own scores on the demo zone, from its registered predictions (the Metrics page's numbers)."""
    pairs = [p for p in metrics.catalog_pairs(cat) if p.model == card.id and (p.domain, p.zone) == SCORED_ZONE]
    if not pairs:
        raise SystemExit(f"no prediction of {card.id} on zone {'/'.join(SCORED_ZONE)} is registered")
    sc = metrics.scores(metrics.evaluate(pairs).table.total(), "flair1")
    return {"zone": "/".join(SCORED_ZONE), "patches": len(pairs), "protocol": "flair1",
            "oa": float(sc.oa), "miou": float(sc.miou),
            "note": "unseen zone; counted by scripts/make_demo_predictions.py with flair_viz.metrics"}


def write_scores(card: cards.ModelCard, scores: dict) -> None:
    """Replace the card's [scores] table, keeping the rest of the card as written by the training script."""
    doc = tomlkit.parse(card.card_path.read_text(encoding="utf-8"))
    table = tomlkit.table()
    for k, v in scores.items():
        table[k] = v
    doc["scores"] = table
    atomic.write_text(card.card_path, tomlkit.dumps(doc))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", help="model IDs (default: every demo model in models/)")
    ap.add_argument("--catalog", default=str(config.DEMO_CATALOG))
    args = ap.parse_args()

    cat_path = Path(args.catalog)
    for model_id in args.model or shipped_demo_models():
        card = cards.get_card(model_id)
        entries = predict_all(Catalog.load(cat_path), card)
        # a rerun replaces this script's earlier entries of the same model, and nothing else
        catalog_file.upsert(cat_path, "dataset", entries, drop=lambda e, m=card.id: (
            e.get("extra", {}).get("made_by") == SCRIPT and e.get("extra", {}).get("model") == m))
        print(f"registered {len(entries)} predictions of {card.id} in {cat_path}")
        scores = score_card(Catalog.load(cat_path), card)
        write_scores(card, scores)
        print(f"{card.id} on {scores['zone']}: OA {scores['oa']:.3f}, mIoU {scores['miou']:.3f} (FLAIR-1 protocol)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
