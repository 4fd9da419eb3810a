"""Run many scenes on Dask distributed, restartably and without partial outputs: the one runner of batch jobs.

One département at 0.2 m is thousands of FLAIR-size scenes: more than one process should chew
through, and more than one run may be needed to finish. So this module only *orchestrates*; the
per-scene work is the single-scene library code (``inference.predict_file``, ``metrics.compute_pair``,
``change.compute_change``) run as Dask tasks, one task per scene (or per chunk of small pairs):

* **Where it runs:** a ``LocalCluster`` of single-threaded worker processes by default, or any
  existing cluster given its scheduler address. On GPU machines the local cluster has one worker
  per GPU, advertising the Dask resource ``GPU=1``, and model tasks ask for it, so they only run
  on GPU workers (an external cluster's workers opt in with ``dask worker --resources GPU=1``).
* **Model once per worker:** tasks carry the model *card*; ``models.load_model`` keeps a per-process
  cache keyed by (card id, checksum, device), and a worker is one long-lived process.
* **Restartable:** every output is written atomically by the library, then a small JSON manifest
  (input path, size, mtime, model checksum, output size and mtime) is written atomically *after* it.
  A rerun skips an output whose manifest matches and which opens; anything else is recomputed.
* **Loss-free:** tasks are submitted with ``retries``, and the scheduler reschedules the tasks of a
  worker that dies, so a killed worker costs time, not results.
* Input errors (a wrong band count, a missing file) are not retried: they are collected per scene,
  the other scenes finish, and one :class:`FlairVizError` lists them at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_viz.core import atomic, raster
from flair_viz.core.errors import FlairVizError, InvalidInput, Misconfigured, first_line
from flair_viz.core.names import safe_name
from flair_viz.core.stamps import file_stamp

if TYPE_CHECKING:
    from distributed import Client

GPU = "GPU"  # the Dask worker resource that marks a worker owning one GPU
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
DEFAULT_RETRIES = 2
DEFAULT_BLOCK_PX = 8192  # scenes above this many pixels a side are split into blocks of windows


# ----------------------------------------------------------------------------------------------
# Cluster
# ----------------------------------------------------------------------------------------------
def gpu_count() -> int:
    """CUDA devices visible here; 0 when torch has no CUDA (CPU builds, CPU-only machines)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # a broken CUDA install must not stop CPU batch work
        return 0


