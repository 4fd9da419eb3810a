"""The CPU engines (onnxruntime and OpenVINO, fp32 and reduced precision) against torch fp32: same classes on
real demo patches, caching, the automatic choice, and clear errors (or a fallback, for ``auto``) when a
runtime is missing or the export fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch

from flair_viz.cli import main as cli
from flair_viz.core import config, raster
from flair_viz.core.catalog import Catalog
from flair_viz.core.errors import InvalidInput, InvalidModel, Misconfigured
from flair_viz.predict import cards, engines, inference, live, models, onnx_engine, openvino_engine
from flair_viz.predict.runner import TorchRunner
from tests.helpers import DEMO_CATALOG, REPO, centre_tile, clear_live_caches
from tests.model_fixtures import make_model

torch.set_num_threads(1)
DEMO = "demo-unet-r18"
PATCH = "IMG_050549"  # a real FLAIR patch of the demo (data/demo/flair), not used for int8 calibration


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """No engine from the environment and no model loaded by an earlier test (the cache is per process)."""
    monkeypatch.delenv("FLAIR_VIZ_ENGINE", raising=False)
    monkeypatch.setenv("FLAIR_VIZ_INT8_BUILD", "0")  # no background bf16/int8 build unless a test asks for it
    monkeypatch.setattr(models, "_model_cache", {})
    monkeypatch.setattr(models, "reduced_builds", {})
    clear_live_caches()
    yield
    clear_live_caches()


def _patch():
    return Catalog.load(DEMO_CATALOG).get(PATCH)


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_cli_predict_fp32_engine_gives_torch_classes_on_a_real_patch(engine, tmp_path, capsys):
    src = _patch().path
    for name in ("torch", engine):
        assert cli.main(["predict", "--model", DEMO, "--engine", name, "--quiet", str(src),
                         str(tmp_path / f"{name}.tif")]) == 0
        assert f"({name} engine)" in capsys.readouterr().out
    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / f"{engine}.tif") as b:
        ref, got = a.read(1), b.read(1)
    assert ref.shape == (512, 512) and len(np.unique(ref)) >= 3  # a real prediction a wrong engine would change
    assert (ref == got).mean() >= 0.995


def test_cli_predict_bf16_keeps_the_agreement_it_records(tmp_path, capsys):
    """bf16 is reduced precision: its record (held-out patches) and this other real patch both stay >= 98 %."""
    src = _patch().path
    for name in ("torch", "openvino-bf16"):
        assert cli.main(["predict", "--model", DEMO, "--engine", name, "--quiet", str(src),
                         str(tmp_path / f"{name}.tif")]) == 0
    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / "openvino-bf16.tif") as b:
        same = (a.read(1) == b.read(1)).mean()
    card = cards.get_card(DEMO)
    record = engines.agreement_record(card, models.load_model(DEMO, "cpu", "torch").checksum, "openvino-bf16")
    assert record["engine"] == "openvino-bf16" and record["openvino"] == openvino_engine.version()
    assert record["agreement"] >= engines.MIN_AGREEMENT and same >= engines.MIN_AGREEMENT


def test_live_tiles_with_onnx_and_openvino_give_torch_classes(monkeypatch):
    ds = _patch()
    t = centre_tile(ds.path, 19)
    got = {}
    for engine in ("torch", "onnx", "openvino"):
        monkeypatch.setenv("FLAIR_VIZ_ENGINE", engine)  # what `flair-viz serve --engine` sets
        got[engine] = live.prediction(ds, DEMO, t.z, t.x, t.y)
        assert models.load_model(DEMO).engine == engine
    ref = got["torch"].classes
    valid = ref > 0
    assert valid.mean() > 0.9
    for engine in ("onnx", "openvino"):
        assert got[engine].live and (ref[valid] == got[engine].classes[valid]).mean() >= 0.995
    # the engines never share cached tiles: one disk cache folder each
    tag = models.load_model(DEMO, engine="torch").checksum[:16]
    assert {p.name for p in (config.cache_dir() / "predict-tiles").iterdir()} == {tag, f"{tag}.onnx",
                                                                                  f"{tag}.openvino"}


@pytest.mark.parametrize("engine", engines.REDUCED)
def test_reduced_engine_records_its_agreement_and_auto_follows_it(engine, monkeypatch):
    loaded = models.load_model(DEMO, "cpu", engine)
    assert loaded.engine == engine and loaded.runner is not None
    record = engines.agreement_record(loaded.card, loaded.checksum, engine)
    calib, held, names = engines.split_windows(loaded.card)
    assert record["held_out"] == names and len(calib) == engines.CALIBRATION_WINDOWS and held
    # the recorded figure is the plain argmax agreement with torch fp32 on the held-out patches
    torch_net = models.load_model(DEMO, "cpu", "torch").runner.module  # the same checkpoint on torch fp32
    same = [(loaded.runner(w[None]).argmax(1) == engines.torch_logits(torch_net, w[None]).argmax(1)).mean()
            for w in held]
    assert record["agreement"] == pytest.approx(np.mean(same), abs=1e-9)
    path = engines._record_path(loaded.card, loaded.checksum, engine)
    monkeypatch.setattr(engines, "auto_order", lambda: [engine, "onnx"])  # whatever this CPU offers
    for value, want in ((0.5, "onnx"), (0.99, engine)):
        path.write_text(json.dumps({**record, "agreement": value}))
        assert engines.choose(loaded.card, loaded.checksum, "cpu") == want


def test_auto_order_puts_bf16_first_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(openvino_engine, "bf16_native", lambda: True)
    assert engines.auto_order() == ["openvino-bf16", "onnx-int8", "openvino", "onnx"]
    monkeypatch.setattr(openvino_engine, "bf16_native", lambda: False)
    assert engines.auto_order() == ["onnx-int8", "openvino", "onnx"]
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert engines.auto_order() == ["onnx-int8", "onnx"]


def test_auto_builds_reduced_engines_in_the_background_then_uses_one_if_it_agrees(monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_INT8_BUILD", "1")
    first = models.load_model(DEMO, "cpu")
    assert first.engine == next(e for e in engines.auto_order() if engines.exact(e))  # nothing measured yet
    wanted = engines.reduced_wanted(first.card, first.checksum)
    assert wanted and wanted[0] == engines.auto_order()[0]
    build = models.reduced_builds[(DEMO, first.checksum)]
    build.join(600)
    assert not build.is_alive()
    records = {e: engines.agreement_record(first.card, first.checksum, e) for e in wanted}
    assert records[wanted[0]] is not None and all(0.5 < r["agreement"] <= 1.0 for r in records.values() if r)
    qualifying = [e for e in wanted if records[e] and records[e]["agreement"] >= engines.MIN_AGREEMENT]
    want = qualifying[0] if qualifying else first.engine
    assert models.load_model(DEMO, "cpu").engine == want
    models.load_model(DEMO, "cpu")
    assert len(models.reduced_builds) == 1  # once per checkpoint


def test_cli_commands_but_serve_build_no_engine_in_the_background(monkeypatch):
    """A one-shot command's background build was killed at exit mid-compile: OpenVINO aborted the process
    (exit 134) after writing its output, on every run. The CLI turns them off for all but ``serve``."""
    monkeypatch.setenv("FLAIR_VIZ_INT8_BUILD", "1")
    assert config.settings().int8_build
    assert cli.run(["models", "list"]) == 0
    assert not config.settings().int8_build
    assert engines.reduced_wanted(cards.get_card(DEMO), "any") == []


def test_export_is_cached_by_checksum_and_settings(model_dir, monkeypatch):
    make_model(model_dir, "tiny", "safetensors")
    card = cards.get_card("tiny")
    first = models.load_model(card, "cpu", "onnx")
    path = onnx_engine.model_path(card, first.checksum, "fp32")
    assert path.exists() and first.checksum[:16] in path.name and first.runner.path == path
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported twice"))
    monkeypatch.setattr(models, "_model_cache", {})
    again = models.load_model(card, "cpu", "onnx")
    assert again.runner.path == path
    x = np.random.default_rng(0).normal(size=(2, 5, 96, 128)).astype(np.float32)  # any aligned shape
    torch_net = models.load_model(card, "cpu", "torch").runner.module
    np.testing.assert_allclose(again.runner(x), engines.torch_logits(torch_net, x), atol=1e-4)


def test_auto_is_an_fp32_cpu_engine_on_cpu_and_torch_on_gpu(model_dir):
    make_model(model_dir, "tiny", "safetensors")
    loaded = models.load_model("tiny", "cpu")
    assert loaded.engine == "openvino"  # installed with the project; nothing reduced is measured for this model
    assert engines.choose(loaded.card, loaded.checksum, "cuda") == "torch"
    with pytest.raises(InvalidInput) as ei:
        engines.choose(loaded.card, loaded.checksum, "cuda", "onnx")
    assert "--engine torch" in ei.value.fix
    with pytest.raises(InvalidInput) as ei:
        engines.requested("tensorrt")
    assert "onnx-int8" in ei.value.fix
    img = np.random.default_rng(1).integers(0, 255, (5, 200, 300), dtype=np.uint8)
    torch_model = models.load_model("tiny", "cpu", "torch")
    a = inference.predict_proba_array(torch_model, img)
    b = inference.predict_proba_array(loaded, img)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_missing_onnxruntime_names_the_fix_and_auto_falls_back(model_dir, monkeypatch):
    make_model(model_dir, "tiny", "safetensors")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(Misconfigured) as ei:
        models.load_model("tiny", "cpu", "onnx")
    assert "onnxruntime" in ei.value.problem and "pip install onnxruntime==" in ei.value.fix
    assert models.load_model("tiny", "cpu").engine == "openvino"  # auto: the other runtime
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr(models, "_model_cache", {})
    with pytest.raises(Misconfigured) as ei:
        models.load_model("tiny", "cpu", "openvino")
    assert "openvino" in ei.value.problem and "pip install openvino==" in ei.value.fix
    with pytest.warns(UserWarning, match="neither onnxruntime nor openvino is installed"):
        assert models.load_model("tiny", "cpu").engine == "torch"


def test_failed_export_names_the_fix_and_auto_falls_back(model_dir, monkeypatch):
    make_model(model_dir, "tiny", "safetensors")

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(InvalidModel) as ei:
        models.load_model("tiny", "cpu", "onnx")
    assert "unsupported operator" in ei.value.problem and "--engine torch" in ei.value.fix
    with pytest.warns(UserWarning, match="running tiny on torch"):
        loaded = models.load_model("tiny", "cpu")
    assert loaded.engine == "torch" and isinstance(loaded.runner, TorchRunner)
    assert not list((onnx_engine.model_path(loaded.card, loaded.checksum, "fp32").parent).glob("*"))  # no debris


def test_cli_rejects_unknown_engine(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(["predict", "--model", DEMO, "--engine", "tensorrt", "a.tif", "b.tif"])
    assert ei.value.code == 2 and "onnx-int8" in capsys.readouterr().err


def test_calibration_images_are_real_demo_patches():
    found = engines.calibration_images()
    assert len(found) >= 3 and all(p.name.startswith("IMG_") for p in found)
    card = cards.get_card(DEMO)
    w = engines.read_window(card, found[0])
    np.testing.assert_allclose(w, inference.normalise(card, raster.read(found[0])[:, :512, :512]), rtol=1e-6)


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_cpu_process_serves_without_importing_torch(engine, tmp_path):
    """A fresh process (like a CPU tile server) with an empty cache: the export runs in a child, and the
    process itself predicts a real patch without ever importing torch, with torch's classes."""
    code = ("import sys, numpy as np\nfrom flair_viz.core import raster\nfrom flair_viz.predict import inference, models\n"
            "m = models.load_model('demo-unet-r18')\n"
            "np.save(sys.argv[2], inference.predict_proba_array(m, raster.read(sys.argv[1])).argmax(0))\n"
            "print(m.engine, 'torch' in sys.modules)\n")
    env = {**os.environ, "FLAIR_VIZ_ENGINE": engine, "FLAIR_VIZ_DEVICE": "cpu", "FLAIR_VIZ_INT8_BUILD": "0",
           "FLAIR_VIZ_CACHE": str(tmp_path / "cache")}
    src = _patch().path
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "out.npy")], capture_output=True,
                          text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [engine, "False"]
    ref = inference.predict_proba_array(models.load_model(DEMO, "cpu", "torch"), raster.read(src)).argmax(0)
    assert (np.load(tmp_path / "out.npy") == ref).mean() >= 0.995


