"""Evaluate many truth/prediction pairs on Dask into one Parquet store."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flair_viz import metrics
from flair_viz.core.jobs import (
    DEFAULT_RETRIES,
    Call,
    TaskOutcome,
    announce,
    guard,
    raise_failures,
    task_key,
)

if TYPE_CHECKING:
    from distributed import Client


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_chunk(pairs: Sequence[Any]) -> list[TaskOutcome]:
    """Worker task: confusion matrices of a chunk of pairs (patches are small; one task each would be overhead)."""
    return [guard(p.patch, Call(metrics.compute_pair, p)) for p in pairs]


def batch_evaluate(pairs: Sequence[Any], out_parquet: str | os.PathLike[str], client: Client,
                   chunk_size: int | None = None, retries: int = DEFAULT_RETRIES, progress: bool = True,
                   flush_every_s: float = 30.0) -> Any:
    """Per-pair confusion matrices of ``pairs`` into ONE Parquet store, computing only what it lacks.

    Same store format and reuse rule as :func:`flair_viz.metrics.evaluate` (same input key: paths,
    sizes, mtimes, nomenclatures). The store is rewritten atomically every ``flush_every_s`` seconds
    and at the end, so an interrupted run keeps most of its work. Returns a ``metrics.EvaluationRun``.
    """
    out_parquet = Path(out_parquet)
    stored = metrics.MetricsTable.read(out_parquet)
    keys = list(metrics.KEY_COLUMNS)
    index = {tuple(r): i for i, r in enumerate(stored.meta[keys].itertuples(index=False, name=None))}
    rows: dict[int, tuple[dict, np.ndarray]] = {}
    todo: list[tuple[int, Any]] = []
    for i, pair in enumerate(pairs):
        k = tuple(metrics.input_key(pair)[c] for c in keys)
        if k in index:
            j = index[k]
            meta = stored.meta.iloc[j].to_dict() | {"model": pair.model, "truth_id": pair.truth_id,
                                                   "pred_id": pair.pred_id}
            rows[i] = (meta, stored.matrices[j])
        else:
            todo.append((i, pair))
    reused = len(rows)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = chunk_size or max(1, min(32, -(-len(todo) // (n_workers * 4)) if todo else 1))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    if progress:
        print(f"{len(pairs)} pair(s): {reused} already in {out_parquet.name}, {len(todo)} to count "
              f"in {len(chunks)} task(s)", file=sys.stderr)
        if todo:
            announce(client, progress)
    futures = {client.submit(evaluate_chunk, [p for _, p in chunk], key=task_key("evaluate", chunk[0][1].patch),
                             retries=retries, pure=False): chunk for chunk in chunks}
    from distributed import as_completed

    failed: list[TaskOutcome] = []
    bar = None
    if progress and futures:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="evaluate", unit="pair", file=sys.stderr)
    last_flush = time.monotonic()
    for fut in as_completed(list(futures)):
        chunk = futures[fut]
        try:
            outcomes = fut.result()
        except Exception as exc:
            outcomes = [TaskOutcome(p.patch, False, problem=f"{type(exc).__name__}: {exc}"[:300],
                                    fix="see the worker logs; rerun to retry") for _, p in chunk]
        for (i, _), out in zip(chunk, outcomes):
            if out.ok:
                rows[i] = out.value
            else:
                failed.append(out)
        fut.release()
        if bar is not None:
            bar.update(len(chunk))
        if time.monotonic() - last_flush > flush_every_s:
            _merge_store(stored, [rows[i] for i in sorted(rows)], out_parquet)
            last_flush = time.monotonic()
    if bar is not None:
        bar.close()
    done = [rows[i] for i in sorted(rows)]
    if len(done) - reused or not out_parquet.exists():
        _merge_store(stored, done, out_parquet)
    raise_failures(failed, len(pairs), "pair(s)")
    table = metrics.MetricsTable(pd.DataFrame([m for m, _ in done], columns=list(metrics.META_COLUMNS)),
                                 np.stack([c for _, c in done]) if done else np.zeros((0, metrics.N, metrics.N),
                                                                                        np.int64))
    return metrics.EvaluationRun(table, computed=len(done) - reused, reused=reused)


def _merge_store(stored, done: list[tuple[dict, np.ndarray]], path: Path) -> None:
    """Stored rows of other pairs, then ours (one row per truth/prediction pair), written atomically."""
    if not done:
        return
    mine = {(m["truth_path"], m["pred_path"]) for m, _ in done}
    keep = np.array([(t, p) not in mine for t, p in zip(stored.meta["truth_path"], stored.meta["pred_path"])],
                    dtype=bool)
    others = stored.select(keep) if len(stored) else stored
    meta = pd.DataFrame([m for m, _ in done], columns=list(metrics.META_COLUMNS))
    merged = metrics.MetricsTable(pd.concat([others.meta, meta], ignore_index=True) if len(others) else meta,
                                  np.concatenate([others.matrices, np.stack([c for _, c in done])]))
    merged.write(path)


