"""What the Change page offers to compare: registered change pairs and vintages of the same patch.

Only like-with-like pairs are offered: two ground truths, or two predictions of one model. A pair of a
prediction and a ground truth (or of two models' predictions) counts every pixel where the model is
wrong, or where the two models disagree, as land that changed, so its hectares mix model error with
change on the ground. Such a pair can still be chosen by hand ("Choose two rasters…"), and
:func:`mixed_reason` says what it mixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from flair_viz.core.catalog import Catalog, Dataset

LIKE_WITH_LIKE_HELP = ("Pairs of two ground truths, or of two predictions by the same model. A prediction "
                       "compared with a ground truth (or with another model's prediction) counts the model's "
                       "errors as change, so those pairs are left out; pick them with \"Choose two rasters…\" "
                       "if you need them.")


@dataclass(frozen=True)
class Pair:
    """Two class rasters of the same place at two dates, as the Change page offers them."""

    before: Dataset
    after: Dataset
    change: Dataset | None = None  # a registered change COG of this pair, if any

    @property
    def simulated(self) -> bool:
        return self.before.simulated or self.after.simulated or bool(self.change and self.change.simulated)

    @property
    def label(self) -> str:
        when = f"{self.before.vintage or '?'} → {self.after.vintage or '?'}"
        place = " ".join(x for x in (self.before.domain, self.before.zone, self.before.patch) if x)
        # dates and kind first: a sidebar cuts long labels, and the place is the same for most pairs of a patch
        return f"{'SIMULATED · ' if self.simulated else ''}{when} · {kinds(self.before, self.after)} · {place}"


def model_of(ds: Dataset) -> str | None:
    """The model a prediction was made by (``extra.model``, as ``predict --out`` registers it), else None."""
    return ds.extra.get("model") or None if ds.role == "prediction" else None


def kinds(before: Dataset, after: Dataset) -> str:
    """What a pair compares, in words: "ground truth", "predictions of M", or both kinds for a mixed pair."""
    if mixed_reason(before, after) is None:
        return "ground truth" if before.role == "truth" else f"predictions of {model_of(before)}"
    return " → ".join(f"prediction of {model_of(d) or 'an unnamed model'}" if d.role == "prediction" else
                      ("ground truth" if d.role == "truth" else d.role) for d in (before, after))


def mixed_reason(before: Dataset, after: Dataset) -> str | None:
    """Why the change of this pair is not land change alone, or None for a like-with-like pair.

    Two predictions count as like-with-like only when both name the same model: predictions with no
    model recorded could come from two models, whose disagreement would read as change.
    """
    roles = {before.role, after.role}
    if roles == {"truth"}:
        return None
    if roles == {"prediction"}:
        mb, ma = model_of(before), model_of(after)
        if mb and mb == ma:
            return None
        if mb and ma:
            return (f"the two dates were predicted by two models ({mb} and {ma}), so where the models disagree "
                    "counts as change")
        return ("at least one prediction does not record its model (extra.model), so the two dates may come from "
                "two models whose disagreement counts as change")
    if roles == {"truth", "prediction"}:
        return ("it compares a model's prediction with a ground truth, so every pixel the model got wrong counts "
                "as change")
    return f"it compares a {before.role} raster with a {after.role} raster"


def list_pairs(catalog: Catalog) -> list[Pair]:
    """Real pairs before SIMULATED ones; within each, registered change pairs first (``role = "change"`` with
    ``extra.before``/``extra.after``: the user chose them), then every like-with-like pair (:func:`mixed_reason`)
    of class rasters of the same patch with different vintages, earlier first."""
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for ds in catalog.by_role("change"):
        b_id, a_id = ds.extra.get("before"), ds.extra.get("after")
        if b_id in catalog and a_id in catalog and (b_id, a_id) not in seen:
            pairs.append(Pair(catalog.get(b_id), catalog.get(a_id), ds))
            seen.add((b_id, a_id))
    by_patch: dict[str, list[Dataset]] = {}
    for ds in catalog:
        if ds.role in ("truth", "prediction") and ds.patch and ds.vintage:
            by_patch.setdefault(ds.patch, []).append(ds)
    for group in by_patch.values():
        group.sort(key=lambda d: (d.vintage or "", d.id))
        for i, b in enumerate(group):
            for a in group[i + 1:]:
                if a.vintage != b.vintage and (b.id, a.id) not in seen and mixed_reason(b, a) is None:
                    pairs.append(Pair(b, a))
                    seen.add((b.id, a.id))
    return sorted(pairs, key=lambda p: p.simulated)  # stable: the order above within real and simulated


def class_rasters(catalog: Catalog) -> list[Dataset]:
    """Datasets a change can be computed on (ground truths and predictions)."""
    return [d for d in catalog if d.role in ("truth", "prediction")]
