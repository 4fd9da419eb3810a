"""Every setting of FLAIR Viz in one place: where things live, and the environment variables that change it.

``Settings`` is the one table: a field per ``FLAIR_VIZ_*`` variable, with its type, its default and why it
exists. The README's Configuration table lists the same variables (tests/test_settings.py checks both).

Why the environment: a deployment (or a test) moves data, caches and engines without code changes, and the
tile server's uvicorn workers are separate processes that get nothing else. Modules read settings here,
never ``os.environ`` (tests/test_architecture.py checks it), so a setting has one name, one parser and one
default. The only writes are here too: ``export_for_workers`` (``serve``'s workers), ``bound_memory`` (GDAL
and glibc, which read only their own variables) and ``child_environment`` (a child process's copy).

``settings()`` reads the environment on every call, with no cache: reading every variable of the table takes
about 0.05 ms (27 variables on the 2-core VM), far under a live tile's cost, and a cache would go stale
whenever a test's ``monkeypatch.setenv`` or ``serve`` changes a variable. An empty variable counts as unset.
A value that does not parse is ``Misconfigured``, naming the variable, instead of being silently ignored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flair_viz.core.errors import Misconfigured

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "data" / "demo"
DEMO_CATALOG = DEMO_DIR / "catalog.toml"
MODELS_DIR = REPO_ROOT / "models"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TILE_PORT = 8765
DEFAULT_APP_PORT = 8501

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(text: str) -> bool:
    """0/1 (or false/true, no/yes, off/on): a typo such as ``O`` is an error, not a silent default."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise ValueError("expected 0 or 1")


def _paths(text: str) -> tuple[Path, ...]:
    """Folders separated by ``os.pathsep`` (``:`` on Linux), as ``$PATH`` is written."""
    return tuple(Path(p.strip()) for p in text.split(os.pathsep) if p.strip())


