"""Predict many scenes on Dask: one COG per scene (huge scenes in blocks), then a VRT mosaic."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from flair_viz.core import atomic, classes, cog, errors, raster, vrt
from flair_viz.core.errors import InvalidInput, InvalidModel, OutsideDataRoot
from flair_viz.core.jobs import (
    DEFAULT_BLOCK_PX,
    DEFAULT_RETRIES,
    Call,
    TaskOutcome,
    announce,
    cluster_plan,
    file_stamp,
    gather,
    guard,
    is_complete,
    raise_failures,
    share_cpus,
    task_key,
    this_worker,
    write_manifest,
)
from flair_viz.core.names import safe_name
from flair_viz.core.scenes import Scene
from flair_viz.predict import bands, engines, inference, models, register
from flair_viz.predict.cards import ModelCard, get_card, resolve_checkpoint

if TYPE_CHECKING:
    from distributed import Client


# ----------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PredictJob:
    """Everything a worker needs to predict one scene; small and picklable (the card, not the model)."""

    card: ModelCard
    checksum: str
    out_dir: Path
    proba: bool = False
    batch_size: int = 4
    device: str | None = None
    engine: str | None = None  # torch, onnx, onnx-int8, auto; None: $FLAIR_VIZ_ENGINE on the worker, else auto
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
                "model": {"id": self.card.id, "sha256": self.checksum}, "proba": self.proba,
                **({"engine": self.engine} if self.engine else {})}


def _worker_model(job: PredictJob) -> tuple[models.LoadedModel, str]:
    """This worker's copy of the model (loaded once per process) on its device, and the worker's address."""
    device = job.device
    addr, name = this_worker()
    if device is None and job.local_gpus:
        device = f"cuda:{int(name) % job.local_gpus}" if name.isdigit() else "cuda"
    if device is None or device == "cpu":
        share_cpus(job.workers_per_host)
    loaded = models.load_model(job.card, device, job.engine)
    if loaded.checksum != job.checksum:
        raise InvalidModel(f"{job.card.label}: the weights changed while the job ran (sha256 {loaded.checksum[:12]}… "
                           f"instead of {job.checksum[:12]}…)", "rerun the job once the weights stop changing")
    return loaded, addr


def predict_scene(job: PredictJob, scene: Scene) -> dict[str, Any]:
    """Worker task: predict one scene with the worker's cached model, then write its manifest."""
    t0 = time.perf_counter()
    loaded, addr = _worker_model(job)
    out = job.output(scene)
    inputs = job.inputs(scene)
    inference.predict_file(loaded, scene.path, out, proba_path=job.proba_output(scene) if job.proba else None,
                           batch_size=job.batch_size, progress=False, bands=scene.bands)
    write_manifest(out, inputs, job.outputs(scene))
    return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(), "worker": addr,
            "model_instance": id(loaded.runner), "device": str(loaded.device)}


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
    plan = inference.window_plan(length)
    groups = []
    for i in range(0, len(plan), per_block):
        g = plan[i:i + per_block]
        groups.append((g[0][0], min(g[-1][0] + inference.WINDOW, length), g[0][1], g[-1][2]))
    return groups


def scene_blocks(height: int, width: int, block_px: int) -> list[Block]:
    """The blocks of a scene, about ``block_px`` wide; empty when the scene fits in one block."""
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
    t0 = time.perf_counter()
    loaded, addr = _worker_model(job)
    out = _block_output(job, scene, b)
    inputs = _block_inputs(job, scene, b)
    info = raster.describe(scene.path)
    (kr0, kr1, kc0, kc1), (rr0, _, rc0, _) = b.keep, b.read
    keep = Window(kc0, kr0, kc1 - kc0, kr1 - kr0)
    profile = {"width": keep.width, "height": keep.height, "count": 1, "dtype": "uint8", "crs": info.crs,
               "transform": window_transform(keep, info.transform), "nodata": 0}
    with cog.cog_writer(out, profile) as dst:
        work = Path(dst.name)  # work files named after the writer's scratch go away with it
        src = vrt.window_vrt(scene.path.resolve(), info, *b.read, work.with_name(work.name + ".src.vrt"))
        pred = work.with_name(work.name + ".pred.tif")
        inference.predict_file(loaded, src, pred, batch_size=job.batch_size, progress=False, bands=scene.bands)
        with rasterio.open(pred) as ds:
            data = ds.read(1, window=Window(kc0 - rc0, kr0 - rr0, keep.width, keep.height))
        dst.write_colormap(1, classes.colormap())
        dst.write(data, 1)
    write_manifest(out, inputs, [out])
    return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(), "worker": addr,
            "model_instance": id(loaded.runner), "device": str(loaded.device)}


