"""The one writer of catalog TOML files: add or replace entries, keeping what a person wrote.

``catalog scan`` adds ``[[index]]`` entries and ``predict --out`` adds ``[[dataset]]`` entries to a file
that people also edit by hand. Appending text or swapping regex-marked blocks put new lines inside
whatever table came last, so an entry vanished into a ``[[scan]]`` table or broke the file. Here the
file is parsed as a document (tomlkit), the entry is added to or replaced in its own array of tables,
matched by a key, and comments, blank lines and order survive. The new text must load as a
:class:`~flair_viz.core.catalog.Catalog` before it atomically replaces the file, and writers take turns
through the one lock, so a failed or concurrent edit never loses the user's file.

Catalogs written by earlier versions carried ``# --- BEGIN index/batch ... ---`` marked blocks. They
load as before; on their first edit the marker comments are dropped (they marked blocks that no longer
exist), and ``index = [...]`` lines (at the top, or misplaced inside a ``[[scan]]``/``[[dataset]]``
table, where they were silently ignored) become ``[[index]]`` entries. tomlkit groups the entries of
one array of tables written in several places (``[[dataset]]`` … ``[[scan]]`` … ``[[dataset]]``)
together when it edits the file; no entry or comment is lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array, Comment, InlineTable, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from flair_viz.core import atomic
from flair_viz.core.catalog import Catalog, check_catalog_path, read_text
from flair_viz.core.errors import InvalidCatalog, context
from flair_viz.core.locks import locked

OLD_MARKER = re.compile(r"^#\s*--- (BEGIN|END) (index|batch) ")  # the blocks earlier versions appended

Entry = Mapping[str, Any]


def upsert(path: str | os.PathLike[str], table: str, entries: Sequence[Entry], key: str = "id", *,
           drop: Callable[[Entry], bool] | None = None, data_root: str = ".") -> Path:
    """Add each entry to the array of tables ``[[table]]``, replacing the entry with the same ``key`` in place.

    One function for every kind of entry (``[[index]]`` by ``path``, ``[[dataset]]`` by ``id``, later
    ``[[stack]]``), so all edits share the checks. ``drop`` removes older entries that the new set replaces
    (a rerun of ``predict`` replaces the previous run's entries of the same model). ``Path`` values are
    written relative to the catalog's data root when they lie under it. A missing file is created with
    ``data_root`` (relative to the file's folder).
    """
    path = Path(path)
    check_catalog_path(path)
    with locked(path):
        text = read_text(path) if path.exists() else f'data_root = "{data_root}"\n'
        doc = _parse(text, path)
        _upgrade_old_blocks(doc)
        root = (path.parent / str(doc.get("data_root", "."))).resolve()
        rows = [{k: _plain(v, root) for k, v in e.items()} for e in entries]
        _upsert(doc, table, rows, key, drop)
        new_text = tomlkit.dumps(doc)
        with context(f"{path.name} was left unchanged, as the edit would not load"):
            Catalog.from_text(new_text, path)  # the new text must load before it replaces the file
        atomic.write_text(path, new_text)
    return path


def entry_text(table: str, entry: Entry) -> str:
    """One entry as the TOML a person can paste into the catalog (used in fixes that ask for a hand edit)."""
    aot = tomlkit.aot()
    aot.append(_table(entry))
    doc = tomlkit.document()
    doc.append(table, aot)
    return tomlkit.dumps(doc).strip()


# -- the edit ------------------------------------------------------------------------------------
def _upsert(doc: TOMLDocument, table: str, rows: list[dict[str, Any]], key: str,
            drop: Callable[[Entry], bool] | None) -> None:
    aot = doc.get(table)
    if aot is None:
        aot = tomlkit.aot()
        doc.append(table, aot)
    elif not isinstance(aot, AoT):
        raise InvalidCatalog(f"The catalog's {table!r} is not an array of tables ([[{table}]])",
                             f"write each entry as a [[{table}]] table")
    new_keys = {r[key] for r in rows}
    for i in reversed(range(len(aot))):
        old = aot[i]
        if old.get(key) not in new_keys and drop is not None and drop(old.unwrap()):
            del aot[i]
    where = {str(old.get(key)): i for i, old in enumerate(aot)}  # one pass: a batch registers thousands
    for row in rows:
        at = where.get(str(row[key]))
        if at is None:
            new = _table(row)
            new.trivia.indent = "\n"  # a blank line before each entry, as people write them
            where[str(row[key])] = len(aot)
            aot.append(new)
            continue
        old = aot[at]  # kept as an object: the comments and blank lines around it stay
        for k in [k for k in old if k not in row]:
            del old[k]
        for k, v in row.items():
            old[k] = _value(v)


def _table(entry: Entry) -> Table:
    t = tomlkit.table()
    for k, v in entry.items():
        t[k] = _value(v)
    return t


def _value(v: Any) -> Any:
    """Nested tables are written inline (``extra = {model = "x"}``), so an entry stays one block of lines."""
    if isinstance(v, Mapping):
        inline = tomlkit.inline_table()
        inline.update({k: _value(x) for k, x in v.items()})
        return inline
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def _plain(v: Any, root: Path) -> Any:
    if isinstance(v, Path):
        p = v.resolve()
        return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
    if isinstance(v, Mapping):
        return {k: _plain(x, root) for k, x in v.items()}
    return v


# -- catalogs written by earlier versions ------------------------------------------------------------
def _upgrade_old_blocks(doc: TOMLDocument) -> None:
    """Drop the old block markers and turn ``index = [...]`` lines into ``[[index]]`` entries.

    A line that landed inside a ``[[scan]]`` or ``[[dataset]]`` table was ignored on load (the scan said
    "indexed" and added nothing); moving it to the top level registers what the user asked for.
    """
    found: list[dict[str, Any]] = []
    top = doc.get("index")
    if isinstance(top, Array):
        found += [dict(e.unwrap()) for e in top if isinstance(e, InlineTable)]
        del doc["index"]
    for t in _tables(doc):
        inner = t.get("index")
        if isinstance(inner, Array) and inner and all(isinstance(e, InlineTable) and "path" in e for e in inner):
            found += [dict(e.unwrap()) for e in inner]
            del t["index"]
    _drop_markers(doc.body)
    if found:
        _upsert(doc, "index", found, "path", None)


def _tables(container: TOMLDocument | Table) -> Iterable[Table]:
    """Every table below ``container``: entries of arrays of tables and their sub-tables."""
    for _, item in (container.value.body if isinstance(container, Table) else container.body):
        if isinstance(item, Table):
            yield item
            yield from _tables(item)
        elif isinstance(item, AoT):
            for t in item:
                yield t
                yield from _tables(t)


def _drop_markers(body: list) -> None:
    for i, (k, item) in enumerate(body):
        if k is None and isinstance(item, Comment) and OLD_MARKER.match(item.as_string().lstrip()):
            body[i] = (None, Whitespace(""))  # in place: the key positions tomlkit keeps stay valid
        elif isinstance(item, Table):
            _drop_markers(item.value.body)
        elif isinstance(item, AoT):
            for t in item:
                _drop_markers(t.value.body)


# -- reading ---------------------------------------------------------------------------------------
def _parse(text: str, path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise InvalidCatalog(f"Catalog {path.name} is not valid TOML: {exc}",
                             f"fix the syntax at that line of {path}; nothing was written") from None
