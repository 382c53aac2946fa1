"""The command line: every user mistake is one line on stderr naming the file or key, exit 2, no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelseg import cli
from pixelseg.data.tools.synth import generate


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    generate(root, n_train=6, n_val=3, size=(48, 48), seed=1)
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pixelseg: error: ") and "Traceback" not in err
    return lines[0]


def test_missing_dataset(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "train", "--data", tmp_path / "nope", "--epochs", "1", "--out", tmp_path / "r")
    assert rc == 2
    assert str(tmp_path / "nope") in one_line_error(err)


def test_image_without_mask(capsys, good, tmp_path):
    root = _copy(good, tmp_path / "d")
    victim = sorted((root / "train" / "masks").iterdir())[0]
    victim.unlink()
    rc, _, err = run_cli(capsys, "train", "--data", root, "--epochs", "1", "--out", tmp_path / "r")
    line = one_line_error(err)
    assert rc == 2 and victim.stem in line and "add the mask" in line


def test_mask_value_out_of_range(capsys, good, tmp_path):
    root = _copy(good, tmp_path / "d")
    victim = sorted((root / "val" / "masks").iterdir())[1]
    m = np.asarray(Image.open(victim)).copy()
    m[0, 0] = 7
    Image.fromarray(m).save(victim)
    rc, _, err = run_cli(capsys, "train", "--data", root, "--epochs", "1", "--out", tmp_path / "r")
    line = one_line_error(err)
    assert rc == 2 and victim.name in line and "7" in line
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_mismatched_sizes_and_corrupt_files_listed_by_verify(capsys, good, tmp_path):
    root = _copy(good, tmp_path / "d")
    masks = sorted((root / "train" / "masks").iterdir())
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(masks[0])           # wrong size
    masks[1].write_bytes(masks[1].read_bytes()[:40])                        # truncated PNG
    rc, out, err = run_cli(capsys, "verify-dataset", root)
    assert rc == 1
    problems = [ln for ln in err.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 2
    assert any(masks[0].name in p and "12x10" in p for p in problems)
    assert any(masks[1].name in p and "decoded" in p for p in problems)
    assert "verdict: 2 problem(s)" in err and "Traceback" not in err


def test_verify_clean_dataset_counts(capsys, good):
    rc, out, _ = run_cli(capsys, "verify-dataset", good)
    assert rc == 0 and "verdict: OK" in out
    for name in ("background", "circle", "triangle", "rectangle", "star", "cross"):
        assert name in out


@pytest.mark.parametrize("args, expect", [
    (["--model", "unett"], "unknown model 'unett'; did you mean unet"),
    (["--loss", "dicee"], "dice"),
    (["--encoder", "resnet999"], "resnet999"),
])
def test_unknown_names(capsys, good, tmp_path, args, expect):
    rc, _, err = run_cli(capsys, "train", "--data", good, "--epochs", "1", "--out", tmp_path / "r", *args)
    assert rc == 2 and expect in one_line_error(err)


def test_unknown_config_key(capsys, good, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lrr: 0.1\n")
    rc, _, err = run_cli(capsys, "train", "--data", good, "--config", cfg, "--out", tmp_path / "r")
    line = one_line_error(err)
    assert rc == 2 and "train.lrr" in line and "train.lr" in line and str(cfg) in line


def test_not_a_run_folder(capsys, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    rc, _, err = run_cli(capsys, "predict", tmp_path, img, "--out", tmp_path / "o")
    assert rc == 2 and "not a pixelseg run folder" in one_line_error(err)


def test_evaluate_pred_dir_missing_prediction(capsys, good, tmp_path):
    (tmp_path / "pred").mkdir()
    rc, _, err = run_cli(capsys, "evaluate", "--pred-dir", tmp_path / "pred", "--data", good)
    assert rc == 2 and "no prediction for" in one_line_error(err)


@pytest.mark.slow
def test_models_table(capsys):
    """Every registered model is a row, with its family, its parameter count and its ONNX verdict."""
    from pixelseg.models import MODELS, onnx_support
    from pixelseg.models.profile import profile
    rc, out, _ = run_cli(capsys, "models", "--classes", "4")
    assert rc == 0 and "4 classes" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split() and ln.split()[0] in MODELS.names()}
    assert sorted(rows) == sorted(MODELS.names())
    for name, cells in rows.items():
        assert cells[1] == MODELS.get(name).info["family"]
        assert f"{profile(name, 4)['params'] / 1e6:.2f}M" in cells
        assert ("yes" if onnx_support(name)[0] else "no*") in cells
    from pixelseg.models import build_model
    small, large = (sum(t.numel() for t in build_model(n, 4, 3).parameters()) for n in ("fast_scnn", "fcn8s"))
    assert f"{small / 1e6:.2f}M" in rows["fast_scnn"] and f"{large / 1e6:.2f}M" in rows["fcn8s"]


@pytest.mark.slow
def test_quickstart(capsys, tmp_path, monkeypatch):
    """The README's first command, on a smaller built-in dataset: data, training, metrics, predictions with
    overlays at each input's size, the report; the numbers printed are the ones saved."""
    import functools
    import json

    from pixelseg import quickstart
    small = functools.partial(quickstart.quickstart, n_train=24, n_val=6, size=(40, 56), n_predict=4)
    monkeypatch.setattr(quickstart, "quickstart", small)
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run_cli(capsys, "quickstart", "--out", "qs", "--max-minutes", "0.05")
    assert rc == 0
    assert [ln[:5] for ln in out.splitlines() if ln.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    m = json.loads((tmp_path / "qs" / "run" / "metrics.json").read_text())
    ious = [c["iou"] for c in m["per_class"].values() if c["iou"] is not None]
    assert isinstance(m["mIoU"], float) and 0.0 <= m["mIoU"] <= 1.0
    assert m["mIoU"] == pytest.approx(sum(ious) / len(ious))          # the mean of the per-class IoUs
    assert m["images"] == 6 and m["num_pixels"] == 6 * 40 * 56          # scored at the original size
    assert sum(c["gt_pixels"] for c in m["per_class"].values()) == m["num_pixels"]
    assert f"mIoU {m['mIoU']:.4f} on 6 val images" in out
    images = sorted((tmp_path / "qs" / "data" / "val" / "images").iterdir())[:4]
    for img in images:
        label = np.asarray(Image.open(tmp_path / "qs" / "predictions" / f"{img.stem}.png"))
        overlay = Image.open(tmp_path / "qs" / "predictions" / f"{img.stem}_overlay.png")
        assert label.shape == (40, 56) and label.max() < len(m["per_class"])
        assert overlay.size[1] >= 40 and overlay.size[0] >= 56            # the image (and its legend)
    assert (tmp_path / "qs" / "run" / "report" / "report.html").is_file()
    assert "report:" in out and str(Path("qs") / "run" / "report" / "report.html") in out


def test_real_process_exit_code(tmp_path):
    """Outside pytest's capture: the installed entry point exits 2 with one line and no traceback."""
    p = subprocess.run([sys.executable, "-m", "pixelseg.cli", "verify-dataset", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("pixelseg: error:") and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
