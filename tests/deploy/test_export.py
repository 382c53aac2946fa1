"""`pixelseg export`: self-describing files with dynamic shapes, a parity gate that refuses bad exports
and writes nothing, INT8 agreement and mIoU on a trained model, and one-line errors."""
from __future__ import annotations

import json
import sys

import pytest

from pixelseg.cli import main
from pixelseg.errors import PixelsegError
from pixelseg.deploy.export import export_run
from pixelseg.inference.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"log": lambda m: None}


@pytest.mark.slow
def test_onnx_is_self_describing_with_dynamic_axes(random_run, tmp_path):
    import onnx
    r = export_run(random_run, "onnx", tmp_path / "m.onnx", **QUIET)
    assert r.agreement >= 0.999 and r.max_abs_diff < 1e-3 and r.images > 0
    proto = onnx.load(r.path)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["pixelseg"])
    run_json = json.loads((random_run / "model.json").read_text())
    assert meta["classes"] == run_json["classes"] and meta["preprocessing"] == run_json["preprocessing"]
    assert meta["export"]["format"] == "onnx" and meta["export"]["int8"] is False and meta["export"]["opset"] >= 17
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]


@pytest.mark.slow
def test_openvino_ir_round_trip(random_run, tmp_path):
    r = export_run(random_run, "openvino", tmp_path / "ov" / "m.xml", **QUIET)
    assert r.agreement >= 0.999
    assert (tmp_path / "ov" / "m.bin").is_file()
    pred = Predictor(r.path, "cpu", backend="auto")
    assert pred.backend_name == "openvino"
    assert pred.classes == Predictor(random_run, "cpu").classes
    assert not list((tmp_path / "ov").glob(".pixelseg-export-*"))     # staging folder cleaned up


@pytest.mark.slow
def test_torchscript_export(random_run, tmp_path):
    import torch

    from pixelseg.deploy.torchscript import load_torchscript
    r = export_run(random_run, "torchscript", tmp_path / "m.pt", **QUIET)
    module, meta = load_torchscript(tmp_path / "m.pt")
    assert meta["model"]["name"] == "unet" and r.agreement == 1.0
    ref = Predictor(random_run, "cpu").model
    x = torch.randn(2, 3, 40, 70)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_parity_gate_refuses_and_writes_nothing(random_run, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(PixelsegError, match="parity check failed.*nothing was written"):
        export_run(random_run, "onnx", out, min_agreement=1.01, **QUIET)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_int8_on_a_trained_model(trained_run, easy_image, tmp_path):
    import onnx
    r = export_run(trained_run, "onnx", tmp_path / "q.onnx", int8=True, calib_count=16, **QUIET)
    assert r.int8 and r.calib_images == 16
    assert r.agreement >= 0.99                                   # the default INT8 gate
    assert r.miou["fp32"] > 0.4 and abs(r.miou["delta"]) <= 0.02
    proto = onnx.load(r.path)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and "DequantizeLinear" in ops
    # per-channel: weight scales are vectors, one per output channel
    scales = {i.name: i for i in proto.graph.initializer if i.name.endswith("_scale")}
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for t in scales.values())
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["pixelseg"])
    assert meta["export"]["int8"] is True and meta["export"]["calib_images"] == 16
    # the INT8 file runs on both runtimes through the Predictor and agrees with fp32 PyTorch
    fp32 = Predictor(trained_run, "cpu")
    for backend in ("onnxruntime", "openvino"):
        q = Predictor(r.path, "cpu", backend=backend)
        assert (q.predict(easy_image) == fp32.predict(easy_image)).mean() >= 0.98


@pytest.mark.parametrize("args, words", [
    (["--format", "torchscript", "--int8"], "--int8 makes a QDQ ONNX model"),
    (["--format", "onnx", "--out", "x.xml"], "must end in .onnx"),
    (["--format", "onnx", "--int8", "--calib", "/no/such/folder"], "not found"),
])
def test_cli_export_errors_are_one_line(random_run, capsys, args, words):
    assert main(["export", str(random_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pixelseg: error:") and words in err and "\n" not in err


def test_cli_export_missing_runtime(random_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert main(["export", str(random_run), "--format", "openvino"]) == 2
    assert "needs the openvino package" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_prints_parity_and_writes_json(random_run, capsys, tmp_path):
    assert main(["export", str(random_run), "--out", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "argmax agreement 100.0000%" in out
    assert json.loads((tmp_path / "r.json").read_text())["format"] == "onnx"


@pytest.mark.slow
def test_parity_check_says_when_the_runs_data_is_missing(random_run, tmp_path):
    """A run whose data is gone is still exported, checked on random images, and the terminal says so."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(random_run, run, ignore=shutil.ignore_patterns(".cache", "export"))
    (run / "config.yaml").write_text("data:\n  root: gone/data\n")
    lines: list[str] = []
    r = export_run(run, "onnx", tmp_path / "m.onnx", log=lines.append)
    assert r.image_source.startswith("random images")
    assert any("random images" in m and "gone/data" in m and "not found" in m for m in lines), lines


@pytest.mark.slow
def test_parity_check_finds_data_stored_relative_to_the_run(trained_run, tmp_path, monkeypatch):
    """config.yaml written with the data root as typed (relative): found from another working directory."""
    import shutil

    import yaml
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(".cache", "export"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    shutil.copytree(cfg["data"]["root"], tmp_path / "data")
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": {**cfg["data"], "root": "data"}}))
    monkeypatch.chdir(tmp_path / "run")
    lines: list[str] = []
    r = export_run(run, "onnx", tmp_path / "m.onnx", log=lines.append)
    assert r.image_source.startswith(str((tmp_path / "data").resolve())), r.image_source
    assert not any("random images" in m for m in lines)


def test_cli_export_without_onnx_names_the_extra_and_no_flag_it_lacks(random_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(random_run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "export --format onnx needs the onnx package" in err and "pip install 'pixelseg[export]'" in err
    assert "--backend" not in err and "\n" not in err


def test_a_command_whose_extra_is_missing_says_which_in_one_line(capsys, monkeypatch, tmp_path):
    """`pixelseg serve` on an install without the serve extra: one line naming the extra, not a traceback."""
    for name in [m for m in sys.modules if m == "pixelseg.serve" or m.startswith("pixelseg.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    from pixelseg.inference.bench import model_run
    run = model_run("fast_scnn", (32, 32), 2, tmp_path / "run")       # a real run: the run is checked first
    assert main(["serve", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "`pixelseg serve` needs fastapi, part of the 'serve' extra" in err
    assert "pip install 'pixelseg[serve]'" in err and "\n" not in err
