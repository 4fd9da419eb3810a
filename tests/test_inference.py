"""The inference engine: IGN sliding window, georeferencing, band checks, OOM back-off, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from flair_viz.cli import main as cli
from flair_viz.core import classes
from flair_viz.core.errors import RasterError
from flair_viz.predict import inference, models
from flair_viz.predict.runner import TorchRunner
from tests.helpers import write_tif
from tests.model_fixtures import FLAIR_MEAN, FLAIR_STD, direct_proba, make_model

torch.set_num_threads(1)


@pytest.fixture()
def tiny(model_dir):
    _, ref = make_model(model_dir, "tiny", "safetensors")
    return models.load_model("tiny", "cpu"), ref


@pytest.fixture()
def small_windows(monkeypatch):
    """Same algorithm with 128 px windows and 32 px margins, so multi-window scenes stay fast on a CPU."""
    monkeypatch.setattr(inference, "WINDOW", 128)
    monkeypatch.setattr(inference, "MARGIN", 32)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (5, h // 8 + 1, w // 8 + 1), dtype=np.uint8)  # blocky, so classes vary smoothly
    return np.ascontiguousarray(base.repeat(8, 1).repeat(8, 2)[:, :h, :w])


def test_window_plan_partitions_and_keeps_margin():
    for length in (100, 512, 513, 700, 768, 1024, 1300, 2049):
        plan = inference.window_plan(length)
        covered = np.zeros(length, dtype=int)
        for origin, a, b in plan:
            covered[a:b] += 1
            assert 0 <= origin and (origin + 512 <= length or length <= 512)
            assert origin <= a < b <= origin + 512
            if a > 0:  # not the scene edge: at least the margin away from the window's edges
                assert a - origin >= 128
            if b < length:
                assert origin + 512 - b >= 128
        assert (covered == 1).all(), length
        if length > 512:
            assert all(q[0] - p[0] <= 256 for p, q in zip(plan, plan[1:]))


def test_512_patch_equals_direct_forward(tiny):
    loaded, ref = tiny
    img = _image(512, 512)
    got = inference.predict_proba_array(loaded, img, batch_size=2)
    want = direct_proba(ref, img, FLAIR_MEAN, FLAIR_STD)
    assert got.shape == (19, 512, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.array_equal(got.argmax(0), want.argmax(0))


def test_predict_file_keeps_georeferencing_and_matches_direct_forward(tiny, tmp_path):
    loaded, ref = tiny
    img = _image(512, 512, seed=3)
    src = write_tif(tmp_path / "in.tif", img, block=256)
    out = inference.predict_file(loaded, src, tmp_path / "out.tif", proba_path=tmp_path / "p.tif", progress=False)
    want = direct_proba(ref, img, FLAIR_MEAN, FLAIR_STD)
    with rasterio.open(src) as a, rasterio.open(out) as b, rasterio.open(tmp_path / "p.tif") as p:
        assert b.crs == a.crs and b.transform == a.transform and (b.width, b.height) == (a.width, a.height)
        assert b.profile["compress"].lower() == "lzw" and b.profile["tiled"] and b.nodata == 0
        assert np.array_equal(b.read(1), (want.argmax(0) + 1).astype(np.uint8))
        assert p.count == 19 and p.transform == a.transform
        assert np.abs(p.read().astype(int) - np.rint(want * 255).astype(int)).max() <= 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.tif", "models", "out.tif", "p.tif"]


def test_large_scene_file_and_array_paths_agree_and_nodata_is_zero(tiny, tmp_path, small_windows):
    loaded, _ = tiny
    img = _image(300, 520, seed=5)  # 4 x 7 windows of 128 px
    img[:, :20, :30] = 7  # a nodata corner (all bands == nodata)
    src = write_tif(tmp_path / "big.tif", img, nodata=7, block=256)
    out = inference.predict_file(loaded, src, tmp_path / "big_pred.tif", progress=False, batch_size=3)
    nodata = (img == 7).all(axis=0)
    proba = inference.predict_proba_array(loaded, img, batch_size=2, valid=~nodata)
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.overviews(1), "a COG for the map carries overviews"
    expected = (proba.argmax(0) + 1).astype(np.uint8)
    expected[nodata] = 0
    assert np.array_equal(got, expected)
    assert (got[:20, :30] == 0).all() and set(np.unique(got[20:])) <= set(range(1, 20))
    assert (proba[:, nodata] == 0).all()


def test_small_scene_is_read_boundless(tiny, tmp_path):
    loaded, ref = tiny
    img = _image(200, 300, seed=2)
    out = inference.predict_file(loaded, write_tif(tmp_path / "s.tif", img, block=256), tmp_path / "s_pred.tif",
                                 progress=False)
    padded = np.zeros((5, 512, 512), np.uint8)
    padded[:, :200, :300] = img
    want = direct_proba(ref, padded, FLAIR_MEAN, FLAIR_STD)[:, :200, :300]
    with rasterio.open(out) as ds:
        assert ds.shape == (200, 300)
        assert np.array_equal(ds.read(1), (want.argmax(0) + 1).astype(np.uint8))


def test_flairhub_model_outputs_flair1_values(model_dir, tmp_path):
    _, ref = make_model(model_dir, "hub", "safetensors", nomenclature="flairhub")
    loaded = models.load_model("hub", "cpu")
    img = _image(512, 512, seed=4)
    got = inference.predict_proba_array(loaded, img)
    raw = direct_proba(ref, img, FLAIR_MEAN, FLAIR_STD)
    lut = classes.flairhub_to_flair1_lut()
    assert np.array_equal(got.argmax(0) + 1, lut[raw.argmax(0)])
    np.testing.assert_allclose(got[lut[:19].astype(int) - 1], raw, atol=1e-5)


def test_rgb_model_selects_bands_by_name(model_dir):
    _, ref = make_model(model_dir, "rgbnir", "pth", in_bands=["NIR", "R", "G"])
    loaded = models.load_model("rgbnir", "cpu")
    img = _image(512, 512, seed=6)
    got = inference.predict_proba_array(loaded, img)  # 5-band FLAIR layout: NIR, R, G picked by name
    want = direct_proba(ref, img[[3, 0, 1]], [FLAIR_MEAN[i] for i in (3, 0, 1)], [FLAIR_STD[i] for i in (3, 0, 1)])
    np.testing.assert_allclose(got, want, atol=1e-5)


class OOMOnBigBatches(torch.nn.Module):
    """Wraps a model and raises CUDA's OOM error for batches larger than ``limit``, like a full GPU."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.sizes = inner, limit, []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return self.inner(x)


