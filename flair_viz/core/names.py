"""The one way to turn a user's name (a file stem, a patch, a model ID) into an ID or a file name.

Real FLAIR folders hold names such as ``IMG_ölé 1.tif``; IDs travel in tile URLs and names become
output files on any file system, so both keep only ASCII letters, digits, ``_``, ``.`` and ``-``.
One function means the catalog ID of a patch and the file names of its outputs always agree.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LEN = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``ölé 1`` -> ``ole_1``: accents dropped, other characters runs become ``_``, at most 100 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    out = _UNSAFE.sub("_", ascii_text).strip("._")[:MAX_LEN].rstrip("._")
    return out or "unnamed"
