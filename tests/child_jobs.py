"""Library-like functions that tests/test_child.py runs in real child processes (importable by name there)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flair_viz.core.errors import UnknownModel


class UnknownTestModel(UnknownModel):
    """A leaf defined outside core/errors.py, with its own __init__: the parent must rebuild it all the same."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"No model {model_id}", "run `flair-viz models list`")


def add(a: int, b: list[int]) -> dict:
    return {"sum": a + sum(b), "pid": os.getpid()}


def count(n: int, pause_s: float, progress) -> int:
    for i in range(1, n + 1):
        time.sleep(pause_s)
        progress({"state": "running", "i": i, "n": n})
    return n


def fail(model_id: str) -> None:
    raise UnknownTestModel(model_id)


def fail_plain(text: str) -> None:
    raise ValueError(text)


def die(text: str) -> None:
    print(text, flush=True)
    os._exit(7)  # no result written: what a SIGKILL or an abort in native code leaves


def wait_then_clean(marker: str, progress) -> None:
    """Runs until cancelled; its ``finally`` must run on SIGTERM (as a fine-tune's staging clean-up does)."""
    progress({"state": "running"})
    try:
        while True:
            time.sleep(0.05)
    finally:
        Path(marker).write_text("cleaned")


def not_json() -> object:
    return {1, 2}