def test_oom_halves_batch_and_gives_identical_result(tiny, small_windows):
    loaded, _ = tiny
    img = _image(256, 192, seed=7)  # 3 x 2 = 6 windows of 128 px
    plain = inference.predict_proba_array(loaded, img, batch_size=1)
    wrapper = OOMOnBigBatches(loaded.runner.module, limit=1)
    oom_loaded = models.LoadedModel(card=loaded.card, runner=TorchRunner(wrapper, loaded.device), device=loaded.device,
                                    checksum="x")
    forward = inference.Forward(oom_loaded, batch_size=4)
    batch = np.stack([inference.normalise(loaded.card, img[:, :128, :128])] * 3)
    out = forward(batch)
    assert forward.batch_size == 1 and wrapper.sizes[:3] == [3, 2, 1]
    assert np.array_equal(out[0], out[2])
    got = inference.predict_proba_array(oom_loaded, img, batch_size=4)
    assert np.array_equal(got, plain)


def test_band_mismatch_names_card_and_count(tiny, tmp_path):
    loaded, _ = tiny
    src = write_tif(tmp_path / "rgb.tif", _image(64, 64)[:3], block=256)
    with pytest.raises(RasterError) as ei:
        inference.predict_file(loaded, src, tmp_path / "o.tif", progress=False)
    assert "3 band(s)" in ei.value.problem and "tiny.toml" in ei.value.problem and ei.value.fix
    assert not (tmp_path / "o.tif").exists()


def test_failure_mid_run_leaves_no_output(tiny, tmp_path, monkeypatch, small_windows):
    loaded, _ = tiny
    src = write_tif(tmp_path / "in.tif", _image(200, 200), block=256)
    calls = []

    def boom(self, batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    real = inference.Forward.__call__
    monkeypatch.setattr(inference.Forward, "__call__", boom)
    with pytest.raises(KeyboardInterrupt):
        inference.predict_file(loaded, src, tmp_path / "out.tif", progress=False, batch_size=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "models"]


@pytest.mark.parametrize("case", ["unknown-model", "band-mismatch", "corrupt"])
def test_cli_predict_errors_exit_2_without_traceback(tiny, tmp_path, capsys, case):
    good = write_tif(tmp_path / "good.tif", _image(64, 64), block=256)
    args = ["predict", "--model", "tiny", "--quiet", str(good), str(tmp_path / "o.tif")]
    if case == "unknown-model":
        args[2] = "no-such-model"
    elif case == "band-mismatch":
        args[4] = str(write_tif(tmp_path / "rgb.tif", _image(64, 64)[:3], block=256))
    else:
        bad = tmp_path / "bad.tif"
        bad.write_bytes(good.read_bytes()[:300])
        args[4] = str(bad)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()  # GDAL/rasterio warnings may precede the message; a traceback never may
    assert any(ln.startswith("error: ") for ln in lines) and any(ln.startswith("fix: ") for ln in lines)
    assert "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_cli_predict_writes_cog(tiny, tmp_path, capsys, small_windows):
    src = write_tif(tmp_path / "in.tif", _image(150, 260), block=256)
    assert cli.main(["predict", "--model", "tiny", str(src), str(tmp_path / "o.tif"), "--batch-size", "2"]) == 0
    with rasterio.open(tmp_path / "o.tif") as ds, rasterio.open(src) as a:
        assert ds.transform == a.transform and ds.crs == a.crs and ds.dtypes[0] == "uint8"
    assert "wrote" in capsys.readouterr().out