def get_client(workers: int = 2, scheduler: str | None = None) -> Client:
    """A Dask ``Client``: on a new ``LocalCluster`` of ``workers`` processes, or on ``scheduler``'s cluster.

    Local workers are single-threaded processes (torch and GDAL release the GIL, but one model per
    thread would multiply memory); on a GPU machine there is one worker per GPU instead, each with
    the resource ``GPU=1``. The dashboard binds to loopback on a free port.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        if not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://", scheduler):
            raise InvalidInput(f"--scheduler {scheduler!r} is not a scheduler address",
                               "give it as tcp://HOST:PORT (printed by `dask scheduler`)")
        try:
            return Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise Misconfigured(f"Cannot reach the Dask scheduler at {scheduler}: {first_line(exc)}",
                                "start it with `dask scheduler` and workers with `dask worker ADDRESS`, "
                                "check host, port and firewall, or drop --scheduler to use local workers") from None
    if workers < 1:
        raise InvalidInput(f"--workers must be at least 1 (got {workers})", "use --workers 1 or more")
    import dask

    n_gpu = gpu_count()
    # Dask sets MALLOC_TRIM_THRESHOLD_ in workers to return memory eagerly; it also pins glibc's mmap
    # threshold, so every large tensor becomes a fresh mmap: inference ran several times slower. Unset it.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=n_gpu or workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", host="127.0.0.1",
                               resources={GPU: 1} if n_gpu else None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client._flair_local_cluster = cluster  # closed with the client by close_client()
    client._flair_local_gpus = n_gpu
    return client


def close_client(client: Client) -> None:
    """Close a client and, if :func:`get_client` started it, its local cluster."""
    cluster = getattr(client, "_flair_local_cluster", None)
    log = logging.getLogger("distributed")
    level = log.level
    log.setLevel(logging.CRITICAL)  # shutting workers down is routine, not news for the user
    try:
        client.close()
        if cluster is not None:
            cluster.close()
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def client_for(workers: int = 2, scheduler: str | None = None, client: Client | None = None) -> Iterator[Client]:
    """Use ``client`` if given (the caller owns it), else start one for the duration of the block."""
    if client is not None:
        yield client
        return
    own = get_client(workers, scheduler)
    try:
        yield own
    finally:
        close_client(own)


def cluster_plan(client: Client) -> tuple[dict[str, float] | None, dict[str, int], int]:
    """(task resources, workers per host, local GPU count): where model tasks may run and how many threads."""
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    workers = info.get("workers", {})
    per_host: dict[str, int] = {}
    for addr in workers:
        host = _host(addr)
        per_host[host] = per_host.get(host, 0) + 1
    has_gpu_workers = any((w.get("resources") or {}).get(GPU) for w in workers.values())
    return ({GPU: 1} if has_gpu_workers else None), per_host, int(getattr(client, "_flair_local_gpus", 0))


def _accepts_n_workers(client: Client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


def this_worker() -> tuple[str, str]:
    """(address, name) of the Dask worker running this task; ("", "") outside Dask."""
    try:
        from distributed import get_worker

        w = get_worker()
        return str(w.address), str(w.name)
    except ValueError:
        return "", ""


def share_cpus(workers_per_host: dict[str, int]) -> None:
    """Give torch this worker's share of the host's cores (Dask starts workers with OMP_NUM_THREADS=1)."""
    import torch

    addr, _ = this_worker()
    n_here = max(1, workers_per_host.get(_host(addr), 1)) if addr else 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, cores // n_here)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------
# Running tasks with progress, retries and per-item errors
# ----------------------------------------------------------------------------------------------
@dataclass
class TaskOutcome:
    """What one task reported: ``ok`` results carry ``value``; failures carry problem and fix."""

    name: str
    ok: bool
    value: Any = None
    problem: str = ""
    fix: str = ""


def guard(name: str, fn: Callable[[], Any]) -> TaskOutcome:
    """Run on the worker: input errors become an outcome instead of a retried exception."""
    try:
        return TaskOutcome(name, True, fn())
    except FlairVizError as exc:
        return TaskOutcome(name, False, problem=exc.problem, fix=exc.fix)


def gather(client: Client, futures: dict[Any, str], desc: str, progress: bool) -> list[TaskOutcome]:
    """Wait for every future, showing one progress bar over all workers; never raise for one task."""
    from distributed import as_completed

    outcomes: list[TaskOutcome] = []
    bar = None
    if progress and futures:
        from tqdm import tqdm

        bar = tqdm(total=len(futures), desc=desc, unit="task", file=sys.stderr)
    for fut in as_completed(list(futures)):
        name = futures[fut]
        try:
            out = fut.result()
        except Exception as exc:  # KilledWorker after repeated deaths, or an unexpected bug
            kind = type(exc).__name__
            fix = ("the task killed its worker several times (out of memory?): lower --batch-size or give "
                   "workers more memory" if kind == "KilledWorker" else "see the worker logs; rerun to retry it")
            out = TaskOutcome(name, False, problem=f"{kind}: {first_line(exc, 300) if str(exc).strip() else ''}",
                              fix=fix)
        outcomes.append(out)
        if bar is not None:
            bar.update(1)
            if not out.ok:
                bar.write(f"failed: {name}: {out.problem}", file=sys.stderr)
        fut.release()
    if bar is not None:
        bar.close()
    return outcomes


def raise_failures(failed: list[TaskOutcome], total: int, what: str) -> None:
    """One error listing the failed items; InvalidInput, since a task's own errors are its inputs' problems."""
    if not failed:
        return
    lines = "; ".join(f"{o.name}: {o.problem}" + (f" (fix: {o.fix})" if o.fix else "") for o in failed[:5])
    more = f"; … and {len(failed) - 5} more" if len(failed) > 5 else ""
    raise InvalidInput(f"{len(failed)} of {total} {what} failed: {lines}{more}",
                       "fix those inputs and rerun the same command: finished outputs are kept and skipped")


def announce(client: Client, progress: bool) -> None:
    if progress:
        n = len(client.scheduler_info().get("workers", {}))
        print(f"Dask: {n} worker(s), dashboard {client.dashboard_link}", file=sys.stderr)


def task_key(prefix: str, name: str) -> str:
    return f"{prefix}-{safe_name(name)}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------------------
# Manifests: "this output is complete and was made from these inputs"
# ----------------------------------------------------------------------------------------------
def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + MANIFEST_SUFFIX)


def write_manifest(output: Path, inputs: dict[str, Any], outputs: Sequence[Path]) -> Path:
    """Record an output's inputs and final stamps; called only after the output is under its final name."""
    doc = {"version": MANIFEST_VERSION, "inputs": inputs, "outputs": [file_stamp(p) for p in outputs],
           "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return atomic.write_text(manifest_path(output), json.dumps(doc, indent=1, sort_keys=True) + "\n")


def is_complete(output: Path, inputs: dict[str, Any], outputs: Sequence[Path] | None = None) -> bool:
    """True when ``output``'s manifest records exactly ``inputs`` and every output is unchanged and opens."""
    mpath = manifest_path(output)
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    outs = list(outputs or [output])
    try:
        if doc.get("version") != MANIFEST_VERSION or doc.get("inputs") != json.loads(json.dumps(inputs)):
            return False
        if doc.get("outputs") != [file_stamp(p) for p in outs]:
            return False
        for p in outs:
            if p.suffix.lower() in (".tif", ".tiff"):
                raster.read_last_pixel(raster.describe(p))
    except (OSError, FlairVizError):
        return False
    return True


class Call:
    """A picklable zero-argument call (``functools.partial`` with a readable repr in the dashboard)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __call__(self) -> Any:
        return self.fn(*self.args)

    def __repr__(self) -> str:
        return f"{self.fn.__name__}(...)"


