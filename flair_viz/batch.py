"""Predict, evaluate and compare many scenes on Dask distributed, restartably and without partial outputs.

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
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from flair_viz import atomic, classes, models, raster
from flair_viz import mosaic as mosaic_vrt
from flair_viz.errors import FlairVizError, ModelError
from flair_viz.scenes import Scene, safe_name

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
            raise FlairVizError(f"--scheduler {scheduler!r} is not a scheduler address",
                                "give it as tcp://HOST:PORT (printed by `dask scheduler`)")
        try:
            return Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise FlairVizError(f"Cannot reach the Dask scheduler at {scheduler}: {str(exc).splitlines()[0][:160]}",
                                "start it with `dask scheduler` and workers with `dask worker ADDRESS`, "
                                "check host, port and firewall, or drop --scheduler to use local workers") from None
    if workers < 1:
        raise FlairVizError(f"--workers must be at least 1 (got {workers})", "use --workers 1 or more")
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


def _cluster_plan(client: Client) -> tuple[dict[str, float] | None, dict[str, int], int]:
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


def _this_worker() -> tuple[str, str]:
    """(address, name) of the Dask worker running this task; ("", "") outside Dask."""
    try:
        from distributed import get_worker

        w = get_worker()
        return str(w.address), str(w.name)
    except ValueError:
        return "", ""


def _share_cpus(workers_per_host: dict[str, int]) -> None:
    """Give torch this worker's share of the host's cores (Dask starts workers with OMP_NUM_THREADS=1)."""
    import torch

    addr, _ = _this_worker()
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


def _guard(name: str, fn: Callable[[], Any]) -> TaskOutcome:
    """Run on the worker: input errors become an outcome instead of a retried exception."""
    try:
        return TaskOutcome(name, True, fn())
    except FlairVizError as exc:
        return TaskOutcome(name, False, problem=exc.problem, fix=exc.fix)


def _gather(client: Client, futures: dict[Any, str], desc: str, progress: bool) -> list[TaskOutcome]:
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
            out = TaskOutcome(name, False, problem=f"{kind}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
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


def _raise_failures(failed: list[TaskOutcome], total: int, what: str) -> None:
    if not failed:
        return
    lines = "; ".join(f"{o.name}: {o.problem}" + (f" (fix: {o.fix})" if o.fix else "") for o in failed[:5])
    more = f"; … and {len(failed) - 5} more" if len(failed) > 5 else ""
    raise FlairVizError(f"{len(failed)} of {total} {what} failed: {lines}{more}",
                        "fix those inputs and rerun the same command: finished outputs are kept and skipped")


def _announce(client: Client, progress: bool) -> None:
    if progress:
        n = len(client.scheduler_info().get("workers", {}))
        print(f"Dask: {n} worker(s), dashboard {client.dashboard_link}", file=sys.stderr)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}-{safe_name(name)}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------------------
# Manifests: "this output is complete and was made from these inputs"
# ----------------------------------------------------------------------------------------------
def file_stamp(path: Path) -> dict[str, Any]:
    """Path, size and mtime: what changes when a file is replaced, cheap enough for thousands of scenes."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


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
                _check_opens(p)
    except (OSError, FlairVizError):
        return False
    return True


def _check_opens(path: Path) -> None:
    """Open a raster and read its last pixel (the reader's truncation check), or raise RasterError."""
    info = raster.describe(path)
    raster.read(path, 1, window=Window(info.width - 1, info.height - 1, 1, 1))


