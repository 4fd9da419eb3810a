"""Leaflet URL templates for the tile server's routes, built in one place.

One builder means one place that knows the ``{z}/{x}/{y}`` pattern and adds the access token
(``$FLAIR_VIZ_TOKEN``) when the operator protected the tile server with one.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flair_viz.core import config


def tile_url(route: str, base_url: str | None = None, **params: str | int | float | None) -> str:
    """``{base}{route}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?...`` for a route such as ``/datasets/ID``."""
    base = (base_url or config.tile_server_url()).rstrip("/")
    token = config.settings().token
    query = urlencode({k: v for k, v in {**params, "token": token}.items() if v is not None})
    return f"{base}{route}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png" + (f"?{query}" if query else "")
