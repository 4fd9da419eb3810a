"""Model cards and checkpoint loading: every IGN format loads exactly; bad cards and weights say why."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from flair_viz.cli import main as cli
from flair_viz.core import classes
from flair_viz.core.errors import ModelError
from flair_viz.predict import cards, models
from tests.model_fixtures import make_model, tiny_unet, write_card

torch.set_num_threads(1)


@pytest.mark.parametrize("fmt", ["lightning", "pth", "pth-wrapped", "safetensors"])
def test_each_checkpoint_format_loads_to_identical_outputs(model_dir, fmt):
    card_path, ref = make_model(model_dir, f"m-{fmt}", fmt)
    loaded = models.load_model(cards.get_card(f"m-{fmt}"), "cpu")
    x = torch.randn(1, 5, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded.runner.module(x), ref(x))
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.runner.module.state_dict()[k], v), k


def test_missing_and_unexpected_keys_are_listed_with_the_card(model_dir):
    ref = tiny_unet()
    sd = dict(ref.state_dict())
    dropped = "segmentation_head.0.bias"
    del sd[dropped]
    sd["model.seg_model.aux_head.weight"] = torch.zeros(3)
    torch.save({"state_dict": sd}, model_dir / "bad.ckpt")
    card = write_card(model_dir, "bad", "bad.ckpt")
    with pytest.raises(ModelError) as ei:
        models.load_model("bad", "cpu")
    msg = ei.value.problem
    assert dropped in msg and "aux_head.weight" in msg
    assert "1 missing" in msg and "1 unexpected" in msg
    assert str(card) in msg


def test_shape_mismatch_names_key_and_both_shapes(model_dir):
    make_model(model_dir, "m19", "pth")
    # same weights, but a card that claims 13 classes
    write_card(model_dir, "m13", "m19.pth", classes=13)
    with pytest.raises(ModelError) as ei:
        models.load_model("m13", "cpu")
    msg = ei.value.problem
    assert "segmentation_head.0.weight (checkpoint (19, 8, 3, 3), model (13, 8, 3, 3))" in msg
    assert "m13.toml" in msg


def test_long_key_lists_are_truncated_with_a_count(model_dir):
    make_model(model_dir, "small", "pth")
    write_card(model_dir, "deeper", "small.pth", arch_params={"encoder_depth": 4, "decoder_channels": [16, 8, 8, 8]})
    with pytest.raises(ModelError) as ei:
        models.load_model("deeper", "cpu")
    own = set(models.build_module(cards.get_card("deeper")).state_dict())
    saved = set(tiny_unet().state_dict())
    n_missing = len(own - saved)
    assert n_missing > 8
    assert f"{n_missing} missing key(s)" in ei.value.problem
    assert f"and {n_missing - 8} more" in ei.value.problem


def test_corrupt_checkpoint_is_a_model_error(model_dir):
    (model_dir / "junk.pth").write_bytes(b"not a checkpoint at all")
    write_card(model_dir, "junk", "junk.pth")
    with pytest.raises(ModelError) as ei:
        models.load_model("junk", "cpu")
    assert "junk.pth" in ei.value.problem and ei.value.fix


def test_sha256_mismatch_is_refused(model_dir):
    make_model(model_dir, "m", "pth")
    real = hashlib.sha256((model_dir / "m.pth").read_bytes()).hexdigest()
    write_card(model_dir, "m-ok", "m.pth", extra=f'sha256 = "{real}"')
    assert models.load_model("m-ok", "cpu").checksum == real
    write_card(model_dir, "m-bad", "m.pth", extra=f'sha256 = "{"0" * 64}"')
    with pytest.raises(ModelError, match="sha256"):
        models.load_model("m-bad", "cpu")


@pytest.mark.parametrize("bad_line, field", [
    ('in_bands = ["R", "G", "Q"]', "in_bands"),
    ("mean = [1.0, 2.0]", "mean"),
    ("std = [1.0, 1.0, 1.0, 1.0, 0.0]", "std"),
    ('nomenclature = "cosia2"', "nomenclature"),
    ("classes = 40", "classes"),
    ('arch = 5', "arch"),
    ('colour = "blue"', "colour"),
])
def test_bad_cards_name_file_and_field(model_dir, bad_line, field):
    good = write_card(model_dir, "c", "c.pth").read_text()
    key = bad_line.split(" =")[0]
    lines = [ln for ln in good.splitlines() if not ln.startswith(f"{key} =")]
    lines.insert(1, bad_line)
    (model_dir / "c.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError) as ei:
        cards.parse_card(model_dir / "c.toml")
    assert f"field `{field}`" in ei.value.problem and "c.toml" in ei.value.problem
    # an invalid card is reported by scan_cards, not silently dropped
    found, problems = cards.scan_cards()
    assert "c" not in {c.id for c in found} and any("c.toml" in p for p in problems)


def test_unknown_arch_is_caught_when_listed_with_the_cli_and_when_loaded(model_dir, capsys):
    """Listing cards skips the slow smp import; `models list` and loading still check the arch."""
    from flair_viz.cli.main import main

    good = write_card(model_dir, "c", "c.pth").read_text()
    lines = [ln for ln in good.splitlines() if not ln.startswith("arch =")]
    (model_dir / "c.toml").write_text("\n".join([lines[0], 'arch = "NotAnArch"', *lines[1:]]) + "\n")
    card = cards.parse_card(model_dir / "c.toml")
    with pytest.raises(ModelError) as ei:
        cards.check_arch(card)
    assert "field `arch`" in ei.value.problem and "c.toml" in ei.value.problem
    (model_dir / "c.pth").write_bytes(b"")  # the arch check comes before the checkpoint is read
    with pytest.raises(ModelError, match="NotAnArch"):
        models.load_model(card, "cpu")
    assert main(["models", "list"]) == 2
    assert "NotAnArch" in capsys.readouterr().err


def test_missing_field_and_unknown_id(model_dir):
    make_model(model_dir, "known", "pth")
    (model_dir / "nofield.toml").write_text('id = "nofield"\narch = "Unet"\n')
    with pytest.raises(ModelError, match="field `encoder` is missing"):
        cards.parse_card(model_dir / "nofield.toml")
    with pytest.raises(ModelError) as ei:
        cards.get_card("nope")
    assert "known" in ei.value.problem and "nope" in ei.value.problem


def test_flairhub_outputs_map_to_flair1_values(model_dir):
    make_model(model_dir, "hub", "safetensors", nomenclature="flairhub")
    values = cards.get_card("hub").output_values()
    for i, key in enumerate(classes.FLAIRHUB_ORDER):
        assert values[i] == classes.BY_KEY[key].value
    assert sorted(values.tolist()) == list(range(1, 20))


def test_models_are_cached_per_checksum(model_dir):
    make_model(model_dir, "c1", "pth", seed=0)
    a = models.load_model("c1", "cpu")
    assert models.load_model("c1", "cpu") is a
    make_model(model_dir, "c1", "pth", seed=1)  # new weights, same card id
    b = models.load_model("c1", "cpu")
    assert b is not a and b.checksum != a.checksum
    w = "segmentation_head.0.weight"
    assert not torch.equal(a.runner.module.state_dict()[w], b.runner.module.state_dict()[w])


def test_cli_models_list_shows_cards_and_demo_flag(model_dir, capsys):
    make_model(model_dir, "shown", "pth", demo=True)
    rc = cli.main(["models", "list"])
    out = capsys.readouterr().out
    assert "shown" in out and "DEMO" in out
    expected_rc = 2 if cards.scan_cards()[1] else 0
    assert rc == expected_rc


def test_demo_card_in_repo_is_valid_and_flagged():
    card = cards.get_card("demo-unet-r18")
    assert card.demo is True
    assert "DEMO" in card.title and "not a benchmark" in card.description and "never saw" in card.description
    assert card.checkpoint is not None and card.checkpoint.stat().st_size < 10_000_000
    loaded = models.load_model(card, "cpu")
    assert loaded.checksum == card.sha256
    assert np.array_equal(card.output_values(), np.arange(1, 20))
