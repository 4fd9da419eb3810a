"""Rank scored cells: weights, rare classes, the combined score, spacing, and what an export holds.

Cheap (no probabilities, no torch), so the Annotate page re-ranks on every slider move from cells the
tile server scored once.

``rare``
    share of pixels predicted as a *rare* class. A class is rare when its share of all predicted
    pixels in the ranked set is below ``rare_below`` (default 2 %), or in the ``class_frequencies``
    given (e.g. FLAIR-1 training frequencies). Decided here because it depends on every scene ranked.
The combined score
    each component is min-max normalised over the ranked cells (a constant or absent component
    becomes 0), then ``score = Σ w_c · norm_c / Σ w_c`` with the user's non-negative weights, so the
    score stays in [0, 1] whatever the weights. A component that is missing for a cell (no ground
    truth, no second model) counts as 0 there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from flair_viz.annotate.scoring import COMPONENTS, COUNT_COLS
from flair_viz.core import classes
from flair_viz.core.errors import AlignmentError, InvalidInput

DEFAULT_WEIGHTS: dict[str, float] = {c: 1.0 for c in COMPONENTS}
RARE_BELOW = 0.02


def parse_weights(text: str | None) -> dict[str, float]:
    """``"entropy=1,gt=2"`` -> weights; components not named keep their default weight of 1."""
    weights = dict(DEFAULT_WEIGHTS)
    if not text:
        return weights
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in COMPONENTS:
            raise InvalidInput(f"Bad weight {part!r}", f"write NAME=NUMBER with NAME in {', '.join(COMPONENTS)}, "
                                                       "e.g. --weights entropy=1,gt=2,rare=0.5")
        try:
            weights[key] = float(val)
        except ValueError:
            raise InvalidInput(f"Weight {key}={val!r} is not a number", "use a number ≥ 0, e.g. gt=2") from None
    return check_weights(weights)


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights must be known, finite, ≥ 0 and not all 0, or the ranking would be meaningless."""
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise InvalidInput(f"Unknown score component(s): {', '.join(sorted(unknown))}",
                           f"use {', '.join(COMPONENTS)}")
    w = {c: float(weights.get(c, 0.0)) for c in COMPONENTS}
    if any(not math.isfinite(v) or v < 0 for v in w.values()):
        raise InvalidInput("Weights must be finite numbers ≥ 0", "set a negative weight to 0 instead")
    if sum(w.values()) <= 0:
        raise InvalidInput("All weights are 0, so nothing can be ranked", "give at least one component a weight > 0")
    return w


def rare_classes(counts: np.ndarray, rare_below: float = RARE_BELOW,
                 class_frequencies: Mapping[int, float] | None = None) -> list[int]:
    """FLAIR-1 values whose frequency is below ``rare_below`` (from ``class_frequencies`` or the counts)."""
    if class_frequencies is not None:
        total = sum(class_frequencies.values()) or 1.0
        return sorted(v for v in classes.BY_VALUE if class_frequencies.get(v, 0.0) / total < rare_below)
    freq = counts / max(counts.sum(), 1)
    return [v for v, f in zip(classes.BY_VALUE, freq) if f < rare_below]


def minmax(values: pd.Series) -> pd.Series:
    """Min-max normalisation; a constant or all-missing component gives 0 (it ranks nothing)."""
    v = values.astype(float)
    lo, hi = v.min(skipna=True), v.max(skipna=True)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 0:
        return pd.Series(0.0, index=v.index)
    return ((v - lo) / (hi - lo)).fillna(0.0)


def combine(cells: gpd.GeoDataFrame, weights: Mapping[str, float] | None = None, *, rare_below: float = RARE_BELOW,
            class_frequencies: Mapping[int, float] | None = None) -> gpd.GeoDataFrame:
    """Add ``rare``, the normalised ``n_<component>`` columns and ``score``, sorted best first.

    Cells without a valid pixel are dropped: there is nothing to annotate there.
    """
    w = check_weights(weights if weights is not None else DEFAULT_WEIGHTS)
    df = cells[cells["valid_px"] > 0].copy()
    counts = df[list(COUNT_COLS)].to_numpy(dtype=float)
    rare = rare_classes(counts.sum(axis=0), rare_below, class_frequencies)
    rare_idx = [v - 1 for v in rare]
    df["rare"] = counts[:, rare_idx].sum(axis=1) / df["valid_px"].to_numpy() if rare_idx else 0.0
    total = sum(w.values())
    score = pd.Series(0.0, index=df.index)
    for c in COMPONENTS:
        df[f"n_{c}"] = minmax(df[c])
        score += w[c] * df[f"n_{c}"]
    df["score"] = score / total
    df.attrs["rare_classes"] = rare
    return df.sort_values(["score", "dataset", "row", "col"], ascending=[False, True, True, True], kind="stable")