# ----------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PredictJob:
    """Everything a worker needs to predict one scene; small and picklable (the card, not the model)."""

    card: models.ModelCard
    checksum: str
    out_dir: Path
    proba: bool = False
    batch_size: int = 4
    device: str | None = None
    local_gpus: int = 0
    workers_per_host: dict[str, int] = field(default_factory=dict)

    def output(self, scene: Scene) -> Path:
        return self.out_dir / f"PRED_{safe_name(scene.name)}.tif"

    def proba_output(self, scene: Scene) -> Path:
        return self.out_dir / f"PROBA_{safe_name(scene.name)}.tif"

    def outputs(self, scene: Scene) -> list[Path]:
        return [self.output(scene)] + ([self.proba_output(scene)] if self.proba else [])

    def inputs(self, scene: Scene) -> dict[str, Any]:
        """What makes an output valid: the input file as it is now, its bands, and the model's weights."""
        try:
            stamp = file_stamp(scene.path)
        except FileNotFoundError:
            stamp = {"path": str(scene.path), "missing": True}
        return {"image": stamp, "bands": list(scene.bands) if scene.bands else None,
                "model": {"id": self.card.id, "sha256": self.checksum}, "proba": self.proba}


def _worker_model(job: PredictJob) -> tuple[models.LoadedModel, str]:
    """This worker's copy of the model (loaded once per process) on its device, and the worker's address."""
    device = job.device
    addr, name = _this_worker()
    if device is None and job.local_gpus:
        device = f"cuda:{int(name) % job.local_gpus}" if name.isdigit() else "cuda"
    if device is None or device == "cpu":
        _share_cpus(job.workers_per_host)
    loaded = models.load_model(job.card, device)
    if loaded.checksum != job.checksum:
        raise ModelError(f"{job.card.label}: the weights changed while the job ran (sha256 {loaded.checksum[:12]}… "
                         f"instead of {job.checksum[:12]}…)", "rerun the job once the weights stop changing")
    return loaded, addr


def predict_scene(job: PredictJob, scene: Scene) -> dict[str, Any]:
    """Worker task: predict one scene with the worker's cached model, then write its manifest."""
    from flair_viz import inference

    t0 = time.perf_counter()
    loaded, addr = _worker_model(job)
    out = job.output(scene)
    inputs = job.inputs(scene)
    inference.predict_file(loaded, scene.path, out, proba_path=job.proba_output(scene) if job.proba else None,
                           batch_size=job.batch_size, progress=False, bands=scene.bands)
    write_manifest(out, inputs, job.outputs(scene))
    return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(), "worker": addr,
            "model_instance": id(loaded.module), "device": str(loaded.device)}


