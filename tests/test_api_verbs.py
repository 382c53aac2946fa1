"""The Python API has the CLI's verbs (pixelseg.report / export / audit / suggest / bench beside train, evaluate,
predict, compare, calibrate), with the CLI's defaults; and whatever they write into a run is a tenant the run
folder declares (RunFolder.TENANTS)."""
from __future__ import annotations

import shutil

import pytest

import pixelseg
from pixelseg.errors import PixelsegError
from pixelseg.run.folder import RunFolder


@pytest.fixture()
def run_copy(tiny_unet_run, tmp_path):
    root, run = tiny_unet_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return root / "data", copy


def test_the_verbs_are_functions_of_the_package():
    for name in ("train", "evaluate", "predict", "load", "compare", "calibrate", "tune_threshold", "report",
                 "export", "audit", "suggest", "bench"):
        assert callable(getattr(pixelseg, name)), name
        assert name in dir(pixelseg)


@pytest.mark.slow
def test_each_verb_does_what_its_command_does_and_writes_only_declared_tenants(run_copy):
    data, run = run_copy
    page = pixelseg.report(run, device="cpu")
    assert page == RunFolder(run).report_html and page.is_file() and "<html" in page.read_text().lower()

    pytest.importorskip("onnxruntime")
    exported = pixelseg.export(run)
    assert exported["path"] == str(RunFolder(run).export_dir / "model.onnx") and exported["agreement"] >= 0.999

    val = len(list((data / "val" / "images").iterdir()))
    audited = pixelseg.audit(run, split="val", device="cpu")                 # a non-train split: no fold models
    assert audited["folds"] == 0 and len(audited["images"]) == val
    assert (RunFolder(run).audit_dir / "audit.json").is_file()
    with pytest.raises(PixelsegError, match="threshold 1.5"):
        pixelseg.audit(run, threshold=1.5)

    picked = pixelseg.suggest(run, data / "train" / "images", n=2, device="cpu")
    assert len(picked["picked"]) == 2 and (RunFolder(run).suggest_dir / "suggest.json").is_file()

    bench = pixelseg.bench(run, backends=["eager"], iters=2)
    assert [r["path"] for r in bench["rows"]] == ["eager"] and bench["rows"][0]["p50_ms"] > 0

    assert {p.name for p in run.iterdir()} <= set(RunFolder.TENANTS)
