"""One error type for every bad input, so the CLI and the UI can show it without a traceback.

Each error carries the *problem* and the *fix* separately: users of an analysis tool on messy
data need to know what to do next, not where in our code it broke.
"""

from __future__ import annotations


class FlairVizError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` says what to do."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem}" + (f" — Fix: {self.fix}" if self.fix else "")


class RasterError(FlairVizError):
    """A raster cannot be read or does not match what it was declared to be."""


class CatalogError(FlairVizError):
    """A catalog entry is unknown, duplicated or points outside the data root."""


class ModelError(FlairVizError):
    """A model card or checkpoint is unknown, malformed or does not match the architecture."""


class AlignmentError(FlairVizError):
    """Two rasters that must be compared do not share a CRS, a grid or any overlap."""
