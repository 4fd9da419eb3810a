"""Model cards without torch: `models list` stays instant, the arch check agrees with smp, one demo flag."""

from __future__ import annotations

import os
import subprocess
import sys

from flair_viz.predict import cards
from tests.helpers import REPO
from tests.model_fixtures import write_card


def test_models_list_imports_neither_torch_nor_smp(model_dir):
    write_card(model_dir, "listed", "listed.pth")
    code = ("import sys\nfrom flair_viz.cli.main import main\nrc = main(['models', 'list'])\n"
            "print('RC', rc, 'torch' in sys.modules, 'segmentation_models_pytorch' in sys.modules)\n")
    env = {**os.environ, "FLAIR_VIZ_MODELS": str(model_dir)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "listed" in out.stdout  # the card was listed (checked, arch included), not skipped
    assert out.stdout.strip().splitlines()[-1] == "RC 0 False False"


def test_arch_names_read_from_source_are_smps_models():
    import segmentation_models_pytorch as smp
    import torch

    names = cards.smp_architectures()
    exported = {n for n in dir(smp) if isinstance(getattr(smp, n), type)
                and issubclass(getattr(smp, n), smp.base.SegmentationModel)}
    assert names == exported and {"Unet", "FPN", "DeepLabV3Plus", "Segformer"} <= names
    assert all(issubclass(getattr(smp, n), torch.nn.Module) for n in names)


def test_is_demo_follows_the_card_and_is_false_for_unknown_ids(model_dir):
    write_card(model_dir, "shown-demo", "a.pth", demo=True)
    write_card(model_dir, "real", "b.pth")
    assert cards.is_demo("shown-demo") is True
    assert cards.is_demo("real") is False
    assert cards.is_demo("no-such-model") is False
    (model_dir / "broken.toml").write_text('id = "broken"\n')  # an invalid card is no demo model either
    assert cards.is_demo("broken") is False


def test_cards_come_in_folder_order_so_fine_tuned_ones_never_become_the_default(model_dir, _isolated_user_data):
    """$FLAIR_VIZ_MODELS, then the repo's models/, then the user's fine-tuned models, whatever their paths sort as."""
    write_card(model_dir, "zz-given", "a.pth")
    user_models = _isolated_user_data / "models"  # where `flair-viz finetune` writes
    user_models.mkdir(exist_ok=True)
    write_card(user_models, "aa-finetuned", "b.pth")
    ids = [c.id for c in cards.scan_cards()[0]]
    repo_ids = sorted(p.stem for p in (REPO / "models").glob("*.toml"))
    assert ids[0] == "zz-given" and ids[-1] == "aa-finetuned" and "demo-unet-r18" in ids
    assert ids.index("demo-unet-r18") < ids.index("aa-finetuned") and len(ids) == 2 + len(repo_ids)


def test_a_default_card_comes_first_in_its_folder_and_user_folders_still_come_first(model_dir, _isolated_user_data):
    """`default = true` picks a folder's first model (what every page offers first), never above a user's folder."""
    write_card(model_dir, "aa-first-by-name", "a.pth")
    write_card(model_dir, "zz-default", "b.pth", extra="default = true")
    ids = [c.id for c in cards.scan_cards()[0]]
    assert ids[:2] == ["zz-default", "aa-first-by-name"]
    shipped = [c for c in cards.scan_cards()[0] if c.card_path.parent == (REPO / "models").resolve()]
    flagged = [c.id for c in shipped if c.default]
    assert [c.id for c in shipped][:len(flagged)] == flagged  # the shipped default, if any, leads the repo's cards
    assert cards.get_card("zz-default").to_json()["default"] is True
