"""Start FLAIR Viz: the tile server first, then Streamlit in this process with the heavy imports done.

Why a launcher: Streamlit imports a page's modules only when the first visitor arrives, and the
tile server would otherwise start on that first visit too. Doing both up front is what makes the
first map appear quickly. The tile server is our child and stops with us, so no stale server
(running older code) is left behind on the port.
"""

from __future__ import annotations

import atexit
import subprocess
import sys

from flair_viz.core import config
from flair_viz.web import client


def start_tile_server() -> subprocess.Popen | None:
    if client.is_up(config.tile_server_url()):
        return None  # someone else's server (e.g. `flair-viz serve` with a token): use it
    proc = client.start_server(config.tile_port(), config.catalog_path())  # our child: it stops with us
    atexit.register(proc.terminate)
    return proc


def warm_imports() -> None:
    """Import the libraries the pages use, so the first page run does not pay for them.

    Not streamlit_folium (nor ui.common, which imports it): a Streamlit component must be declared
    once the Streamlit runtime exists, or its frontend is never registered and the map stays blank.
    """
    import folium  # noqa: F401
    import geopandas  # noqa: F401
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import rasterio  # noqa: F401

    import flair_viz.annotate  # noqa: F401
    import flair_viz.web.annotate  # noqa: F401
    import flair_viz.web.explore  # noqa: F401


def main() -> None:
    proc = start_tile_server()
    warm_imports()
    if proc is not None:
        client.wait_until_up(config.tile_server_url(), proc)  # if it does not come up, the pages say why
        client.wait_while_warming(config.tile_server_url())  # the demo's first map ready when the app is
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(config.REPO_ROOT / "app.py"), *sys.argv[1:]]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
