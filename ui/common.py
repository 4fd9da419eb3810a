"""What every page needs: the catalog, a running tile server, error display, maps and the footer.

Heavy objects are created once per process with ``st.cache_resource`` and nothing heavy runs at
import time, so the first page paints fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote, urlencode

import geopandas as gpd
import streamlit as st
from streamlit_folium import st_folium

from flair_viz.annotate.scoring import cells_from_geojson
from flair_viz.core import config
from flair_viz.core.catalog import Catalog, CatalogStore
from flair_viz.core.errors import FlairVizError
from flair_viz.web.client import ensure_running, fetch_json

T = TypeVar("T")

ATTRIBUTION = ("Imagery and labels: **IGN – FLAIR dataset** and **IGN – BD ORTHO**, "
               "[Licence Ouverte / Etalab 2.0](https://www.etalab.gouv.fr/licence-ouverte-open-licence/). "
               "See `data/demo/README.md` for provenance.")


def setup(title: str, icon: str | None = None) -> None:
    """Page title and wide layout. ``icon`` is ignored: Streamlit fetches emoji and Material favicons
    from the internet, and the app must stay offline, so every page keeps the bundled favicon."""
    st.set_page_config(page_title=f"FLAIR Viz · {title}", layout="wide")
    _catalog_problems()


def _catalog_problems() -> None:
    """Name, on every page, the files a ``[[scan]]`` left out of the catalog (broken, duplicate, misaligned),
    so an analyst who misses a patch knows why; the rest of the catalog works."""
    try:
        problems = catalog().problems
    except FlairVizError:
        return  # the page itself shows a catalog that does not load, with its fix
    if problems:
        with st.sidebar.expander(f"Catalog: {len(problems)} file(s) left out", expanded=False):
            for p in problems[:50]:
                st.warning(p)
            if len(problems) > 50:
                st.caption(f"... and {len(problems) - 50} more: run `flair-viz catalog validate`")


@st.cache_resource
def _catalog_store(path: str) -> CatalogStore:
    return CatalogStore(path)


def catalog() -> Catalog:
    """The catalog, reloaded when its file changes (batch jobs register outputs into it)."""
    return _catalog_store(str(config.catalog_path())).get()


def catalog_version() -> float:
    """Changes when the catalog file changes; a cache key for results derived from the catalog."""
    src = config.catalog_path()
    return src.stat().st_mtime if src.exists() else 0.0


@st.cache_resource(show_spinner="Starting the tile server…")
def _running_server(url: str, catalog: str) -> str:
    return ensure_running(url, catalog=catalog)


def tiles_url() -> str:
    """Base URL of a running tile server; starts one in the background if none answers.

    Cached per configured URL and catalog, so pointing the app at another server takes effect.
    """
    return _running_server(config.tile_server_url(), str(config.catalog_path()))


@st.cache_data(ttl=30, show_spinner=False)
def server_models(base: str) -> list[dict]:
    """Model cards as the tile server (which runs them) sees them, demo flag included."""
    return fetch_json(base, "/models", timeout=60)


@st.cache_data(ttl=60, show_spinner=False)
def server_device(base: str, model_id: str | None = None) -> str:
    """The device the tile server predicts on (GPU name or "CPU"), and with a model the engine it runs
    with (``auto`` may move to a faster one once measured, hence the short cache); the UI never loads torch."""
    from urllib.parse import quote

    info = fetch_json(base, "/device" + (f"?model={quote(model_id)}" if model_id else ""), timeout=120)
    return f"{info['device']} · engine {info['engine']}" if "engine" in info else info["device"]


@st.cache_data(max_entries=64, show_spinner="Scoring cells on the tile server…")
def candidate_cells(base: str, dataset_id: str, model_id: str, model_b: str | None, cell_px: int,
                    catalog_version: float) -> gpd.GeoDataFrame:
    """A scene's scored grid cells, predicted by the tile server (the UI never loads torch).

    ``catalog_version`` is only a cache key: a re-registered image or ground truth scores again.
    """
    query = urlencode({"cell_px": cell_px, **({"model_b": model_b} if model_b else {})})
    doc = fetch_json(base, f"/datasets/{quote(dataset_id)}/candidates/{quote(model_id)}?{query}", timeout=900)
    return cells_from_geojson(doc)


def run_command(argv: list[str] | tuple[str, ...], what: str, timeout: float = 1800) -> bool:
    """Run a ``flair-viz`` command in a child process and wait; its error is an ``st.error``, problem and fix.

    Why a child: commands such as ``change --model`` import torch, which the UI process never does.
    Whether it succeeded is returned, so the page can offer the command to run by hand.
    """
    from flair_viz.cli import main as cli
    from flair_viz.core import child

    fix = "run the command below to see why"
    try:
        code = child.run(cli.run, {"argv": list(argv)}, what=what, fix=fix, timeout=timeout)
    except FlairVizError as exc:
        show_error(exc)
        return False
    if code != 0:
        st.error(f"**{what} stopped with exit status {code}**\n\nFix: {fix}")
    return code == 0


def show_error(exc: FlairVizError) -> None:
    """Problem and fix, never a traceback."""
    st.error(f"**{exc.problem}**" + (f"\n\nFix: {exc.fix}" if exc.fix else ""))


def guarded(fn: Callable[[], T]) -> T | None:
    """Run a library call; a FlairVizError becomes ``st.error`` and the page goes on."""
    try:
        return fn()
    except FlairVizError as exc:
        show_error(exc)
        return None


def require(value_fn: Callable[[], T]) -> T:
    """Like :func:`guarded`, but a page cannot go on without the value: show the error and stop."""
    value = guarded(value_fn)
    if value is None:
        footer()
        st.stop()
    return value


def edit_rows(rows: gpd.GeoDataFrame, apply: Callable[[object, object], tuple[int, int]], *, key: str,
              editable: tuple[str, ...], column_config: dict, save_label: str, flash_key: str) -> None:
    """A stored table (selections, corrections) as an editor with a ``remove`` tick and a save button.

    ``apply(shown, edited)`` is the store's ``apply_table``: it writes only what changed, so a stale
    table never overwrites other edits; the result is flashed after the rerun.
    """
    view = rows.drop(columns="geometry").copy()
    view.insert(0, "remove", False)
    edited = st.data_editor(view, key=key, hide_index=True, width="stretch",
                            disabled=[c for c in view.columns if c not in ("remove", *editable)],
                            column_config=column_config)
    if st.button(save_label, key=f"{key}_save"):
        try:
            n_edit, n_gone = apply(view, edited)
            st.session_state[flash_key] = f"Saved: {n_edit} edited, {n_gone} removed"
            st.rerun()
        except FlairVizError as exc:
            show_error(exc)


def render_map(m, key: str, height: int = 560, returned_objects: list[str] | None = None):
    """Show a folium map as wide as its column; by default nothing is returned, so panning does not rerun
    the page. (``width=None``: the full column width in streamlit-folium.)"""
    return st_folium(m, key=key, height=height, width=None,
                     returned_objects=[] if returned_objects is None else returned_objects)


def map_with_legend(m, key: str, title: str, legend_html: str) -> None:
    """A map (None: nothing, its error already shown) with its legend in a narrow column beside it."""
    map_col, legend_col = st.columns([4, 1])
    with map_col:
        if m is not None:
            render_map(m, key=key)
    with legend_col:
        st.markdown(f"**{title}**")
        st.html(legend_html)


def footer() -> None:
    st.divider()
    st.caption("FLAIR Viz · " + ATTRIBUTION)
