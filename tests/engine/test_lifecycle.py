"""A run's life beyond one clean session: stopped before its first checkpoint, resumed with its budget spent,
started from another working directory, refused up front when it cannot choose a best checkpoint."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.engine import trainer
from pixelseg.errors import PixelsegError
from pixelseg.run.checkpoints import load_state

from tests.helpers import tinynet

TINY = dict(model=tinynet.NAME, image_size=(32, 32), batch_size=4, num_workers=0, threads=1, lr=0.01,
            augment="light")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=8, n_val=2, size=(32, 32), seed=7)
    return root


@pytest.fixture(autouse=True)
def tinynet_registered():
    with tinynet.registered():
        yield


class Killed(Exception):
    pass


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(data, tmp_path, monkeypatch, capsys):
    """config.yaml and the other run files are written before step 1; a kill then leaves no last.pt. --resume
    starts it again from step 0 with the saved config (and says so), ending where an uninterrupted run ends."""
    reference = pixelseg.train(data, out=str(tmp_path / "ref"), epochs=2, quiet=True, **TINY)

    def kill(state):
        raise Killed

    monkeypatch.chdir(data.parent)                   # a relative --data: config.yaml stores it resolved
    with pytest.raises(Killed):
        pixelseg.train(data.name, out=str(tmp_path / "k"), epochs=2, quiet=True, on_step=kill, **TINY)
    out = tmp_path / "k"
    assert (out / "config.yaml").is_file() and not (out / "last.pt").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["root"] == str(data.resolve())
    assert json.loads((out / "recipe.json").read_text())["data_root"] == data.name
    with pytest.raises(PixelsegError, match="already holds files"):
        pixelseg.train(data.name, out=str(out), epochs=2, quiet=True, **TINY)
    monkeypatch.chdir(tmp_path)                       # resumed from elsewhere: the stored root still finds the data
    capsys.readouterr()
    pixelseg.train(out=str(out), resume=True)
    assert "no training state saved yet" in " ".join(capsys.readouterr().err.split())   # rich wraps at 80 columns
    done, ref = load_state(out / "last.pt"), load_state(reference / "last.pt")
    assert done["state"]["step"] == ref["state"]["step"] == 4
    for k, v in ref["model"].items():
        assert torch.equal(done["model"][k], v), k


def test_resume_with_the_budget_spent_says_how_to_extend_it(data, tmp_path, capsys):
    run = pixelseg.train(data, out=str(tmp_path / "r"), epochs=1, quiet=True, **TINY)
    metrics = (run / "metrics.json").read_bytes()
    capsys.readouterr()
    pixelseg.train(out=str(run), resume=True)
    err = " ".join(capsys.readouterr().err.split())
    assert "budget is spent (1 of 1 epochs)" in err and "--epochs" in err and "--max-minutes" in err
    assert "val mIoU" not in err                     # nothing was trained or validated again
    assert (run / "metrics.json").read_bytes() == metrics
    pixelseg.train(out=str(run), resume=True, epochs=2, quiet=True)   # the way out it names works
    assert load_state(run / "last.pt")["state"]["epoch"] == 2


def test_no_validation_images_is_refused_up_front(tmp_path):
    generate(tmp_path / "one", n_train=1, n_val=1, size=(32, 32), seed=1)
    shutil.rmtree(tmp_path / "one" / "val")          # one image: nothing is left to hold out for validation
    with pytest.raises(PixelsegError, match="no validation images.*give a val split.*more images"):
        pixelseg.train(tmp_path / "one", out=str(tmp_path / "r"), epochs=1, quiet=True, **TINY)
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_console_plan_and_one_progress_bar(data, tmp_path):
    """On a terminal: the plan table (no model.encoder row for a net without an encoder) and one bar for the
    run with its speed and the last validation mIoU."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    cfg = pixelseg.api.make_config(data=str(data), out=str(tmp_path / "c"), epochs=2, **TINY)
    trainer.train(cfg, console=console)
    text = buf.getvalue()
    assert "model.name" in text and "test-tinynet" in text and "model.encoder" not in text
    assert "steps/s" in text and "img/s" in text and "val mIoU" in text
    assert text.count("epoch 1 ") + text.count("epoch 2 ") >= 2     # the epoch shown on the bar and per validation


def test_masks_that_are_all_ignore_are_refused_up_front(tmp_path):
    import numpy as np
    from PIL import Image
    generate(tmp_path / "d", n_train=4, n_val=2, size=(32, 32), seed=1)
    for mask in (tmp_path / "d" / "train" / "masks").iterdir():
        Image.fromarray(np.full((32, 32), 255, np.uint8)).save(mask)
    with pytest.raises(PixelsegError, match="every train mask is all ignore \\(255\\).*label some pixels"):
        pixelseg.train(tmp_path / "d", out=str(tmp_path / "r"), epochs=1, quiet=True, **TINY)
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.slow
def test_resume_after_the_time_budget_says_it_is_spent(data, tmp_path, capsys):
    run = pixelseg.train(data, out=str(tmp_path / "t"), max_minutes=0.02, quiet=True, **TINY)
    step = load_state(run / "last.pt")["state"]["step"]
    capsys.readouterr()
    pixelseg.train(out=str(run), resume=True)
    assert "budget is spent" in " ".join(capsys.readouterr().err.split())
    assert load_state(run / "last.pt")["state"]["step"] == step
