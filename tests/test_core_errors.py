"""Errors by condition: one status table, statuses follow the condition, one way to add context."""

from __future__ import annotations

import inspect

import pytest

from flair_viz.core import errors
from flair_viz.core.errors import (
    STATUS_CODES,
    CatalogError,
    FlairVizError,
    ModelError,
    RasterError,
    context,
    status_code,
)

CONDITIONS = {errors.NotFound: 404, errors.InvalidInput: 400, errors.Mismatch: 400, errors.Unreadable: 500,
              errors.Misconfigured: 500}
FAMILIES = (RasterError, CatalogError, ModelError)
LEAVES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
          if issubclass(c, FlairVizError) and c not in (FlairVizError, *FAMILIES, *CONDITIONS)]


def test_the_table_lists_conditions_only():
    assert not set(FAMILIES) & set(STATUS_CODES)
    assert {c: STATUS_CODES[c] for c in CONDITIONS} == CONDITIONS


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda c: c.__name__)
def test_every_leaf_has_one_condition_and_its_status(leaf):
    conditions = [c for c in CONDITIONS if issubclass(leaf, c) and not any(
        d is not c and issubclass(d, c) and issubclass(leaf, d) for d in CONDITIONS)]
    assert len(conditions) == 1, (leaf, conditions)
    assert status_code(leaf("x")) == CONDITIONS[conditions[0]]
    assert any(issubclass(leaf, f) for f in FAMILIES), f"{leaf.__name__} belongs to no subject family"


def test_known_statuses_the_tile_server_relies_on():
    assert status_code(errors.UnknownDataset("x")) == 404
    assert status_code(errors.OutsideDataRoot("x")) == 404  # the server says nothing of files it will not serve
    assert status_code(errors.InvalidCatalog("x")) == 500  # a TOML syntax error is the operator's, not the request's
    assert status_code(errors.UnreadableRaster("x")) == 500
    assert status_code(errors.AlignmentError("x")) == 400


def test_context_prefixes_the_problem_and_keeps_class_and_fix():
    with pytest.raises(errors.UnreadableRaster) as exc, context("Dataset A"):
        raise errors.UnreadableRaster("Cannot read a.tif", "re-export it")
    assert exc.value.problem == "Dataset A: Cannot read a.tif" and exc.value.fix == "re-export it"
    assert exc.value.__cause__ is None and "Fix: re-export it" in str(exc.value)


def test_first_line_keeps_one_bounded_line_of_what_a_library_said():
    """GDAL and pyarrow messages run to many lines: a user's error keeps the first, bounded, or the type name."""
    long_first = "x" * 500
    assert errors.first_line(OSError("\n  'a.tif' not recognized\nstack line 2\n")) == "'a.tif' not recognized"
    assert errors.first_line(ValueError(long_first + "\nmore")) == long_first[:160]
    assert errors.first_line(ValueError(long_first), limit=200) == long_first[:200]
    assert errors.first_line(KeyError()) == "KeyError"  # said nothing: its type says what happened
    assert errors.first_line(RuntimeError("   ")) == "RuntimeError"
