"""Write files so that a crash never leaves a partial file under a final name.

Everything FLAIR Viz writes (COGs, Parquet, GeoPackages, CSV, JSON) goes through here:
write to a hidden temp file in the same folder, fsync, then ``os.replace``, which is atomic on POSIX.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flair_viz.core.errors import InvalidInput


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``final``; on success it replaces ``final``, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers such as GDAL want to create the file themselves
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        discard(tmp_path)


def discard(path: Path) -> None:
    """Remove a work file and the side-cars GDAL writes beside it (``.aux.xml``, ``.ovr``, ``.msk``).

    The one side-car cleanup: temp files here, COG scratch files in :mod:`flair_viz.core.cog`.
    """
    path.unlink(missing_ok=True)
    for side in path.parent.glob(path.name + ".*"):
        side.unlink(missing_ok=True)


def write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def output_folder(path: str | os.PathLike[str]) -> Path:
    """The resolved ``--out`` folder of a command writing several files; a file there is refused before any work."""
    folder = Path(path).resolve()
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"--out {folder} is a file", "give a folder (it is created if missing)")
    return folder