def test_serve_engine_option_sets_the_server_setting(monkeypatch):
    """`serve --engine` hands the engine to serve as a value; serve's first step puts it where the server and
    its uvicorn workers read the setting."""
    from flair_viz.cli import serve as serve_cli

    seen = {}
    monkeypatch.setattr(serve_cli, "serve", lambda *a, **k: seen.setdefault("args", a))
    assert cli.main(["serve", "--engine", "onnx-int8"]) == 0
    _, _, _, workers, token, engine = seen["args"]
    assert engine == "onnx-int8"
    monkeypatch.setenv("FLAIR_VIZ_ENGINE", "torch")  # restored after the test
    config.export_for_workers(None, token, engine, workers)  # what serve does before anything else
    assert engines.requested() == "onnx-int8"
    with pytest.raises(SystemExit):
        cli.main(["serve", "--engine", "fast"])


@pytest.mark.parametrize("engine", ["openvino", "openvino-bf16"])
def test_openvino_stats_are_the_uncertainty_module_of_its_probabilities(engine):
    """OpenVINO summarises pixels in its graph for live regions: the same argmax, entropy and margin as
    core.uncertainty.pixel_stats computes from the probabilities the same graph returns."""
    from flair_viz.core import uncertainty

    loaded = models.load_model(DEMO, "cpu", engine)
    fwd = inference.Forward(loaded, 1)
    x = inference.normalise(loaded.card, raster.read(_patch().path))[None]
    ref = uncertainty.pixel_stats(fwd(x)[0], loaded.card.classes)
    got = fwd.stats(x)[0]
    assert len(np.unique(ref.argmax)) >= 3  # a real prediction, not a constant
    assert (got.argmax == ref.argmax).mean() >= 0.9999  # exact up to ties between equal probabilities
    np.testing.assert_allclose(got.entropy, ref.entropy, atol=1e-4)
    np.testing.assert_allclose(got.margin, ref.margin, atol=1e-4)
    assert got.valid.all() and got.argmax.shape == (512, 512)


