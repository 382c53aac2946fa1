"""`pixelseg runs [DIR]` lists run folders with their numbers; `pixelseg env` says what this install can do and
what to install for the rest."""
from __future__ import annotations

import json
import shutil

from pixelseg.cli import main


def test_runs_lists_each_run_with_its_numbers(tiny_unet_run, tmp_path, capsys):
    root, run = tiny_unet_run
    folder = tmp_path / "runs"
    shutil.copytree(run, folder / "a")
    shutil.copytree(run, folder / "group" / "b")                 # two levels deep is found too
    (folder / "not-a-run").mkdir()
    m = json.loads((run / "metrics.json").read_text())
    assert main(["runs", str(folder), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["run"] for r in rows) == sorted([str(folder / "a"), str(folder / "group" / "b")])
    for r in rows:
        assert r["model"] == "unet" and r["encoder"] == "resnet18" and r["budget"] == "1 epochs"
        assert r["mIoU"] == m["mIoU"] and r["finished"] and r["steps"] == 2
    assert main(["runs", str(folder)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "unet / resnet18" in out and f"{m['mIoU']:.3f}" in out


def test_runs_on_an_empty_or_missing_folder(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no run folders under" in capsys.readouterr().out
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_env_reports_extras_and_how_to_install_a_missing_one(capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["env", "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    serve = next(e for e in f["extras"] if e["module"] == "fastapi")
    assert serve["installed"] is False and serve["install"] == "pip install 'pixelseg[serve]'"
    onnx = next(e for e in f["extras"] if e["module"] == "onnxruntime")
    assert onnx["installed"] is (real("onnxruntime") is not None)
    assert f["offline_encoders"]["tf_efficientnet_lite0"] == "installed"      # a dependency of pixelseg
    assert f["torch"] and f["cores"] >= 1 and isinstance(f["cpu_features"], list)
    assert main(["env"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "serve fastapi no: pip install 'pixelseg[serve]'" in out


def test_completion_script_knows_every_command_and_a_flag(capsys):
    from pixelseg.cli.main import build_parser
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    commands = build_parser()._subparsers._group_actions[0].choices
    assert "complete" in script and all(c in script for c in commands)
    assert "--max-minutes" in script and "--encoder-bn" in script
