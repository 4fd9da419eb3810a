"""Errors named by condition, as rio-tiler names its own, with one table of HTTP statuses.

Every error carries the *problem* and the *fix* separately: users of an analysis tool on messy data
need to know what to do next, not where in our code it broke. The CLI prints both (exit 2), the UI
shows both with ``st.error``, and the tile server answers ``{"detail": problem, "fix": fix}`` with the
status :data:`STATUS_CODES` gives the error's condition (titiler's ``DEFAULT_STATUS_CODES`` idea).

Raise a *condition* (``NotFound``, ``InvalidInput``, ``Mismatch``, ``Unreadable``, ``Misconfigured``)
or one of the leaves below, never the base. The subject families (``RasterError``, ``CatalogError``,
``ModelError``) let a caller catch "anything wrong with this raster" whatever the condition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

E = TypeVar("E", bound="FlairVizError")


class FlairVizError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` says what to do."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem}" + (f" — Fix: {self.fix}" if self.fix else "")

    def with_context(self: E, context: str) -> E:
        """The same error (same class, same fix) with ``context: `` before the problem."""
        out = type(self).__new__(type(self))
        FlairVizError.__init__(out, f"{context}: {self.problem}", self.fix)
        return out


@contextmanager
def context(prefix: str) -> Iterator[None]:
    """Re-raise any FlairVizError inside the block with ``prefix`` (e.g. a dataset or patch) in front.

    The one way to say *which* input a low-level error is about, without catching and rebuilding.
    """
    try:
        yield
    except FlairVizError as exc:
        raise exc.with_context(prefix) from None


def first_line(exc: BaseException, limit: int = 160) -> str:
    """What a library said, in one line: the first line of ``exc``'s message (at most ``limit`` characters),
    or its type name when it said nothing.

    GDAL, OGR, pyarrow and Dask messages can run to many lines (driver stacks, tracebacks); the first one
    names the problem, and the error a user reads must stay one line beside our fix.
    """
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


# -- conditions ----------------------------------------------------------------------------------
class NotFound(FlairVizError):
    """A dataset ID, model, file or tile that does not exist."""


class InvalidInput(FlairVizError):
    """A parameter or argument that cannot work as given (a bad value, an unsupported option)."""


class Mismatch(InvalidInput):
    """Two inputs that must agree do not: CRS, pixel grid, overlap, bands, nomenclature."""


class Unreadable(FlairVizError):
    """A file that exists but cannot be read: corrupt, truncated, not the format it claims."""


class Misconfigured(FlairVizError):
    """The operator's configuration is broken: catalog TOML, model card, checkpoint, grouping file."""


# -- subject families (catch-all per subject; raise a leaf below) --------------------------------
class RasterError(FlairVizError):
    """Something is wrong with a raster file."""


class CatalogError(FlairVizError):
    """Something is wrong with the catalog or a lookup in it."""


class ModelError(FlairVizError):
    """Something is wrong with a model card or its checkpoint."""


# -- leaves: a condition and a subject -------------------------------------------------------------
class RasterNotFound(NotFound, RasterError):
    """The raster file is missing (or is a folder)."""


class UnreadableRaster(Unreadable, RasterError):
    """The raster's header or pixels cannot be read (corrupt or truncated)."""


class InvalidRaster(InvalidInput, RasterError):
    """The raster reads but is not what it must be: band count, dtype, class values, no CRS."""


class AlignmentError(Mismatch, RasterError):
    """Two rasters that must be compared do not share a CRS, a grid or any overlap."""


class UnknownDataset(NotFound, CatalogError):
    """No dataset has this ID."""


class MissingSource(NotFound, CatalogError):
    """A file or folder the catalog is built from (catalog TOML, scan folder, metadata JSON) is missing or empty."""


class OutsideDataRoot(NotFound, CatalogError):
    """A catalog entry points outside the data root: refused, and to a request it does not exist (404, not 403,
    so the server says nothing about files it will not serve)."""


class InvalidCatalog(Misconfigured, CatalogError):
    """The catalog file or one of its entries is invalid (syntax, duplicate ID, outside the data root)."""


class UnknownModel(NotFound, ModelError):
    """No model card has this ID."""


class InvalidModel(Misconfigured, ModelError):
    """A model card or checkpoint is malformed or does not match its architecture."""


# The one status table: the first condition in an error's MRO that is listed here wins.
STATUS_CODES: dict[type[FlairVizError], int] = {
    NotFound: 404,
    Mismatch: 400,
    InvalidInput: 400,
    Unreadable: 500,
    Misconfigured: 500,
    FlairVizError: 400,
}


def status_code(exc: FlairVizError) -> int:
    """The HTTP status of an error, from :data:`STATUS_CODES` (never decided at the call site)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500