def pick(ranked: gpd.GeoDataFrame, top: int | None = None, spacing_m: float = 0.0) -> gpd.GeoDataFrame:
    """The best ``top`` cells, greedily skipping any cell whose centre is within ``spacing_m`` of one already picked."""
    if top is not None and top < 1:
        raise InvalidInput(f"--top must be ≥ 1, got {top}", "ask for at least one candidate")
    if spacing_m < 0:
        raise InvalidInput(f"Spacing must be ≥ 0 m, got {spacing_m}", "use 0 for no spacing rule")
    if spacing_m == 0:
        return ranked.head(top) if top else ranked
    centres = shapely.centroid(ranked.geometry.to_numpy())
    xy = np.column_stack([shapely.get_x(centres), shapely.get_y(centres)])
    # greedy, vectorised: each pick rules out every cell closer than spacing_m, the next pick is the best left
    alive = np.ones(len(ranked), dtype=bool)
    kept: list[int] = []
    i = 0 if len(ranked) else -1
    while i >= 0 and (not top or len(kept) < top):
        kept.append(i)
        alive &= np.hypot(xy[:, 0] - xy[i, 0], xy[:, 1] - xy[i, 1]) >= spacing_m
        rest = np.flatnonzero(alive[i + 1:])
        i = i + 1 + int(rest[0]) if rest.size else -1
    return ranked.iloc[kept]


def rank(cells: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame], weights: Mapping[str, float] | None = None,
         top: int | None = None, spacing_m: float = 0.0, *, rare_below: float = RARE_BELOW,
         class_frequencies: Mapping[int, float] | None = None) -> gpd.GeoDataFrame:
    """Score cells of one or many scenes together, best first; rarity and normalisation span all of them."""
    return pick(combined(cells, weights, rare_below=rare_below, class_frequencies=class_frequencies), top, spacing_m)


def combined(cells: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame], weights: Mapping[str, float] | None = None, *,
             rare_below: float = RARE_BELOW, class_frequencies: Mapping[int, float] | None = None) -> gpd.GeoDataFrame:
    """Every cell of the scenes with its combined score, best first: what drawn regions average over."""
    return combine(concat_cells(cells), weights, rare_below=rare_below, class_frequencies=class_frequencies)


def concat_cells(cells: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Join the cells of several scenes; they must share a CRS, or distances and maps would be wrong."""
    if isinstance(cells, gpd.GeoDataFrame):
        return cells
    frames = list(cells)
    if not frames:
        raise InvalidInput("No scene to rank", "give at least one dataset")
    crss = {str(f.crs) for f in frames}
    if len(crss) > 1:
        raise AlignmentError(f"The scenes use different CRSs ({', '.join(sorted(crss))})",
                             "reproject them to EPSG:2154 first")
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=frames[0].crs)


def candidate_table(ranked: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """What a candidate export holds: IDs, components, score and the cell geometry (no pixel counts)."""
    keep = ["cell_id", "dataset", "row", "col", "cell_m", "valid_px", *COMPONENTS, "score", "geometry"]
    out = ranked[keep].rename(columns={"cell_id": "id"}).reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


def summarise_region(geom: shapely.Geometry, scored: gpd.GeoDataFrame) -> dict[str, float]:
    """Components and score of a drawn region: the area-weighted mean over the scored cells it overlaps.

    ``scored`` is the output of :func:`combine` (all cells, not only the top N), so a drawn region is
    exported with numbers comparable to the candidates'. Outside every scored cell, all are NaN.
    """
    cols = [*COMPONENTS, "score"]
    hits = scored[scored.intersects(geom)]
    areas = hits.intersection(geom).area.to_numpy() if len(hits) else np.zeros(0)
    out: dict[str, float] = {}
    for c in cols:
        if c not in hits:
            out[c] = float("nan")
            continue
        v = hits[c].to_numpy(dtype=float)
        ok = np.isfinite(v) & (areas > 0)
        out[c] = float(np.average(v[ok], weights=areas[ok])) if ok.any() else float("nan")
    return out