# -- huge scenes: blocks of windows --------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """A rectangle of sliding windows of one scene: pixels read (with context) and pixels kept.

    Both are ``(row0, row1, col0, col1)``. Blocks follow the scene's own window plan, so predicting a
    block's read area alone runs exactly the windows the whole scene would run there, and its kept
    area is exactly what those windows contribute: blocks reassemble into the whole-scene result.
    """

    row: int
    col: int
    read: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]


def _axis_groups(length: int, per_block: int) -> list[tuple[int, int, int, int]]:
    from flair_viz import inference

    plan = inference.window_plan(length)
    groups = []
    for i in range(0, len(plan), per_block):
        g = plan[i:i + per_block]
        groups.append((g[0][0], min(g[-1][0] + inference.WINDOW, length), g[0][1], g[-1][2]))
    return groups


def scene_blocks(height: int, width: int, block_px: int) -> list[Block]:
    """The blocks of a scene, about ``block_px`` wide; empty when the scene fits in one block."""
    from flair_viz import inference

    if block_px <= 0:
        return []
    per = max(1, block_px // inference.STRIDE)
    rows, cols = _axis_groups(height, per), _axis_groups(width, per)
    if len(rows) * len(cols) <= 1:
        return []
    return [Block(i, j, (r[0], r[1], c[0], c[1]), (r[2], r[3], c[2], c[3]))
            for i, r in enumerate(rows) for j, c in enumerate(cols)]


def _blocks_dir(job: PredictJob, scene: Scene) -> Path:
    return job.out_dir / f".blocks_{safe_name(scene.name)}"


def _block_output(job: PredictJob, scene: Scene, b: Block) -> Path:
    return _blocks_dir(job, scene) / f"r{b.row:04d}_c{b.col:04d}.tif"


def _block_inputs(job: PredictJob, scene: Scene, b: Block) -> dict[str, Any]:
    return job.inputs(scene) | {"block": {"read": list(b.read), "keep": list(b.keep)}}


def predict_block(job: PredictJob, scene: Scene, b: Block) -> dict[str, Any]:
    """Worker task: predict a block's read area with the single-scene code, keep its kept area."""
    from flair_viz import inference

    t0 = time.perf_counter()
    loaded, addr = _worker_model(job)
    out = _block_output(job, scene, b)
    inputs = _block_inputs(job, scene, b)
    info = raster.describe(scene.path)
    tag = f".{out.stem}.{os.getpid()}"
    src = mosaic_vrt.window_vrt(scene.path.resolve(), info, *b.read, out.parent / f"{tag}.src.vrt")
    pred = out.parent / f"{tag}.pred.tif"
    try:
        inference.predict_file(loaded, src, pred, batch_size=job.batch_size, progress=False, bands=scene.bands)
        with rasterio.open(pred) as ds:
            kr0, kr1, kc0, kc1 = b.keep
            win = Window(kc0 - b.read[2], kr0 - b.read[0], kc1 - kc0, kr1 - kr0)
            data = ds.read(1, window=win)
            profile = {"driver": "GTiff", "width": kc1 - kc0, "height": kr1 - kr0, "count": 1, "dtype": "uint8",
                       "crs": ds.crs, "transform": ds.window_transform(win), "nodata": 0, "tiled": True,
                       "blockxsize": 256, "blockysize": 256, "compress": "LZW"}
        with atomic.atomic_path(out) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write_colormap(1, classes.colormap())
                dst.write(data, 1)
    finally:
        src.unlink(missing_ok=True)
        pred.unlink(missing_ok=True)
    write_manifest(out, inputs, [out])
    return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(), "worker": addr,
            "model_instance": id(loaded.module), "device": str(loaded.device)}


def merge_blocks(name: str, job: PredictJob, scene: Scene, blocks: Sequence[Block],
                 *block_outcomes: TaskOutcome) -> TaskOutcome:
    """Worker task, after every block of a scene: one COG from the blocks, its manifest, blocks removed."""
    from rasterio.shutil import copy as rio_copy

    from flair_viz import inference

    bad = [o for o in block_outcomes if not o.ok]
    if bad:
        return TaskOutcome(name, False, problem=f"{bad[0].name}: {bad[0].problem}", fix=bad[0].fix)

    def merge() -> dict[str, Any]:
        t0 = time.perf_counter()
        out = job.output(scene)
        folder = _blocks_dir(job, scene)
        vrt = mosaic_vrt.write_vrt([_block_output(job, scene, b) for b in blocks], folder / "blocks.vrt")
        with atomic.atomic_path(out) as tmp:
            rio_copy(vrt, tmp, driver="COG", **inference.COG_OPTIONS)
        write_manifest(out, job.inputs(scene), [out])
        shutil.rmtree(folder, ignore_errors=True)
        return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(),
                "worker": _this_worker()[0], "blocks": len(blocks)}

    return _guard(name, merge)


@dataclass
class PredictResult:
    """Outputs in scene order, what was computed versus skipped, and the mosaic if one was written."""

    outputs: list[Path]
    computed: list[str]
    skipped: list[str]
    tasks: list[dict[str, Any]]
    mosaic: Path | None = None
    catalog_id: str | None = None


