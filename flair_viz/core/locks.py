"""The one file lock: serialise read-modify-write of a shared file by concurrent jobs and app sessions.

Writes themselves are atomic (:mod:`flair_viz.core.atomic`), but two writers that each read, change
and replace a file (the catalog, the selections GeoPackage) would lose one change. ``flock`` on a
hidden ``.<name>.lock`` beside the file makes them take turns; the lock file is never the data, so
atomic replaces of the data file do not break the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def lock_path(path: str | os.PathLike[str]) -> Path:
    """``dir/.name.lock`` for ``dir/name``."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (its folder is created) for the duration of the block."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
