"""Careless input at the command line, as a user's shell runs it (a subprocess, from another working folder):
exit 2, no traceback, one line naming the flag or the file, and nothing the user had is changed."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelseg.inference.bench import model_run


def pixelseg(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelseg", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def refused(p: subprocess.CompletedProcess, *words: str) -> str:
    """The one line of a refusal, checked: exit 2, no traceback, every word in it."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert "error:" in lines[0] and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory):
    base = tmp_path_factory.mktemp("hardening")
    run = model_run("unet", (32, 32), 3, base / "run", encoder="resnet18")
    images = base / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    return run, images


@pytest.mark.parametrize("flag, value, words", [
    ("--num-workers", "-1", ["--num-workers", "0 or more"]),
    ("--seed", "-1", ["--seed", "-1"]),
    ("--threads", "0", ["--threads"]),
    ("--batch-size", "0", ["--batch-size", "positive"]),
    ("--epochs", "two", ["--epochs", "two"]),
    ("--schedule", "step", ["--schedule", "step"]),
])
def test_train_bad_flag_values(tmp_path, flag, value, words):
    refused(pixelseg("train", "--data", tmp_path, flag, value, cwd=tmp_path), *words)
    assert list(tmp_path.iterdir()) == []                     # nothing written


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "0"], ["--batch-size", "positive"]),
    (["--batch-size", "-1"], ["--batch-size", "positive"]),
    (["--threads", "0"], ["--threads", "positive"]),
])
def test_predict_bad_flag_values(run_and_images, tmp_path, args, words):
    run, images = run_and_images
    refused(pixelseg("predict", run, images, "--out", tmp_path / "o", *args, cwd=tmp_path), *words)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_predict_out_is_a_file(run_and_images, tmp_path):
    run, images = run_and_images
    target = tmp_path / "labels.png"
    target.write_bytes(b"the user's file")
    refused(pixelseg("predict", run, images, "--out", target, cwd=tmp_path), str(target), "is a file")
    assert target.read_bytes() == b"the user's file"


@pytest.mark.slow
def test_predict_into_the_input_folder_is_refused(run_and_images, tmp_path):
    run, images = run_and_images
    before = tree_hash(images)
    refused(pixelseg("predict", run, images, "--out", images, cwd=tmp_path), str(images), "input folder")
    # an input file named, with its own folder as --out: its label map would replace it
    refused(pixelseg("predict", run, images / "im1.png", "--out", images, cwd=tmp_path), "im1.png", "input image")
    # the same folder written differently (relative, with ..) is still the input folder
    refused(pixelseg("predict", run, images, "--out", f"{images.name}/../{images.name}", cwd=images.parent),
            "input folder")
    assert tree_hash(images) == before                        # inputs byte-identical, nothing added


def test_predict_a_video_onto_itself_is_refused(run_and_images, tmp_path):
    run, _ = run_and_images
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    refused(pixelseg("predict", run, video, "--out", video, cwd=tmp_path), "input video")
    assert video.read_bytes() == b"\x00" * 64


def test_train_out_is_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    refused(pixelseg("train", "--data", tmp_path, "--out", target, cwd=tmp_path), str(target), "is a file")
    refused(pixelseg("train", "--data", tmp_path, "--out", target / "run", cwd=tmp_path), str(target), "file")
    assert target.read_text() == "keep me"


def test_bad_config_value_is_not_hidden_by_a_flag(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: fast\n")
    line = refused(pixelseg("train", "--config", cfg, "--lr", "0.01", "--out", tmp_path / "r", cwd=tmp_path),
                   str(cfg), "train.lr", "fast")
    assert "a number" in line
    cfg.write_text("train:\n  seed: -3\n")
    refused(pixelseg("train", "--config", cfg, "--seed", "1", cwd=tmp_path), str(cfg), "train.seed")
    assert not (tmp_path / "r").exists()


def test_a_flag_overrides_a_valid_config_value(tmp_path, monkeypatch):
    """The documented order: file first, then flags (in-process, the training itself replaced)."""
    from pixelseg import api
    from pixelseg.cli import main
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"train": {"lr": 0.5, "epochs": 3}}))       # JSON is YAML
    seen = {}

    def fake_train(data, model, *, config, resume, report=False, **opts):
        seen["cfg"] = api.make_config(config, data=data, model=model, **opts)
        return tmp_path / "run"
    monkeypatch.setattr(api, "train", fake_train)
    assert main(["train", "--config", str(cfg), "--lr", "0.01", "--no-report"]) == 0
    assert seen["cfg"].train.lr == 0.01 and seen["cfg"].train.epochs == 3
