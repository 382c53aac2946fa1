"""The command line's options: declared once (the config fields) and shown with help and defaults; commands
listed in the order of the work; `models` readable at 80 columns; `evaluate RUN` finds the run's own data."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixelseg import api
from pixelseg.cli import build_parser, main
from pixelseg.config import config_fields, option_keys


def _sub(name: str) -> argparse.ArgumentParser:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[name]


def _cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelseg", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def test_help_lists_commands_in_workflow_order():
    out = _cli("--help").stdout
    listed = re.findall(r"^    ([a-z-]+)", out, re.M)
    assert listed == ["quickstart", "verify-dataset", "data", "models", "train", "evaluate", "report", "compare",
                      "tune-threshold", "calibrate", "audit", "suggest", "predict", "export", "bench", "serve", "push", "pull",
                      "runs", "env", "completion"]


def test_every_config_field_is_a_train_flag_with_help_and_default():
    train = _sub("train")
    by_dest = {a.dest: a for a in train._actions}
    for short, key in option_keys().items():
        action = by_dest[short]
        assert action.option_strings[0] == f"--{short.replace('_', '-')}"
        assert action.default is None, key                  # a flag not given leaves the config file's value
        assert action.help and "(default: " in action.help and key in action.help, key
    text = _cli("train", "--help", env={**os.environ, "COLUMNS": "200"}).stdout
    for flag, default in (("--weight-decay", "0.0001"), ("--warmup-steps", "the first few percent"),
                          ("--epochs", "50"), ("--lr", "the model's recipe"), ("--seed", "0")):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(flag))
        assert f"(default: {default}" in line, line
    assert "--channels-last, --no-channels-last" in text   # tri-state: both answers have a flag
    assert "--semi-soft, --no-semi-soft" in text           # on by default: it can be turned off


def test_choices_and_bounds_come_from_the_config_table():
    train = _sub("train")
    by_dest = {a.dest: a for a in train._actions}
    for key, f in config_fields():
        short = {v: k for k, v in option_keys().items()}[key]
        if f.metadata.get("choices"):
            assert tuple(by_dest[short].choices) == f.metadata["choices"]
    assert _sub("train").parse_args(["--val-fraction", "0.2"]).val_fraction == 0.2
    with pytest.raises(SystemExit):
        _sub("train").parse_args(["--val-fraction", "1"])          # config: val_fraction in (0, 1)


def test_flags_become_the_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_train(data, model, *, config, resume, report=False, **opts):
        seen["cfg"] = api.make_config(config, data=data, model=model, **opts)
        return tmp_path
    monkeypatch.setattr(api, "train", fake_train)
    assert main(["train", "--data", "d", "--model", "unet", "--loss", "ce+dice", "--format", "voc",
                 "--weight-decay", "0.01", "--warmup-steps", "5", "--image-size", "32", "48", "--class-weights",
                 "auto", "--no-channels-last", "--binary-sigmoid", "--distill-weight", "0.5", "--no-report"]) == 0
    c = seen["cfg"]
    assert (c.data.root, c.model.name, c.loss.name, c.data.format) == ("d", "unet", "ce+dice", "voc")
    assert c.train.weight_decay == 0.01 and c.train.warmup_steps == 5 and c.data.image_size == (32, 48)
    assert c.loss.class_weights == "auto" and c.train.channels_last is False and c.data.binary_sigmoid is True
    assert c.model.distill_weight == 0.5
    assert main(["train", "--data", "d", "--image-size", "64", "--class-weights", "1", "2.5", "--channels-last",
                 "--no-report"]) == 0
    c = seen["cfg"]
    assert c.data.image_size == (64, 64) and c.loss.class_weights == [1.0, 2.5] and c.train.channels_last is True
    assert c.train.semi_soft is True                        # the default
    assert main(["train", "--data", "d", "--no-semi-soft", "--no-report"]) == 0
    assert seen["cfg"].train.semi_soft is False
    assert main(["train", "--data", "d", "--class-weights", "heavy"]) == 2
    assert "--class-weights" in capsys.readouterr().err


@pytest.mark.slow
def test_models_table_keeps_every_column_at_80_columns():
    from pixelseg.models import MODELS, build_model
    p = _cli("models", env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= 80
    header = next(ln for ln in lines if ln.lstrip().startswith("name "))
    for column in ("name", "family", "encoder", "params", "GFLOPs", "ONNX", "aux", "typical use"):
        assert column in header
    rows = {ln.split()[0]: ln for ln in lines if ln.split() and ln.split()[0] in MODELS.names()}
    assert sorted(rows) == sorted(MODELS.names())                # one row per registered model
    for name in ("unet", "fast_scnn"):                           # parameters counted independently of the table
        params = sum(t.numel() for t in build_model(name, 21, 3).parameters())
        assert f"{params / 1e6:.2f}M" in rows[name].split()


@pytest.fixture(scope="module")
def run_with_data(tmp_path_factory):
    """A random-weights run whose config.yaml names a small labelled dataset of the run's classes."""
    from pixelseg.config import from_dict
    from pixelseg.inference.bench import model_run
    from pixelseg.run.folder import RunFolder
    base = tmp_path_factory.mktemp("evaluate")
    run = model_run("unet", (32, 32), 3, base / "run", encoder="resnet18")
    data = base / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (data / split / "images").mkdir(parents=True)
        (data / split / "masks").mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / split / "images" / f"{k}.png")
            Image.fromarray(rng.integers(0, 3, (32, 32), dtype=np.uint8)).save(data / split / "masks" / f"{k}.png")
    (data / "classes.json").write_text(json.dumps({"names": ["class0", "class1", "class2"]}))
    RunFolder(run).write_config(from_dict({"data": {"root": str(data)}}))
    return run, data


@pytest.mark.slow
def test_evaluate_run_uses_the_runs_own_data(run_with_data, tmp_path):
    run, data = run_with_data
    js = tmp_path / "m.json"
    p = _cli("evaluate", run, "--device", "cpu", "--no-report", "--json", js, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"data: {data}" in p.stdout                           # says which data it used
    with_data = tmp_path / "m2.json"
    assert _cli("evaluate", run, "--data", data, "--device", "cpu", "--no-report", "--json", with_data,
                cwd=tmp_path).returncode == 0
    got, want = json.loads(js.read_text()), json.loads(with_data.read_text())
    assert got["images"] == 2 and got["mIoU"] == want["mIoU"]


def test_evaluate_run_whose_data_is_gone(run_with_data, tmp_path):
    import shutil
    run, data = run_with_data
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    from pixelseg.config import from_dict
    from pixelseg.run.folder import RunFolder
    RunFolder(moved).write_config(from_dict({"data": {"root": str(tmp_path / "gone")}}))
    p = _cli("evaluate", moved, "--device", "cpu", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "gone" in p.stderr and "--data" in p.stderr and len(p.stderr.strip().splitlines()) == 1