def merge_blocks(name: str, job: PredictJob, scene: Scene, blocks: Sequence[Block],
                 *block_outcomes: TaskOutcome) -> TaskOutcome:
    """Worker task, after every block of a scene: one COG from the blocks, its manifest, blocks removed."""
    bad = [o for o in block_outcomes if not o.ok]
    if bad:
        return TaskOutcome(name, False, problem=f"{bad[0].name}: {bad[0].problem}", fix=bad[0].fix)

    def merge() -> dict[str, Any]:
        t0 = time.perf_counter()
        out = job.output(scene)
        folder = _blocks_dir(job, scene)
        cog.write_cog(vrt.write_vrt([_block_output(job, scene, b) for b in blocks], folder / "blocks.vrt"), out)
        write_manifest(out, job.inputs(scene), [out])
        shutil.rmtree(folder, ignore_errors=True)
        return {"output": str(out), "seconds": time.perf_counter() - t0, "pid": os.getpid(),
                "worker": this_worker()[0], "blocks": len(blocks)}

    return guard(name, merge)


@dataclass
class PredictResult:
    """Outputs in scene order, what was computed versus skipped, and the mosaic if one was written.

    ``not_registered`` is the refusal (problem, and the fix saying how to register it) when the mosaic
    was written but the catalog could not take it: outputs never depend on registration.
    """

    outputs: list[Path]
    computed: list[str]
    skipped: list[str]
    tasks: list[dict[str, Any]]
    mosaic: Path | None = None
    catalog_id: str | None = None
    not_registered: OutsideDataRoot | None = None


def _submit(client: Client, job: PredictJob, todo: Sequence[Scene], block_px: int, retries: int,
            resources: dict[str, float] | None) -> tuple[dict[Any, str], set[str]]:
    """One task per scene, or per block of a huge scene plus its merge; returns futures and the block labels."""
    futures: dict[Any, str] = {}
    block_keys: set[str] = set()
    for s in todo:
        blocks = [] if job.proba else scene_blocks(*_size(s.path), block_px)
        if not blocks:
            futures[client.submit(guard, s.name, Call(predict_scene, job, s), key=task_key("predict", s.name),
                                  retries=retries, resources=resources, pure=False)] = s.name
            continue
        deps = []
        for b in blocks:  # blocks finished by an interrupted run are kept
            if is_complete(_block_output(job, s, b), _block_inputs(job, s, b)):
                continue
            label = f"{s.name} block r{b.row} c{b.col}"
            fut = client.submit(guard, label, Call(predict_block, job, s, b), key=task_key("predict", label),
                                retries=retries, resources=resources, pure=False)
            futures[fut] = label
            block_keys.add(label)
            deps.append(fut)
        futures[client.submit(merge_blocks, s.name, job, s, blocks, *deps, key=task_key("merge", s.name),
                              retries=retries, pure=False)] = s.name
    return futures, block_keys