def batch_predict(scenes: Sequence[Scene], model: str | models.ModelCard, out_dir: str | os.PathLike[str],
                  client: Client, proba: bool = False, batch_size: int = 4, device: str | None = None,
                  retries: int = DEFAULT_RETRIES, progress: bool = True, mosaic: bool = True,
                  catalog_file: str | os.PathLike[str] | None = None, outside_root: bool = False,
                  block_px: int = DEFAULT_BLOCK_PX) -> PredictResult:
    """One class COG per scene in ``out_dir`` (``PRED_<scene>.tif``), then a VRT mosaic over all of them.

    A scene larger than ``block_px`` (and predicted without probabilities) is split into blocks of
    windows, one task each, merged into its COG by a last task: a huge ortho then uses every worker,
    and a killed job keeps its finished blocks.

    Scenes whose outputs are complete for the same inputs and model are skipped. When
    ``catalog_file`` is given, the mosaic is registered there as ``MOSAIC_<model>`` (role prediction);
    it must lie under the catalog's data root unless ``outside_root`` says otherwise.
    """
    card = models.get_card(model) if isinstance(model, str) else model
    _, checksum = models.resolve_checkpoint(card)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise FlairVizError(f"--out {out_dir} is a file", "give a folder (it is created if missing)")
    if not scenes:
        raise FlairVizError("No scenes to predict", "give folders, globs, files or catalog IDs")
    if mosaic and catalog_file is not None and not outside_root:
        mosaic_vrt.check_under_root(catalog_file, out_dir)  # refuse before hours of work, not after
    out_dir.mkdir(parents=True, exist_ok=True)
    resources, per_host, local_gpus = _cluster_plan(client)
    job = PredictJob(card=card, checksum=checksum, out_dir=out_dir, proba=proba, batch_size=batch_size,
                     device=device, local_gpus=local_gpus, workers_per_host=per_host)
    todo, skipped = [], []
    for s in scenes:
        (skipped if is_complete(job.output(s), job.inputs(s), job.outputs(s)) else todo).append(s)
    if progress:
        print(f"{len(scenes)} scene(s): {len(skipped)} already done, {len(todo)} to predict with {card.id}"
              + (" on GPU workers" if resources else ""), file=sys.stderr)
        if todo:
            _announce(client, progress)
    futures: dict[Any, str] = {}
    block_keys: set[str] = set()
    for s in todo:
        blocks = [] if proba else scene_blocks(*_size(s.path), block_px)
        if not blocks:
            futures[client.submit(_guard, s.name, _partial(predict_scene, job, s), key=_key("predict", s.name),
                                  retries=retries, resources=resources, pure=False)] = s.name
            continue
        deps = []
        for b in blocks:  # blocks finished by an interrupted run are kept
            if is_complete(_block_output(job, s, b), _block_inputs(job, s, b)):
                continue
            label = f"{s.name} block r{b.row} c{b.col}"
            fut = client.submit(_guard, label, _partial(predict_block, job, s, b), key=_key("predict", label),
                                retries=retries, resources=resources, pure=False)
            futures[fut] = label
            block_keys.add(label)
            deps.append(fut)
        futures[client.submit(merge_blocks, s.name, job, s, blocks, *deps, key=_key("merge", s.name),
                              retries=retries, pure=False)] = s.name
    outcomes = _gather(client, futures, f"predict {card.id}", progress)
    scene_outcomes = [o for o in outcomes if o.name not in block_keys]
    _raise_failures([o for o in scene_outcomes if not o.ok], len(scenes), "scene(s)")
    result = PredictResult(outputs=[job.output(s) for s in scenes], computed=[o.name for o in scene_outcomes],
                           skipped=[s.name for s in skipped], tasks=[o.value for o in outcomes])
    if mosaic:
        result.mosaic = mosaic_vrt.write_vrt(result.outputs, out_dir / f"MOSAIC_{safe_name(card.id)}.vrt")
        if catalog_file is not None:
            result.catalog_id = mosaic_vrt.register_mosaic(catalog_file, result.mosaic, card,
                                                list(zip(scenes, result.outputs)), outside_root)
    return result


def _size(path: Path) -> tuple[int, int]:
    info = raster.describe(path)
    return info.height, info.width


