"""The one file stamp and the one file checksum: what says "this input is the one a result was computed from".

Batch manifests, the metrics store and tile caches all key results by the stamp, so replacing a file
(new size or new mtime) invalidates every result made from the old one, the same way everywhere. The
checksum is for what must survive a copy: model caches and the training record of a fine-tuned card.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def file_stamp(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolved path, size and mtime (ns): cheap enough for thousands of scenes, and changes on replace."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, cached by (path, size, mtime): checksums key every model cache and each live tile
    loads its model, so they must be cheap after the first read."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]