def _var(env: str, default: Any, why: str, parse: Callable[[str], Any] = str) -> Any:
    """One row of the table: the variable's name, its parser and why it exists live beside its field."""
    return field(default=default, metadata={"env": env, "why": why, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """The operator's settings, one field per environment variable (unset: the default shown)."""

    # -- where things live --------------------------------------------------------------------------
    catalog: Path | None = _var("FLAIR_VIZ_CATALOG", None, "the catalog of the app, the tile server and every "
                                "command without --catalog (unset: data/demo/catalog.toml)", Path)
    data: Path | None = _var("FLAIR_VIZ_DATA", None, "the user data folder: selections, metrics, caches, models "
                             "(unset: $XDG_DATA_HOME/flair-viz or ~/.local/share/flair-viz)", Path)
    cache: Path | None = _var("FLAIR_VIZ_CACHE", None, "prediction tiles, batch predictions, engine exports "
                              "(unset: <data>/cache)", Path)
    selections: Path | None = _var("FLAIR_VIZ_SELECTIONS", None, "the annotation selections GeoPackage "
                                   "(unset: <data>/selections.gpkg)", Path)
    corrections: Path | None = _var("FLAIR_VIZ_CORRECTIONS", None, "the corrections GeoPackage "
                                    "(unset: <data>/corrections.gpkg)", Path)
    metrics: Path | None = _var("FLAIR_VIZ_METRICS", None, "the metrics store (unset: <data>/metrics.parquet)",
                                Path)
    models: tuple[Path, ...] = _var("FLAIR_VIZ_MODELS", (), "more folders of model cards, searched before "
                                    "models/ and <data>/models (separated by os.pathsep)", _paths)
    # -- tile server and app --------------------------------------------------------------------------
    tile_port: int = _var("FLAIR_VIZ_TILE_PORT", DEFAULT_TILE_PORT, "port of the tile server the app starts "
                          "(and serve's default --port)", int)
    tiles_url: str | None = _var("FLAIR_VIZ_TILES_URL", None, "the tile server the app talks to, when it runs "
                                 "elsewhere (unset: http://127.0.0.1:<tile_port>)")
    token: str | None = _var("FLAIR_VIZ_TOKEN", None, "when set, every tile-server request must carry it "
                             "(?token= or a Bearer header); serve --token sets it")
    basemap_url: str | None = _var("FLAIR_VIZ_BASEMAP_URL", None, "XYZ template of an online basemap that "
                                   "Explore offers; unset, the app never needs the internet")
    # -- inference ------------------------------------------------------------------------------------
    engine: str = _var("FLAIR_VIZ_ENGINE", "auto", "what runs a model: auto|torch|onnx|onnx-int8|openvino|"
                       "openvino-bf16 (serve --engine sets it for its workers)")
    device: str | None = _var("FLAIR_VIZ_DEVICE", None, "torch device for predictions (unset: cuda, then mps, "
                              "then cpu)")
    threads: int | None = _var("FLAIR_VIZ_THREADS", None, "CPU threads of one ONNX/OpenVINO forward pass (unset: "
                               "$OMP_NUM_THREADS, else torch's setting, else the CPUs this process may use)", int)
    int8_build: bool = _var("FLAIR_VIZ_INT8_BUILD", True, "0 stops auto from building and measuring the "
                            "reduced-precision engines (int8, bf16) in the background", _flag)
    calibration: str | None = _var("FLAIR_VIZ_CALIBRATION", None, "folder or glob of aerial patches for int8 "
                                   "calibration and agreement checks (unset: the demo FLAIR patches)")
    ort_arena: bool = _var("FLAIR_VIZ_ORT_ARENA", False, "1 turns onnxruntime's CPU memory arena on; off, the "
                           "server's RSS stays flat across live-tile shapes at no speed cost", _flag)
    onnx_build_here: bool = _var("FLAIR_VIZ_ONNX_BUILD_HERE", False, "internal: set for the child process that "
                                 "exports an engine, so it builds in place instead of starting another", _flag)
    # -- live tiles -----------------------------------------------------------------------------------
    viewport_hint: bool = _var("FLAIR_VIZ_VIEWPORT_HINT", True, "follow the viewport= range of live tile URLs "
                               "(one region per map view); serve --workers N turns it off", _flag)
    region_mpx: float = _var("FLAIR_VIZ_REGION_MPX", 3.0, "input megapixels of one forward pass when a view's "
                             "live tiles are predicted as one region: the memory bound", float)
    warm: bool = _var("FLAIR_VIZ_WARM", True, "serve predicts the home story's demo zone and patch with the "
                      "default model when it starts, in the background (kept on disk: once per checkpoint and "
                      "data version), so the first map of them needs no model run", _flag)
    region_wait_ms: float = _var("FLAIR_VIZ_REGION_WAIT_MS", 100.0, "how long a region waits for more tiles of "
                                 "the same view after the last one came (read once, at import)", float)
    # -- request caps: the most one tile-server request may ask for (flair_viz/core/tiling.py enforces them) --
    max_zoom_out: int = _var("FLAIR_VIZ_MAX_ZOOM_OUT", 4, "zoom levels below a dataset's coarsest stored "
                             "resolution (its overviews) a tile may ask for; each level reads 4x the pixels", int)
    max_tilesize: int = _var("FLAIR_VIZ_MAX_TILESIZE", 512, "largest tilesize= of a tile or TileJSON request", int)
    max_buffer: int = _var("FLAIR_VIZ_MAX_BUFFER", 64, "largest buffer= and padding= of a tile request, in pixels "
                           "per edge", int)
    max_image_px: int = _var("FLAIR_VIZ_MAX_IMAGE_PX", 2048, "largest width=, height= and max_size= of a preview, "
                             "bbox, feature or statistics request (a bbox without them is read at most this size)", int)
    max_bins: int = _var("FLAIR_VIZ_MAX_BINS", 1024, "most histogram_bins= and categories (c=) of a statistics "
                         "request", int)
    max_cover_scale: int = _var("FLAIR_VIZ_MAX_COVER_SCALE", 10, "largest cover_scale= of a feature statistics "
                                "request (its memory grows with the square)", int)
    max_scene_mpx: float = _var("FLAIR_VIZ_MAX_SCENE_MPX", 64.0, "largest image, in megapixels, predicted whole "
                                "for a coarse map view of live predictions; a larger one (a BD ORTHO stack) shows "
                                "them from the zoom where tiles are predicted live", float)


def env_name(field_name: str) -> str:
    """The environment variable of a ``Settings`` field (``"engine"`` → ``"FLAIR_VIZ_ENGINE"``)."""
    return Settings.__dataclass_fields__[field_name].metadata["env"]


# (field, variable, parser, why) of every row, listed once: settings() runs on every live tile request
_ROWS = tuple((f.name, f.metadata["env"], f.metadata["parse"], f.metadata["why"]) for f in fields(Settings))


def settings() -> Settings:
    """The settings as the environment says now (read on every call: see the module doc)."""
    values = {}
    for name, env, parse, why in _ROWS:
        text = os.environ.get(env, "").strip()
        if not text:
            continue
        try:
            values[name] = parse(text)
        except ValueError as exc:
            raise Misconfigured(f"{env}={text!r} is not valid ({exc})",
                                f"set {env} to a valid value or unset it; it is {why}") from None
    return Settings(**values)


# -- paths derived from the settings --------------------------------------------------------------------
def catalog_path(default: Path | None = None) -> Path:
    """The catalog the app and the tile server use: ``$FLAIR_VIZ_CATALOG``, else ``default``, else the demo."""
    return settings().catalog or Path(default or DEMO_CATALOG)


def user_data_dir() -> Path:
    """Per-user writable folder for selections, metrics and caches: ``$FLAIR_VIZ_DATA`` or the XDG default."""
    p = settings().data or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "flair-viz"
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    """Disk cache for prediction tiles and batch predictions."""
    p = settings().cache or user_data_dir() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def tile_server_url() -> str:
    """Base URL of the tile server the UI talks to (``$FLAIR_VIZ_TILES_URL`` or loopback default)."""
    s = settings()
    return s.tiles_url or f"http://{DEFAULT_HOST}:{s.tile_port}"


def tile_port() -> int:
    return settings().tile_port


def basemap_url() -> str | None:
    """An optional online basemap (XYZ template) set by the operator; unset by default, so the app
    never depends on the internet."""
    return settings().basemap_url


def omp_threads() -> int | None:
    """OpenMP's own thread setting, when it is a number: ONNX/OpenVINO honour it after ``FLAIR_VIZ_THREADS``."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() else None


# -- the writes: other processes and other libraries read the environment --------------------------------
def export_for_workers(catalog: Path | None, token: str | None, engine: str | None, workers: int) -> None:
    """Put ``serve``'s options in this process's environment, where its uvicorn workers read them.

    Why the environment: ``serve`` hands uvicorn an import string (``flair_viz.server.run:app_factory``) and,
    with ``--workers N``, each worker is a fresh process that builds its own app; nothing but the environment
    reaches it. This is the one place that writes a ``FLAIR_VIZ_*`` variable.
    """
    if catalog:
        os.environ[env_name("catalog")] = str(Path(catalog).resolve())
    if token:
        os.environ[env_name("token")] = token
    if engine:
        os.environ[env_name("engine")] = engine
    if workers > 1:  # each worker would predict an announced view in full: see flair_viz.predict.live.hints_on
        os.environ.setdefault(env_name("viewport_hint"), "0")


def one_shot_process() -> None:
    """Mark this process as one that ends with its command (every CLI command but ``serve``): ``auto`` then
    starts no background build of a reduced-precision engine here.

    Why: such a build outlives a short command and is killed mid-compile when the interpreter exits, which
    aborts the process after its output was written (OpenVINO: "terminate called without an active
    exception", exit status 134), run after run, since the build never completes; and the command could not
    use it anyway. A long-lived tile server builds them. Set in the environment, so the Dask workers and child
    processes a command starts inherit it."""
    os.environ[env_name("int8_build")] = "0"


def child_environment(**overrides: bool | str) -> dict[str, str]:
    """This process's environment for a child process, with ``Settings`` fields (by name) overridden."""
    env = dict(os.environ)
    for name, value in overrides.items():
        env[env_name(name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return env


MALLOC_ARENAS = "2"
GDAL_CACHE_MB = "256"


def bound_memory() -> None:
    """Cap GDAL's block cache at 256 MB and glibc's malloc arenas at 2 in this process (and, through the
    environment, in its workers and build children), unless ``GDAL_CACHEMAX``/``MALLOC_ARENA_MAX`` are set.

    Why: GDAL's default cache is 5 % of the RAM (1.2 GB here), and each request thread that allocates big
    numpy arrays gets its own malloc arena whose freed memory glibc keeps. Under 8 concurrent map clients
    the two together took the server's peak RSS from ~0.9 GB to 1.7 GB (docs/benchmarks.md, tile-server
    memory). glibc reads its variable only at start, so this process sets its own limit with ``mallopt``
    before any request thread exists; GDAL reads its own at the first raster read, which comes later.
    """
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    os.environ["MALLOC_ARENA_MAX"] = MALLOC_ARENAS
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, int(MALLOC_ARENAS))  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to cap
        pass
