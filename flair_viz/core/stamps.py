"""The one file stamp: what says "this input is the one a result was computed from".

Batch manifests, the metrics store and tile caches all key results by it, so replacing a file
(new size or new mtime) invalidates every result made from the old one, the same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def file_stamp(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolved path, size and mtime (ns): cheap enough for thousands of scenes, and changes on replace."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