def batch_predict(scenes: Sequence[Scene], model: str | ModelCard, out_dir: str | os.PathLike[str],
                  client: Client, proba: bool = False, batch_size: int = 4, device: str | None = None,
                  retries: int = DEFAULT_RETRIES, progress: bool = True, mosaic: bool = True,
                  catalog_file: str | os.PathLike[str] | None = None, outside_root: bool = False,
                  block_px: int = DEFAULT_BLOCK_PX, engine: str | None = None) -> PredictResult:
    """One class COG per scene in ``out_dir`` (``PRED_<scene>.tif``), then a VRT mosaic over all of them.

    A scene larger than ``block_px`` (and predicted without probabilities) is split into blocks of
    windows, one task each, merged into its COG by a last task: a huge ortho then uses every worker,
    and a killed job keeps its finished blocks.

    Scenes whose outputs are complete for the same inputs and model are skipped. When
    ``catalog_file`` is given, the mosaic is then registered there as ``MOSAIC_<model>`` (role
    prediction) if it lies under the catalog's data root or ``outside_root`` says so; otherwise every
    output is still written and ``not_registered`` says why and how to register it.
    """
    card = get_card(model) if isinstance(model, str) else model
    _, checksum = resolve_checkpoint(card)
    engine = engines.requested(engine) if engine else None  # a typo fails here, not on every worker
    out_dir = atomic.output_folder(out_dir)
    if not scenes:
        raise InvalidInput("No scenes to predict", "give folders, globs, files or catalog IDs")
    if mosaic and catalog_file is not None:
        register.data_root(catalog_file)  # a broken catalog fails now, before hours of work, not after
    resources, per_host, local_gpus = cluster_plan(client)
    job = PredictJob(card=card, checksum=checksum, out_dir=out_dir, proba=proba, batch_size=batch_size,
                     device=device, engine=engine, local_gpus=local_gpus, workers_per_host=per_host)
    mosaic_path = out_dir / f"MOSAIC_{safe_name(card.id)}.vrt"
    atomic.check_outputs([*(o for s in scenes for o in job.outputs(s)), *([mosaic_path] if mosaic else [])],
                         [s.path for s in scenes], option="--out")
    with atomic.output_set(out_dir, f"predict --model {card.id}", keep_earlier=True) as published:
        result = _predict_all(scenes, job, client, progress, block_px, retries, resources)
        published.add(*(o for s in scenes for o in job.outputs(s)))
        if mosaic:
            result.mosaic = vrt.write_vrt(result.outputs, mosaic_path)
            published.add(result.mosaic)
    if mosaic and catalog_file is not None:  # after the set is published: the catalog points at a complete set
        try:
            result.catalog_id = register.register_mosaic(catalog_file, result.mosaic, card,
                                                         list(zip(scenes, result.outputs)), outside_root)
        except OutsideDataRoot as exc:  # the outputs stand; the caller tells the user how to register them
            result.not_registered = exc
    return result


def _check_scenes(job: PredictJob, scenes: Sequence[Scene]) -> None:
    """Every scene's header against the model card (8-bit, the card's bands), before a task is submitted:
    the 900th scene of a run must not be the first to say that the images are uint16."""
    for s in scenes:
        with errors.context(f"Scene {s.name}"):
            bands.model_input(job.card, raster.describe(s.path), s.bands, s.path.name)


def _predict_all(scenes: Sequence[Scene], job: PredictJob, client: Client, progress: bool, block_px: int,
                 retries: int, resources: dict[str, float] | None) -> PredictResult:
    """Predict the scenes whose outputs are not complete for these inputs; the others are skipped."""
    card = job.card
    todo, skipped = [], []
    for s in scenes:
        (skipped if is_complete(job.output(s), job.inputs(s), job.outputs(s)) else todo).append(s)
    _check_scenes(job, todo)
    if progress:
        print(f"{len(scenes)} scene(s): {len(skipped)} already done, {len(todo)} to predict with {card.id}"
              + (" on GPU workers" if resources else ""), file=sys.stderr)
        if todo:
            announce(client, progress)
    futures, block_keys = _submit(client, job, todo, block_px, retries, resources)
    outcomes = gather(client, futures, f"predict {card.id}", progress)
    scene_outcomes = [o for o in outcomes if o.name not in block_keys]
    raise_failures([o for o in scene_outcomes if not o.ok], len(scenes), "scene(s)")
    return PredictResult(outputs=[job.output(s) for s in scenes], computed=[o.name for o in scene_outcomes],
                         skipped=[s.name for s in skipped], tasks=[o.value for o in outcomes])


def _size(path: Path) -> tuple[int, int]:
    info = raster.describe(path)
    return info.height, info.width


