"""benchmarks/gpu_check.py: its no-GPU mode end to end, and its table, checks and run reading on fake results."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod       # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("gpu_check", None)


@pytest.mark.slow
def test_without_a_gpu_it_says_so_exits_0_and_writes_nothing(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}     # no GPU, also on a machine that has one
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "no CUDA GPU is visible" in p.stdout
    assert not out.exists()


def _training(gc, path, miou, check="miou"):
    return gc.Row(path, miou=miou, rate=100.0, check=check)


def test_judge_holds_training_rows_to_the_fp32_miou(gc):
    rows = gc.judge([_training(gc, gc.FP32, 0.60, check=""), _training(gc, "bf16", 0.58),
                     _training(gc, "fp16", 0.50), _training(gc, "seed 1", 0.30, check="noise")])
    fp32, bf16, fp16, noise = rows
    assert (fp32.status, fp32.ref_miou) == ("ok", None)
    assert (bf16.status, bf16.ref_miou) == ("ok", 0.60)          # 0.02 off: within 0.05
    assert fp16.status == "failed"
    assert fp16.error == "mIoU 0.500 vs fp32 0.600: differs by more than 0.05"
    assert (noise.status, noise.ref_miou) == ("ok", 0.60)        # the noise row is shown, never failed
    assert gc.MIOU_TOLERANCE == 0.05 and gc.SEED == 0


def test_judge_without_an_fp32_result_fails_nothing(gc):
    rows = gc.judge([gc.Row(gc.FP32, "failed", "exit 2"), _training(gc, "bf16", 0.1)])
    assert [r.status for r in rows] == ["failed", "ok"]
    assert rows[0].error == "exit 2" and rows[1].ref_miou is None


def test_judge_holds_inference_rows_to_the_agreement(gc):
    rows = gc.judge([gc.Row("bf16", agreement=0.5, check="agreement"),
                     gc.Row("fp16", agreement=0.995, check="agreement"),
                     gc.Row("tiled", agreement=0.5),                    # shown, not checked
                     gc.Row("serve", check="agreement")])
    assert [r.status for r in rows] == ["failed", "ok", "ok", "failed"]
    assert rows[0].error == "argmax agreement 0.5000 with fp32 is below 0.99"
    assert rows[3].error == "no agreement measured"


def test_one_line_prefers_pixelseg_error_then_the_exception(gc):
    log = "epoch 1\nTraceback (most recent call last):\n  File x\nValueError: bad\npixelseg: error: data/: not found\n"
    assert gc.one_line(log) == "pixelseg: error: data/: not found"
    assert gc.one_line("step 1\nTraceback:\nRuntimeError: CUDA out of memory\n\n") == "RuntimeError: CUDA out of memory"
    assert gc.one_line("a\nlast words\n") == "last words"
    assert gc.one_line("") == "no output"
    assert len(gc.one_line("RuntimeError: " + "x" * 500)) == 160


def test_markdown_and_json_outputs(gc, tmp_path):
    rows = [gc.Row("bf16", rate=1234.56, peak_mb=2048.4, miou=0.6123, ref_miou=0.6, note="unet | 256"),
            gc.Row("fp16", "failed", "exit 1 | boom"), gc.Row("compile", "skipped", "budget of 400 s spent")]
    md = gc.markdown(rows, "GPU check: H200")
    lines = md.splitlines()
    assert lines[0] == "GPU check: H200"
    assert "| bf16 | ok | 1234.6 | 2048 | 0.612 | 0.600 | — | — | unet / 256 |" in lines
    assert "| fp16 | failed: exit 1 / boom | — | — | — | — | — | — |  |" in lines
    assert "| compile | skipped: budget of 400 s spent |" in md
    gc.write_outputs(tmp_path / "o", rows, "t", logs="==== fp16\nboom\n")
    data = json.loads((tmp_path / "o" / "gpu_check.json").read_text())
    assert [r["status"] for r in data["rows"]] == ["ok", "failed", "skipped"]
    assert data["rows"][0]["peak_mb"] == 2048.4 and data["min_agreement"] == 0.99
    assert (tmp_path / "o" / "gpu_check.md").read_text() == gc.markdown(rows, "t")
    assert (tmp_path / "o" / "gpu_check_logs.txt").read_text() == "==== fp16\nboom\n"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["gpu_check.json", "gpu_check.md",
                                                                 "gpu_check_logs.txt"]


def _fake_run(run: Path, backend, world=1):
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"mIoU": 0.71, "images_per_s": 812.5}))
    (run / "metrics.csv").write_text("epoch,step,val_mIoU\n1.0,30,0.5\n2.0,60,0.71\n")
    (run / "config.yaml").write_text("model: {name: unet, encoder: resnet34}\ndata: {image_size: [256, 256]}\n"
                                     "train: {batch_size: 32, amp: bf16, device: 'cuda:0'}\n")
    (run / "environment.json").write_text(json.dumps(
        {"sessions": [{"distributed": {"world_size": world, "backend": backend}}]}))


def test_training_row_reads_its_run_folder(gc, tmp_path):
    _fake_run(tmp_path / "run-bf16", None)
    spec = {"name": "bf16", "path": "bf16", "mode": "cli", "argv": ["train"], "run": str(tmp_path / "run-bf16"),
            "check": "miou"}
    [row] = gc.rows_of(spec, {"ok": True, "peak_mb": 3000.0}, 12.0)
    assert (row.status, row.miou, row.rate, row.peak_mb) == ("ok", 0.71, 812.5, 3000.0)
    assert row.note == "unet/resnet34 weights None 256x256 bs 32 amp bf16 cuda:0, 60 steps"


def test_torchrun_row_fails_when_pixelseg_made_no_process_group(gc, tmp_path):
    _fake_run(tmp_path / "run-nccl", None)
    _fake_run(tmp_path / "run-gloo", "gloo", world=2)
    nccl = {"name": "n", "path": "nccl", "mode": "train_api", "run": str(tmp_path / "run-nccl"), "expect": "nccl"}
    gloo = {"name": "g", "path": "gloo", "mode": "train_api", "run": str(tmp_path / "run-gloo"), "expect": "gloo"}
    [bad] = gc.rows_of(nccl, {"ok": True}, 5.0)
    [good] = gc.rows_of(gloo, {"ok": True}, 5.0)
    assert bad.status == "failed"
    assert bad.error == ("ran without a nccl process group (environment.json: backend None, world size 1): "
                         "nccl not exercised")
    assert good.status == "ok" and good.miou == 0.71


def test_inference_result_gives_one_row_per_precision(gc):
    res = {"ok": True, "precisions": {"fp32": {"ok": True, "rate": 900.0, "peak_mb": 500.0, "agreement": 1.0},
                                      "bf16": {"ok": True, "rate": 1500.0, "peak_mb": 300.0, "agreement": 0.97},
                                      "fp16": {"ok": False, "error": "RuntimeError: no kernel"}}}
    rows = gc.judge(gc.rows_of({"name": "infer", "path": "torch backend", "mode": "infer"}, res, 9.0))
    assert [(r.path, r.status) for r in rows] == [("torch backend fp32", "ok"), ("torch backend bf16", "failed"),
                                                  ("torch backend fp16", "failed")]
    assert rows[2].error == "RuntimeError: no kernel"


def test_inference_rows_fall_back_to_any_finished_run(gc, tmp_path):
    (tmp_path / "run-bf16").mkdir()
    (tmp_path / "run-bf16" / "model.safetensors").write_bytes(b"")
    spec = {"name": "tiled", "run": "@run", "argv": ["predict", "@run", "imgs"]}
    got = gc.inference_run(spec, tmp_path)
    assert got["run"] == str(tmp_path / "run-bf16") and got["argv"] == ["predict", str(tmp_path / "run-bf16"), "imgs"]
    (tmp_path / "run-fp32").mkdir()
    (tmp_path / "run-fp32" / "model.safetensors").write_bytes(b"")
    assert gc.inference_run(spec, tmp_path)["run"] == str(tmp_path / "run-fp32")


def test_plan_keeps_the_total_bounded(gc, tmp_path):
    plan = gc.plan(tmp_path, "cuda", 5, 10)
    names = [s["name"] for s in plan]
    assert names[:3] == ["default", "crops_default", "fp32"] and len(set(names)) == len(names)
    default = next(s for s in plan if s["name"] == "default")
    assert default["argv"][:3] == ["train", "--data", str(tmp_path / "builtin")]
    crops = next(s for s in plan if s["name"] == "crops_default")
    assert crops["argv"][:3] == ["train", "--data", str(tmp_path / "big")]
    for spec in (default, crops):       # the recipe chooses: pretrained weights, precision, device, scale
        assert not {"--amp", "--device", "--encoder-weights", "--scale", "--crop"} & set(spec["argv"])
    assert all(s["timeout"] <= 180 for s in plan)
    assert {s["name"]: s["check"] for s in plan if s.get("check")} == {
        "bf16": "miou", "fp16": "miou", "channels_last": "miou", "serve": "agreement", "compile": "miou",
        "fp32_seed1": "noise"}