class _partial:
    """A picklable zero-argument call (``functools.partial`` with a readable repr in the dashboard)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __call__(self) -> Any:
        return self.fn(*self.args)

    def __repr__(self) -> str:
        return f"{self.fn.__name__}(...)"


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_chunk(pairs: Sequence[Any]) -> list[TaskOutcome]:
    """Worker task: confusion matrices of a chunk of pairs (patches are small; one task each would be overhead)."""
    from flair_viz import metrics

    return [_guard(p.patch, _partial(metrics.compute_pair, p)) for p in pairs]


def batch_evaluate(pairs: Sequence[Any], out_parquet: str | os.PathLike[str], client: Client,
                   chunk_size: int | None = None, retries: int = DEFAULT_RETRIES, progress: bool = True,
                   flush_every_s: float = 30.0) -> Any:
    """Per-pair confusion matrices of ``pairs`` into ONE Parquet store, computing only what it lacks.

    Same store format and reuse rule as :func:`flair_viz.metrics.evaluate` (same input key: paths,
    sizes, mtimes, nomenclatures). The store is rewritten atomically every ``flush_every_s`` seconds
    and at the end, so an interrupted run keeps most of its work. Returns a ``metrics.EvaluationRun``.
    """
    from flair_viz import metrics

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
            _announce(client, progress)
    futures = {client.submit(evaluate_chunk, [p for _, p in chunk], key=_key("evaluate", chunk[0][1].patch),
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
    _raise_failures(failed, len(pairs), "pair(s)")
    table = metrics.MetricsTable(pd.DataFrame([m for m, _ in done], columns=list(metrics.META_COLUMNS)),
                                 np.stack([c for _, c in done]) if done else np.zeros((0, metrics.N, metrics.N),
                                                                                        np.int64))
    return metrics.EvaluationRun(table, computed=len(done) - reused, reused=reused)


def _merge_store(stored, done: list[tuple[dict, np.ndarray]], path: Path) -> None:
    """Stored rows of other pairs, then ours (one row per truth/prediction pair), written atomically."""
    from flair_viz import metrics

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


# ----------------------------------------------------------------------------------------------
# Change
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangeJob:
    """One before/after pair of a batch change, resolved on the client (catalog IDs become files)."""

    name: str
    before: Any  # change.ClassSource
    after: Any  # change.ClassSource


CHANGE_COLUMNS = ("name", "before", "after", "before_path", "after_path", "simulated", "resampled", "partial_overlap",
                  "pixel_area_m2", "overlap_area_ha", "valid_area_ha", "changed_area_ha", "artificialisation_ha",
                  "deartificialisation_ha", "net_artificialisation_ha", "out_dir")


def read_pairs_csv(path: str | os.PathLike[str], catalog=None, nomenclature: str = "flair1") -> list[ChangeJob]:
    """``before,after[,name]`` rows (catalog IDs or files) -> jobs with unique names."""
    import csv

    from flair_viz import change

    path = Path(path)
    if not path.is_file():
        raise FlairVizError(f"Pairs file not found: {path}", "give a CSV with columns before,after (and optional name)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"before", "after"} <= set(rows[0]):
        raise FlairVizError(f"{path.name} must have a header with columns before,after (optional: name)",
                            "e.g. `before,after,name` then one line per pair")
    jobs: list[ChangeJob] = []
    seen: set[str] = set()
    base = path.parent
    for n, row in enumerate(rows, start=2):
        refs = []
        for side in ("before", "after"):
            ref = (row.get(side) or "").strip()
            if not ref:
                raise FlairVizError(f"{path.name} line {n}: empty {side}", "give a catalog ID or a file on every line")
            if not (catalog is not None and ref in catalog) and not Path(ref).is_absolute() and (base / ref).exists():
                ref = str(base / ref)  # files are relative to the CSV, like a catalog's paths
            try:
                refs.append(change.resolve(ref, catalog, nomenclature))
            except FlairVizError as exc:
                raise type(exc)(f"{path.name} line {n}: {exc.problem}", exc.fix) from None
        name = safe_name((row.get("name") or "").strip() or f"{refs[0].name}__{refs[1].name}")
        if name in seen:
            raise FlairVizError(f"{path.name} line {n}: pair name {name!r} is used twice",
                                "give each pair a unique name column (it names its output folder)")
        seen.add(name)
        jobs.append(ChangeJob(name, refs[0], refs[1]))
    return jobs


def _change_inputs(job: ChangeJob, grouping_text: str) -> dict[str, Any]:
    return {"before": file_stamp(job.before.path) | {"nomenclature": job.before.nomenclature},
            "after": file_stamp(job.after.path) | {"nomenclature": job.after.nomenclature},
            "grouping_sha256": hashlib.sha256(grouping_text.encode()).hexdigest()}


def _change_row(job: ChangeJob, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """One table row from a pair's summary.json, so fresh and reused pairs give identical rows."""
    return {"name": job.name, "before": job.before.name, "after": job.after.name,
            "before_path": str(job.before.path), "after_path": str(job.after.path),
            "simulated": bool(summary["simulated"]), "resampled": bool(summary["alignment"]["resampled"]),
            "partial_overlap": bool(summary["alignment"]["partial_overlap"]),
            "pixel_area_m2": float(summary["grid"]["pixel_area_m2"]),
            "overlap_area_ha": float(summary["overlap_area_ha"]), "valid_area_ha": float(summary["valid_area_ha"]),
            "changed_area_ha": float(summary["changed_area_ha"]), **{k: float(v) for k, v in summary["zan"].items()},
            "out_dir": str(out)}


