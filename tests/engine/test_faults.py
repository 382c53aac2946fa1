"""Faults: kill -9 then --resume, NaN/inf loss, unwritable run folder, full disk, failed saves."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pixelseg
from pixelseg.data.tools.synth import generate
import pixelseg.run.folder
from pixelseg.engine import setup
from pixelseg.run.checkpoints import load_state, save_state
from pixelseg.errors import PixelsegError

from tests.helpers import tinynet

TINY = dict(model=tinynet.NAME, image_size=(32, 32), batch_size=4, num_workers=0, threads=1, lr=0.01,
            augment="light", quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=4, size=(32, 32), seed=7)
    return root


@pytest.fixture(autouse=True)
def tinynet_registered():
    with tinynet.registered():
        yield


def _cli(*args: str) -> list[str]:
    return [sys.executable, tinynet.__file__, *args]


@pytest.mark.parametrize("model", [tinynet.NAME, tinynet.DROPOUT_NAME])
@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(data, tmp_path, model):
    """SIGKILL (no handler runs) at a random moment; the folder holds a loadable state and --resume
    continues from it. Saving every step, the finished run has the uninterrupted run's weights bit for
    bit: model, optimizer, schedule, RNG and data position all came back (with dropout too)."""
    reference = pixelseg.train(data, out=str(tmp_path / "ref"), epochs=10, **dict(TINY, model=model))
    out = tmp_path / "k"
    first = _cli("train", "--data", str(data), "--out", str(out), "--epochs", "10", "--model", model,
                 "--image-size", "32", "--batch-size", "4", "--num-workers", "0", "--threads", "1", "--lr", "0.01",
                 "--augment", "light", "--checkpoint-minutes", "0", "--no-report")
    p = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not (out / "last.pt").exists():
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.0, 0.2))   # then somewhere in a step, a validation or a save
    assert p.poll() is None, f"finished before the kill: {p.communicate()[1][-2000:]}"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    killed_at = load_state(out / "last.pt")["state"]["step"]          # never a half-written file
    assert 0 < killed_at < 40
    (out / ".last.x1y2.tmp.pt").write_bytes(b"half a checkpoint")   # what a kill inside a save leaves
    again = _cli("train", "--out", str(out), "--resume", "--num-workers", "0", "--threads", "1", "--no-report")
    r = subprocess.run(again, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"step {killed_at}," in r.stderr                          # "resumed RUN at epoch E (+N images), step S, ..."
    assert not list(out.glob(".*.tmp*"))
    done, ref = load_state(out / "last.pt"), load_state(reference / "last.pt")
    assert done["state"]["epoch"] == 10 and done["state"]["step"] == ref["state"]["step"] == 40
    for k, v in ref["model"].items():
        assert torch.equal(done["model"][k], v), k
    m_out, m_ref = (json.loads((p / "metrics.json").read_text()) for p in (out, reference))
    assert m_out["mIoU"] == pytest.approx(m_ref["mIoU"], abs=1e-12)
    # the intervals too, whether the best epoch came before the kill (recomputed at the end) or after it
    assert m_out["mIoU_ci"] == pytest.approx(m_ref["mIoU_ci"], abs=1e-12) and m_out["ci"] == m_ref["ci"]
    # each session is recorded: the first run and its resumes
    assert len(json.loads((out / "environment.json").read_text())["sessions"]) == 2


E2E = dict(model="unet", image_size=(48, 56), batch_size=4, num_workers=0, threads=2, quiet=True)


@pytest.mark.parametrize("options, sig", [pytest.param(E2E, signal.SIGTERM, marks=pytest.mark.slow),
                                          (dict(TINY, model=tinynet.DROPOUT_NAME), signal.SIGTERM),
                                          (dict(TINY, model=tinynet.DROPOUT_NAME), signal.SIGINT)],
                         ids=["unet-SIGTERM", "dropout-SIGTERM", "dropout-SIGINT"])
def test_resume_after_a_signal_is_exact(tmp_path, options, sig):
    """Stopped by SIGTERM (or Ctrl-C) mid-epoch and resumed == never stopped: the same weights bit for bit
    (seeded per-epoch data order, per-sample augmentation seeds, optimizer state and RNG in last.pt; the
    validation the stop makes mid-epoch draws nothing from the global RNG, so dropout replays too)."""
    data = tmp_path / "synth"
    generate(data, n_train=16, n_val=6, size=(64, 64), seed=3)
    a = pixelseg.train(data, out=str(tmp_path / "a"), epochs=2, **options)

    def signal_at_step_6(state):        # the 2nd step of epoch 2 (4 steps an epoch)
        if state.step == 6:
            os.kill(os.getpid(), sig)

    with pytest.raises(KeyboardInterrupt):
        pixelseg.train(data, out=str(tmp_path / "b"), epochs=2, on_step=signal_at_step_6, **options)
    mid = load_state(tmp_path / "b" / "last.pt")["state"]
    assert mid["epoch"] == 1 and mid["offset"] == 8 and mid["step"] == 6
    b = pixelseg.train(out=str(tmp_path / "b"), resume=True, quiet=True)
    sa, sb = load_state(a / "last.pt"), load_state(b / "last.pt")
    assert sb["state"]["epoch"] == 2 and sb["state"]["step"] == sa["state"]["step"] == 8
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert mb["mIoU"] == ma["mIoU"] and mb["mIoU_ci"] == ma["mIoU_ci"] and mb["epoch"] == ma["epoch"]


def test_nan_loss_stops_naming_the_step_and_saves_nothing_broken(data, tmp_path, monkeypatch):
    real_build = setup.build_loss

    def build(*args, **kwargs):
        loss = real_build(*args, **kwargs)
        calls = {"n": 0}
        forward = loss.forward

        def poisoned(logits, target):
            calls["n"] += 1
            value = forward(logits, target)
            return value * float("nan") if calls["n"] == 3 else value
        loss.forward = poisoned
        return loss

    monkeypatch.setattr(setup, "build_loss", build)
    out = tmp_path / "nan"
    with pytest.raises(PixelsegError, match=r"loss is nan at step 3 \(epoch 1\)"):
        pixelseg.train(data, out=str(out), epochs=2, checkpoint_minutes=0, **TINY)
    saved = load_state(out / "last.pt")
    assert saved["state"]["step"] == 2                       # the last good step, not the broken one
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


def test_nan_weights_are_never_saved(data, tmp_path, monkeypatch):
    """Weights that went non-finite (a huge update with a finite loss) are caught at the next save."""
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    out = tmp_path / "inf"
    with pytest.raises(PixelsegError, match="NaN/inf"):
        pixelseg.train(data, out=str(out), epochs=1, checkpoint_minutes=0, **TINY)
    assert not (out / "last.pt").exists() and not (out / "model.safetensors").exists()


def test_unwritable_run_folder_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    t0 = time.time()
    with pytest.raises(PixelsegError, match="cannot write the run folder"):
        pixelseg.train(data, out=str(blocker / "run"), epochs=1, **TINY)
    assert time.time() - t0 < 30


def test_full_disk_fails_before_training(data, tmp_path, monkeypatch):
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**20, 9 * 2**20, 2**20))
    with pytest.raises(PixelsegError, match=r"only 1 MiB free, the checkpoints need about \d+ MiB"):
        pixelseg.train(data, out=str(tmp_path / "full"), epochs=1, **TINY)
    assert not (tmp_path / "full" / "last.pt").exists()


def test_failed_save_is_a_clear_error_and_keeps_the_previous_state(data, tmp_path, monkeypatch):
    out = tmp_path / "enospc"
    calls = {"n": 0}

    def save(path, blob):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        save_state(path, blob)

    monkeypatch.setattr(pixelseg.run.folder, "save_state", save)
    with pytest.raises(PixelsegError, match="last.pt: cannot save the training state \\(No space left on device\\)"):
        pixelseg.train(data, out=str(out), epochs=1, checkpoint_minutes=0, **TINY)
    assert load_state(out / "last.pt")["state"]["step"] == 2


def test_fp16_on_cpu_is_refused_with_the_alternative(data, tmp_path):
    with pytest.raises(PixelsegError, match="--amp fp16 needs a CUDA GPU.*bf16"):
        pixelseg.train(data, out=str(tmp_path / "fp16"), epochs=1, amp="fp16", device="cpu", **TINY)


def test_bf16_and_channels_last_on_cpu(data, tmp_path):
    plain = pixelseg.train(data, out=str(tmp_path / "plain"), epochs=1, device="cpu", **TINY)
    fast = pixelseg.train(data, out=str(tmp_path / "bf16"), epochs=1, device="cpu", amp="bf16", channels_last=True, **TINY)
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(fast / "model.safetensors"))
    # bf16 autocast really ran (the weights differ from fp32) yet trained the same net (they stay close)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=0.05, rtol=0.05)
    assert json.loads((fast / "metrics.json").read_text())["mIoU"] is not None
