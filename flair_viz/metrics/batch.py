"""The Dask runner of the evaluate engine: many truth/prediction pairs counted on a cluster, one store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from flair_viz.core.jobs import DEFAULT_RETRIES, Call, TaskOutcome, announce, guard, task_key
from flair_viz.metrics.evaluate import EvaluationRun, Runner, compute_pair, run_evaluation
from flair_viz.metrics.pairs import Pair

if TYPE_CHECKING:
    from distributed import Client


def evaluate_chunk(pairs: Sequence[Pair]) -> list[TaskOutcome]:
    """Worker task: confusion matrices of a chunk of pairs (patches are small; one task each would be overhead)."""
    return [guard(p.patch, Call(compute_pair, p)) for p in pairs]


def dask_runner(client: Client, chunk_size: int | None = None, retries: int = DEFAULT_RETRIES,
                progress: bool = True) -> Runner:
    """Count chunks of pairs on ``client``'s workers; a failed pair (or chunk) becomes a failed outcome."""
    def run(todo: Sequence[Pair]) -> Iterator[tuple[int, TaskOutcome]]:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = chunk_size or max(1, min(32, -(-len(todo) // (n_workers * 4)) if todo else 1))
        starts = range(0, len(todo), size)
        if progress:
            print(f"{len(todo)} pair(s) to count in {len(starts)} task(s)", file=sys.stderr)
            if todo:
                announce(client, progress)
        futures = {client.submit(evaluate_chunk, list(todo[s:s + size]), key=task_key("evaluate", todo[s].patch),
                                 retries=retries, pure=False): s for s in starts}
        yield from _as_completed(futures, todo, size, progress)

    return run


def _as_completed(futures: dict, todo: Sequence[Pair], size: int, progress: bool) -> Iterator[tuple[int, TaskOutcome]]:
    from distributed import as_completed

    bar = None
    if progress and futures:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="evaluate", unit="pair", file=sys.stderr)
    for fut in as_completed(list(futures)):
        start = futures[fut]
        chunk = todo[start:start + size]
        try:
            outcomes = fut.result()
        except Exception as exc:  # KilledWorker after repeated deaths, or an unexpected bug
            outcomes = [TaskOutcome(p.patch, False, problem=f"{type(exc).__name__}: {exc}"[:300],
                                    fix="see the worker logs; rerun to retry") for p in chunk]
        fut.release()
        if bar is not None:
            bar.update(len(chunk))
        yield from ((start + k, out) for k, out in enumerate(outcomes))
    if bar is not None:
        bar.close()


def batch_evaluate(pairs: Sequence[Pair], out_parquet: str | os.PathLike[str], client: Client,
                   chunk_size: int | None = None, retries: int = DEFAULT_RETRIES, progress: bool = True,
                   flush_every_s: float = 30.0) -> EvaluationRun:
    """Per-pair confusion matrices of ``pairs`` into ONE Parquet store, counted on Dask.

    The same engine as :func:`flair_viz.metrics.evaluate` (same store, same reuse rule); the store
    is also rewritten every ``flush_every_s`` seconds, so an interrupted run keeps most of its work.
    """
    runner = dask_runner(client, chunk_size=chunk_size, retries=retries, progress=progress)
    return run_evaluation(pairs, out_parquet, runner, flush_every_s=flush_every_s)
