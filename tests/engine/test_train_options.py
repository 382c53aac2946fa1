"""Training options: gradient accumulation, EMA, clipping, TensorBoard, the environment record, and
reproducing a run from its folder's config.yaml."""
from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.run.checkpoints import load_state

from tests.helpers import tinynet

TINY = dict(model=tinynet.NAME, image_size=(32, 32), num_workers=0, threads=1, lr=0.01, augment="light",
            quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=4, size=(32, 32), seed=11)
    return root


@pytest.fixture(autouse=True)
def tinynet_registered():
    with tinynet.registered():
        yield


def test_accumulation_equals_the_larger_batch(data, tmp_path):
    """batch 2 x accumulate 2 takes the optimizer steps of batch 4 (same images, same schedule)."""
    big = pixelseg.train(data, out=str(tmp_path / "b4"), epochs=2, batch_size=4, **TINY)
    acc = pixelseg.train(data, out=str(tmp_path / "b2x2"), epochs=2, batch_size=2, accumulate=2, **TINY)
    sa, sb = load_state(big / "last.pt"), load_state(acc / "last.pt")
    assert sb["state"]["step"] == 16 and sb["state"]["updates"] == sa["state"]["updates"] == 8
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    # and accumulation is not a no-op: batch 2 without it ends elsewhere
    small = pixelseg.train(data, out=str(tmp_path / "b2"), epochs=2, batch_size=2, **TINY)
    sc = load_state(small / "last.pt")
    assert any(not torch.allclose(sc["model"][k], v, atol=1e-3) for k, v in sa["model"].items())


def test_ema_weights_are_evaluated_and_saved(data, tmp_path):
    run = pixelseg.train(data, out=str(tmp_path / "ema"), epochs=1, batch_size=4, ema=0.5, **TINY)
    state = load_state(run / "last.pt")
    saved = load_file(str(run / "model.safetensors"))
    ema = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) == 4                          # one update per optimizer step
    for k, v in saved.items():
        assert torch.equal(v, ema[k]), k                                   # the EMA is what was saved...
    assert any(not torch.equal(saved[k], state["model"][k]) for k in saved)   # ...not the raw weights


def test_clipping_clips_every_step_at_the_given_norm(data, tmp_path, monkeypatch):
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        norm = real(params, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        seen.append((max_norm, float(norm), float(after)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    pixelseg.train(data, out=str(tmp_path / "clip"), epochs=1, batch_size=4, clip_grad=0.05, **TINY)
    assert len(seen) == 4
    assert all(m == 0.05 and after <= 0.05 * 1.001 for m, _, after in seen)
    assert any(before > 0.05 for _, before, _ in seen)                     # the limit was reached


def test_tensorboard_logs_and_environment_record(data, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    repo = tmp_path / "code"                 # the user's code is a git repository: its commit is recorded
    repo.mkdir()
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("print()\n")
    subprocess.run(git + ["add", "train.py"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=repo, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    run = pixelseg.train(data, out=str(tmp_path / "tb"), epochs=2, batch_size=4, logger="tensorboard", seed=3, **TINY)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/step_loss")] == list(range(1, 9))
    assert len(acc.Scalars("val/mIoU")) == 2
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "data_wait" in rows[0]                       # CSV is written as well
    env = json.loads((run / "environment.json").read_text())["sessions"][0]
    assert env["git"] == {"commit": commit, "dirty": False, "root": str(repo.resolve())}
    assert env["seed"] == 3 and env["versions"]["torch"] == version("torch")
    assert env["hardware"]["cores"] >= 1 and env["distributed"]["world_size"] == 1
    assert 0 <= json.loads((run / "metrics.json").read_text())["data_wait"] < 1


def test_run_is_reproduced_from_its_config(data, tmp_path):
    first = pixelseg.train(data, out=str(tmp_path / "first"), epochs=1, batch_size=4, **TINY)
    again = pixelseg.train(config=first / "config.yaml", out=str(tmp_path / "again"), quiet=True)
    a, b = load_file(str(first / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
