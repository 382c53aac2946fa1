"""No silent surprises after training: the end-of-run verdict (terminal, metrics.json, report banner), a resume
that accepts the same flags and names the ones that differ, a budget change that says what it does to the
learning rate, honest image-vs-crop counts, and the encoder's learning-rate share and frozen BatchNorm."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.engine.schedule import Schedule, freeze_batchnorm, param_groups
from pixelseg.engine.verdict import MIN_STEPS, verdict
from pixelseg.errors import PixelsegError

from tests.helpers import tinynet

TINY = dict(model=tinynet.NAME, image_size=(32, 32), num_workers=0, threads=1, lr=0.01, augment="none",
            batch_size=4, quiet=True)
NAMES = ("background", "a", "b")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=4, size=(32, 32), seed=3)
    return root


@pytest.fixture(autouse=True)
def tinynet_registered():
    with tinynet.registered():
        yield


# ------------------------------------------------------------------------------------------------ verdict

def _matrix(truth_pred: dict[tuple[int, int], int]) -> np.ndarray:
    m = np.zeros((3, 3), np.int64)
    for (t, p), n in truth_pred.items():
        m[t, p] = n
    return m


def test_verdict_names_a_model_that_predicts_one_class():
    m = _matrix({(0, 0): 800, (1, 0): 100, (2, 0): 100})
    out = verdict(m, NAMES, 500, [], budgeted=True)
    assert len(out) == 1 and "predicts 'background' almost everywhere (100.0%" in out[0]
    assert "--max-minutes" in out[0]
    assert "--epochs" in verdict(m, NAMES, 500, [], budgeted=False)[0]


def test_verdict_names_classes_never_predicted():
    m = _matrix({(0, 0): 700, (1, 1): 150, (2, 0): 150})
    out = verdict(m, NAMES, 500, [], budgeted=True)
    assert len(out) == 1 and "never predicted: 'b'" in out[0]


def test_verdict_on_few_steps_and_a_rising_curve():
    good = _matrix({(0, 0): 700, (1, 1): 150, (2, 2): 150})
    assert verdict(good, NAMES, 500, [{"val_mIoU": 0.70}, {"val_mIoU": 0.71}], True) == []
    few = verdict(good, NAMES, MIN_STEPS - 1, [], True)
    assert len(few) == 1 and f"only {MIN_STEPS - 1} optimizer steps" in few[0]
    rising = verdict(good, NAMES, 500, [{"val_mIoU": 0.5}, {"val_mIoU": 0.6}], True)
    assert len(rising) == 1 and "still rising" in rising[0] and "0.500 -> 0.600" in rising[0]


@pytest.mark.slow
def test_a_short_run_says_so_in_metrics_and_the_report(data, tmp_path, capsys):
    run = pixelseg.train(data, out=str(tmp_path / "short"), epochs=1, report=True, **{**TINY, "quiet": False})
    metrics = json.loads((run / "metrics.json").read_text())
    assert any("only 4 optimizer steps" in v for v in metrics["verdict"])
    assert "only 4 optimizer steps" in " ".join(capsys.readouterr().err.split())
    html = (run / "report" / "report.html").read_text()
    assert 'class="warn" role="alert">only 4 optimizer steps' in html


# ------------------------------------------------------------------------------------------------ resume

def test_resume_accepts_the_same_flags_and_names_a_change(data, tmp_path, capsys):
    out = str(tmp_path / "r")
    pixelseg.train(data, out=out, epochs=1, **TINY)
    # the last command again with --resume and a larger budget: accepted, and the schedule change is said
    pixelseg.train(data, out=out, epochs=2, resume=True, **{**TINY, "quiet": False})
    err = " ".join(capsys.readouterr().err.split())
    assert "the budget changed (1 epochs -> 2 epochs)" in err and "learning rate goes from" in err
    with pytest.raises(PixelsegError, match=r"these differ \(lr: saved 0\.01, given 0\.02\)"):
        pixelseg.train(data, out=out, epochs=3, resume=True, **{**TINY, "lr": 0.02})
    with pytest.raises(PixelsegError, match=r"did you mean 'epochs'"):
        pixelseg.train(data, out=out, epoch=3, resume=True, **TINY)
    with pytest.raises(PixelsegError, match=r"did you mean 'max_minutes'"):
        pixelseg.train(data, out=str(tmp_path / "new"), max_minute=1, **TINY)


# ------------------------------------------------------------------------------------------------ counts

def test_the_plan_counts_images_and_crops_apart(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")          # the plan's table on one line per row
    root = tmp_path / "big"
    generate(root, n_train=2, n_val=1, size=(128, 128), seed=1)
    pixelseg.train(root, out=str(tmp_path / "run"), epochs=1, scale=1.0, crop=(32, 32),
                   **{**TINY, "image_size": None, "quiet": False})
    err = " ".join(capsys.readouterr().err.split())
    assert "2 train / 1 val images (32 crops an epoch)" in err


# ------------------------------------------------------------------------------------------------ encoder

def _unet():
    from pixelseg.models import build_model
    return build_model("unet", 3, 3, "resnet18", None)


def test_encoder_learning_rate_share():
    model = _unet()
    groups = param_groups(model, 1e-4, 0.1)
    enc = {id(p) for p in model.net.encoder.parameters()}
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    for g in groups:
        assert g["params"], g["lr_scale"]
        inside = {id(p) in enc for p in g["params"]}
        assert inside == {g["lr_scale"] == 0.1}
    opt = torch.optim.AdamW(groups, lr=1.0)
    Schedule(1e-3, "poly", 100, float("inf"), warmup_steps=0).set_lr(opt, 10, 0.0)
    rates = {g["lr_scale"]: g["lr"] for g in opt.param_groups}
    assert rates[0.1] == pytest.approx(0.1 * rates[1.0]) and rates[1.0] > 0
    assert len(param_groups(model, 1e-4)) == 2          # the default keeps the two groups (old states resume)


@pytest.mark.slow
def test_frozen_encoder_batchnorm_keeps_its_statistics(data, tmp_path):
    model = _unet()
    assert freeze_batchnorm(model.net.encoder) == sum(isinstance(m, torch.nn.BatchNorm2d)
                                                      for m in model.net.encoder.modules())
    run = pixelseg.train(data, "unet", encoder="resnet18", encoder_weights="none", encoder_bn="frozen",
                         encoder_lr_scale=0.5, out=str(tmp_path / "frozen"), epochs=1, image_size=(32, 32),
                         batch_size=4, num_workers=0, threads=1, augment="none", quiet=True)
    w = load_file(str(run / "model.safetensors"))
    enc_means = [v for k, v in w.items() if k.startswith("net.encoder.") and k.endswith("running_mean")]
    dec_means = [v for k, v in w.items() if k.startswith("net.decoder.") and k.endswith("running_mean")]
    assert enc_means and all(torch.equal(v, torch.zeros_like(v)) for v in enc_means)   # untouched (fresh init)
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in dec_means)               # the decoder's moved
    enc_gamma = [v for k, v in w.items() if k.startswith("net.encoder.") and k.endswith("bn1.weight")]
    assert all(torch.equal(v, torch.ones_like(v)) for v in enc_gamma)


def test_encoder_options_on_a_model_without_an_encoder_are_refused(data, tmp_path):
    with pytest.raises(PixelsegError, match="has no separate encoder"):
        pixelseg.train(data, out=str(tmp_path / "x"), epochs=1, encoder_bn="frozen", **TINY)
