"""What the Change page offers to compare: registered change pairs and vintages of the same patch."""

from __future__ import annotations

from dataclasses import dataclass

from flair_viz.core.catalog import Catalog, Dataset


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
        return f"{'SIMULATED · ' if self.simulated else ''}{place} · {when} · {self.before.id} → {self.after.id}"


def list_pairs(catalog: Catalog) -> list[Pair]:
    """Real pairs before SIMULATED ones; within each, registered change pairs first (``role = "change"`` with
    ``extra.before``/``extra.after``), then every two class rasters of the same patch with different
    vintages, earlier first."""
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
                if a.vintage != b.vintage and (b.id, a.id) not in seen:
                    pairs.append(Pair(b, a))
                    seen.add((b.id, a.id))
    return sorted(pairs, key=lambda p: p.simulated)  # stable: the order above within real and simulated


def class_rasters(catalog: Catalog) -> list[Dataset]:
    """Datasets a change can be computed on (ground truths and predictions)."""
    return [d for d in catalog if d.role in ("truth", "prediction")]