def test_cpu_process_qualifies_bf16_without_importing_torch(tmp_path):
    """With the fp32 graph exported, a torch-free process measures bf16 against the fp32 OpenVINO run of
    the same graph (no child with torch) and records that reference; it agrees with torch's figure."""
    ref = models.load_model(DEMO, "cpu", "openvino")  # exports the fp32 graph into this test's cache
    code = ("import json, sys\nfrom flair_viz.predict import engines, models\n"
            "m = models.load_model('demo-unet-r18')\n"
            "r = engines.agreement_record(m.card, m.checksum, 'openvino-bf16')\n"
            "print(json.dumps([m.engine, 'torch' in sys.modules, r['reference'], r['agreement']]))\n")
    env = {**os.environ, "FLAIR_VIZ_ENGINE": "openvino-bf16", "FLAIR_VIZ_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    engine, torch_loaded, reference, value = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (engine, torch_loaded, reference) == ("openvino-bf16", False, "openvino fp32")
    _, held, _ = engines.split_windows(ref.card)
    bf16 = engines.open_runner("openvino-bf16", ref.runner.path)
    torch_net = models.load_model(DEMO, "cpu", "torch").runner.module
    assert value == pytest.approx(engines.pixel_agreement(torch_net, bf16, held), abs=0.005)


def test_openvino_keeps_one_static_plan_per_shape_and_at_most_shapes_plans():
    """Each input shape runs its own static-shape plan (less memory than one dynamic plan); older plans are
    dropped past SHAPES, and a shape planned again gives the same numbers as its first plan did."""
    loaded = models.load_model(DEMO, "cpu", "openvino")
    runner = loaded.runner
    x = inference.normalise(loaded.card, raster.read(_patch().path))[None]
    crops = [x[..., :512, :512], x[..., :256, :384], x[..., :320, :256]]
    first = [runner.summaries(c) for c in crops]
    assert runner.shapes() == [c.shape for c in crops[-openvino_engine.SHAPES:]]
    plans = list(runner._plans.values())
    assert plans[-1].free.qsize() == 1 and all(p.free.qsize() == 0 for p in plans[:-1])  # idle buffers: newest only
    again = runner.summaries(crops[0])  # its plan was dropped: planned again
    assert runner.shapes()[-1] == crops[0].shape and len(runner.shapes()) == openvino_engine.SHAPES
    for got, ref in zip(again, first[0]):
        np.testing.assert_array_equal(got, ref)
    # a crop's classes are the full patch's away from the crop's edges (the same graph, only the shape differs)
    inner = np.s_[64:192, 64:320]
    assert (first[1][0][0][inner] == first[0][0][0][:256, :384][inner]).mean() > 0.97


def test_serve_exports_the_cpu_engine_before_it_answers(tmp_path):
    """A first start exports each card's graph (a child importing torch) before binding, so that child
    never runs beside a serving process; the server itself stays torch-free and serves live tiles."""
    from tests.helpers import start_server, stop_server

    cache = tmp_path / "cache"
    env = {"FLAIR_VIZ_CACHE": str(cache), "FLAIR_VIZ_DATA": str(tmp_path / "data"), "FLAIR_VIZ_ENGINE": "openvino",
           "FLAIR_VIZ_DEVICE": "cpu", "FLAIR_VIZ_INT8_BUILD": "0"}
    proc, url = start_server(env=env, log=tmp_path / "log.txt")
    try:
        graphs = list((cache / "onnx").glob(f"{DEMO}.*.fp32.onnx"))
        assert len(graphs) == 1  # there when /healthz first answered: nothing had asked for a tile yet
        t = centre_tile(_patch().path, 18)
        import httpx

        r = httpx.get(f"{url}/datasets/{PATCH}/predict/{DEMO}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png", timeout=120)
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
        assert list((cache / "onnx").glob(f"{DEMO}.*.fp32.onnx")) == graphs  # served from it, not exported again
    finally:
        stop_server(proc)
    assert "Preparing the openvino engine of demo-unet-r18" in (tmp_path / "log.txt").read_text()


def test_prepare_skips_torch_and_graphs_already_there(monkeypatch):
    monkeypatch.setenv("FLAIR_VIZ_DEVICE", "cpu")
    monkeypatch.setenv("FLAIR_VIZ_ENGINE", "torch")
    assert models.prepare_cpu_engines(say=lambda _: None) == []
    monkeypatch.setenv("FLAIR_VIZ_ENGINE", "onnx")
    said: list[str] = []
    monkeypatch.setattr(onnx_engine, "build_here", lambda: False)
    built = models.prepare_cpu_engines(say=said.append)
    assert DEMO in built and any(DEMO in line for line in said)
    assert models.prepare_cpu_engines(say=said.append) == []  # exported once, never again


def test_openvino_never_phones_home(tmp_path):
    """`import openvino` would send a usage event to Google Analytics from a forked process (openvino-telemetry)
    and write a client ID under ~/intel: through the engine module, no fork happens and nothing is written."""
    ref = models.load_model(DEMO, "cpu", "openvino")  # the exported graph, in this test's cache
    code = ("import os, sys\nforks = []\nos.register_at_fork(before=lambda: forks.append(1))\n"
            "from flair_viz.predict import openvino_engine as oe\n"
            f"oe.OpenVinoRunner(__import__('pathlib').Path({str(ref.runner.path)!r}), 'openvino')\n"
            "import time\ntime.sleep(1)\nprint(len(forks), sys.modules.get('openvino_telemetry'))\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("CI", None)  # openvino-telemetry stays quiet in CI: this test must see what a user's machine does
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0", "None"]
    assert not (home / "intel").exists()


def test_a_damaged_openvino_graph_is_named_and_removed(tmp_path):
    ref = models.load_model(DEMO, "cpu", "openvino")
    broken = tmp_path / ref.runner.path.name
    broken.write_bytes(ref.runner.path.read_bytes()[:5000])  # a truncated export
    with pytest.raises(InvalidModel) as err:
        openvino_engine.OpenVinoRunner(broken, "openvino")
    assert broken.name in err.value.problem and "exported again" in err.value.fix
    assert not broken.exists()  # removed, so the next load exports it again
