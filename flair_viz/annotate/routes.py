"""``GET /datasets/{id}/candidates/{model_id}``: a scene's scored grid cells, from the tile server.

The tile server already holds the models (and torch); the Annotate page asks it for the per-cell
components instead of running inference inside Streamlit, then re-ranks them itself with
:func:`flair_viz.annotate.ranking.combine` and :func:`~flair_viz.annotate.ranking.pick` on every
slider move (cheap, no torch).

The answer is a GeoJSON FeatureCollection (:func:`flair_viz.annotate.scoring.cells_geojson`): one
feature per grid cell, the raw components and per-class pixel counts as properties, and the cell
polygon with coordinates in **EPSG:2154** (named in the legacy ``crs`` member), because spacing and
snapping to the FLAIR grid work in metres. Scored cells are kept in memory per scene, model(s), grid
and input file stamps, so a page rerun or a second browser tab does not predict again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from attrs import define
from fastapi import Depends, Path, Query, Request
from titiler.core.factory import FactoryExtension, TilerFactory

from flair_viz.annotate.grid import SUB_GRIDS_PX, cell_m_for
from flair_viz.annotate.scenes import score_scene
from flair_viz.annotate.scoring import cells_geojson
from flair_viz.core.catalog import Catalog, Dataset
from flair_viz.core.lru import LRU
from flair_viz.core.stamps import file_stamp
from flair_viz.core.tiling import abandon_if_gone
from flair_viz.predict.cards import ID_RE as MODEL_ID_RE
from flair_viz.predict.cards import get_card

_cache = LRU(64)  # GeoJSON of scored cells per _key
_scoring = threading.Lock()  # one scoring at a time: each runs a model over a whole scene


def _key(catalog: Catalog, ds: Dataset, model_ids: tuple[str, ...], cell_px: int, use_truth: bool) -> tuple:
    """What the cells depend on: the image, its ground truth, the model cards and checkpoints, the grid."""
    truth = catalog.truth_of(ds) if use_truth else None
    files = [ds.path, *([truth.path] if truth else [])]
    for model_id in model_ids:
        card = get_card(model_id)  # an unknown model is a 404 before anything runs
        files.append(card.card_path)
        if card.checkpoint:
            files.append(card.checkpoint)
    stamps = tuple(tuple(file_stamp(f).values()) for f in files if f.exists())
    return ds.id, model_ids, cell_px, use_truth, stamps


def candidate_cells(catalog: Catalog, ds: Dataset, model_id: str, model_b: str | None = None,
                    cell_px: int = 512, use_truth: bool = True, still_wanted: Callable[[], None] | None = None) -> dict:
    """The scored cells of a scene as GeoJSON, computed once per inputs (see the module docstring).

    ``still_wanted`` raises when the asker has gone; it is called after the wait for the one scoring slot,
    just before a scene is predicted (the route drops the work of a page that has been left)."""
    cell_m = cell_m_for(cell_px)
    key = _key(catalog, ds, (model_id, *([model_b] if model_b else [])), cell_px, use_truth)
    with _scoring:
        doc = _cache.get(key)
        if doc is None:
            if still_wanted is not None:
                still_wanted()
            doc = cells_geojson(score_scene(catalog, ds.id, model_id, model_b, cell_m=cell_m, use_truth=use_truth))
            _cache.put(key, doc)
        return doc


def clear_cache() -> None:
    _cache.clear()


@define
class CandidatesExtension(FactoryExtension):
    """``/datasets/{id}/candidates/{model_id}?cell_px=512&model_b=...`` on the dataset factory."""

    def register(self, factory: TilerFactory) -> None:
        get_dataset, get_catalog = factory.catalog_dataset_dependency, factory.catalog_dependency

        @factory.router.get("/candidates/{model_id}", tags=["annotate"],
                            responses={200: {"description": "scored grid cells, GeoJSON in EPSG:2154"}})
        def candidates(*,
            ds=Depends(get_dataset),  # injected: not an annotation, which would be looked up in globals
            catalog=Depends(get_catalog),
            model_id: Annotated[str, Path(description="model card ID (GET /models)", pattern=MODEL_ID_RE.pattern)],
            model_b: Annotated[str | None, Query(description="second model: adds the disagreement component",
                                                 pattern=MODEL_ID_RE.pattern)] = None,
            cell_px: Annotated[int, Query(description=f"cell size in 0.2 m pixels, one of {SUB_GRIDS_PX}")] = 512,
            use_truth: Annotated[bool, Query(description="score errors against the ground truth, if any")] = True,
            request: Request,
        ) -> dict:
            return candidate_cells(catalog, ds, model_id, model_b, cell_px, use_truth,
                                   still_wanted=lambda: abandon_if_gone(request))