def change_pair(job: ChangeJob, out_dir: Path, grouping: str | None) -> dict[str, Any]:
    """Worker task: the single-pair change outputs (change.tif, from_to.csv, summary.json), then a manifest."""
    from flair_viz import change, change_cli

    grp = change.load_grouping(grouping)
    out = out_dir / job.name
    inputs = _change_inputs(job, grp.text)
    result = change.compute_change(job.before, job.after, grouping=grp, change_cog=out / "change.tif")
    change_cli.write_outputs(out, result)
    summary = out / "summary.json"
    write_manifest(summary, inputs, [out / "change.tif", out / "from_to.csv", summary])
    return _change_row(job, json.loads(summary.read_text(encoding="utf-8")), out)


def batch_change(pairs: Sequence[ChangeJob], out_dir: str | os.PathLike[str], client: Client,
                 grouping: str | None = None, retries: int = DEFAULT_RETRIES, progress: bool = True) -> pd.DataFrame:
    """Each pair's change outputs in ``out_dir/<name>/``, and one table of all pairs (``changes.parquet``/``.csv``).

    A pair whose outputs are complete for the same input files and grouping is not recomputed.
    """
    from flair_viz import change

    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise FlairVizError(f"--out {out_dir} is a file", "give a folder (it is created if missing)")
    if not pairs:
        raise FlairVizError("No pairs to compare", "give --pairs pairs.csv with columns before,after[,name]")
    grp = change.load_grouping(grouping)
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for job in pairs:
        out = out_dir / job.name
        summary = out / "summary.json"
        if is_complete(summary, _change_inputs(job, grp.text), [out / "change.tif", out / "from_to.csv", summary]):
            rows[job.name] = _change_row(job, json.loads(summary.read_text(encoding="utf-8")), out)
        else:
            todo.append(job)
    if progress:
        print(f"{len(pairs)} pair(s): {len(rows)} already done, {len(todo)} to compute", file=sys.stderr)
        if todo:
            _announce(client, progress)
    futures = {client.submit(_guard, j.name, _partial(change_pair, j, out_dir, grouping), key=_key("change", j.name),
                             retries=retries, pure=False): j.name for j in todo}
    outcomes = _gather(client, futures, "change", progress)
    for o in outcomes:
        if o.ok:
            rows[o.name] = o.value
    table = pd.DataFrame([rows[j.name] for j in pairs if j.name in rows], columns=list(CHANGE_COLUMNS))
    if len(table):
        with atomic.atomic_path(out_dir / "changes.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        with atomic.atomic_path(out_dir / "changes.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.17g")
    _raise_failures([o for o in outcomes if not o.ok], len(pairs), "pair(s)")
    return table
