"""Predict the demo FLAIR patches with the demo model and register the results in the demo catalog.

The metrics and change pages need predictions that exist before anyone opens the app; these are
them. The DEMO model was trained on zones Z4_UU and Z5_UA of Hérault only (its card says so), so every
patch predicted here is unseen: the 25 patches of zone Z6_NU (data/demo/flair1/) and the 4 FLAIR-2 patches
of other départements. Their scores are honest, and they are still the scores of a demo model.

    .venv/bin/python scripts/make_demo_predictions.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flair_viz.core import atomic, config  # noqa: E402
from flair_viz.core.catalog import Catalog  # noqa: E402
from flair_viz.predict import cards, inference, models  # noqa: E402

BEGIN = "# --- BEGIN demo predictions (written by scripts/make_demo_predictions.py; do not edit by hand) ---"
END = "# --- END demo predictions ---"


def prediction_id(patch: str, model_id: str) -> str:
    return f"PRED_{patch}_{model_id}"


def update_catalog_text(text: str, entries: list[dict]) -> str:
    """Replace (or append) only this script's block, leaving every other entry of the shared file untouched."""
    block = BEGIN + "\n" + "\n".join(tomli_w.dumps({"dataset": [e]}) for e in entries).rstrip() + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + block + (("\n" + tail) if tail else "")
    return text.rstrip("\n") + "\n\n" + block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo-unet-r18")
    ap.add_argument("--catalog", default=str(config.DEMO_CATALOG))
    args = ap.parse_args()

    card = cards.get_card(args.model)
    loaded = models.load_model(card, "cpu")  # CPU: the committed outputs must not depend on the machine's GPU
    cat_path = Path(args.catalog)
    cat = Catalog.load(cat_path)
    out_dir = cat.root / "predictions"
    entries = []
    trained_on = {str(z) for z in card.training.get("train_zones", [])}
    for img in sorted(cat.by_role("image"), key=lambda d: d.id):
        if not img.patch or cat.truth_of(img) is None:
            continue  # only FLAIR patches with a ground truth: that is what predictions are compared with
        if img.zone in trained_on:  # zone names repeat across domains: refusing a namesake is the safe side
            raise SystemExit(f"{img.id} is in zone {img.zone}, a training zone of {card.id}: its score would "
                             "measure memorisation; remove it from the demo or retrain without that zone")
        out = out_dir / f"PRED_{img.patch}_demo.tif"
        inference.predict_file(loaded, img.path, out, progress=False, bands=img.bands or None)
        entry = {"id": prediction_id(img.patch, card.id), "path": str(out.relative_to(cat.root)),
                 "role": "prediction", "vintage": img.vintage, "domain": img.domain, "zone": img.zone,
                 "patch": img.patch,
                 "title": f"Demo model prediction {img.patch} ({card.id}; DEMO model, patch unseen in training)",
                 "extra": {"model": card.id, "model_sha256": loaded.checksum, "demo_model": "true",
                           "made_by": "scripts/make_demo_predictions.py", "image": img.id,
                           "model_train_zones": " ".join(sorted(trained_on))}}
        entries.append({k: v for k, v in entry.items() if v is not None})
        print(f"{img.id} -> {out.relative_to(REPO)}")
    atomic.write_text(cat_path, update_catalog_text(cat_path.read_text(encoding="utf-8"), entries))
    Catalog.load(cat_path)  # the edited catalog must still load
    print(f"registered {len(entries)} predictions in {cat_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
