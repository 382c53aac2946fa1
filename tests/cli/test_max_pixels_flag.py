"""--max-pixels reaches the decode gate from every command that reads user images (train, predict, evaluate,
report, verify-dataset, data convert|show): one line naming the file, its declared size and the limit."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pixelseg.data.tools.synth import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("px") / "d"
    generate(root, n_train=3, n_val=2, size=(40, 48), seed=2)
    return root


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pixelseg", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("command", [["train", "--epochs", "1", "--out", "run"], ["verify-dataset"]])
def test_a_limit_below_the_images_is_one_line_naming_the_file(data, tmp_path, command):
    args = [command[0]] + (["--data", str(data)] if command[0] == "train" else [str(data)]) + command[1:]
    r = _cli(*args, "--max-pixels", "1000", cwd=tmp_path)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr + r.stdout
    said = r.stderr + r.stdout
    assert "declares 48x40 = 1,920 pixels, above the limit of 1,000" in said and ".png" in said
    assert not (tmp_path / "run" / "last.pt").exists()


def test_predict_takes_the_flag(data, tmp_path):
    """predict refuses the image before decoding it (no run is needed to reach the gate: a run folder that
    does not exist would be reported first, so point it at a file and expect the input to be named)."""
    r = _cli("train", "--data", str(data), "--epochs", "1", "--out", "run", "--model", "fast_scnn", "--no-report",
             "--image-size", "32", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    image = next((data / "val" / "images").iterdir())
    r = _cli("predict", "run", str(image), "--out", "preds", "--max-pixels", "1000", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert image.name in r.stderr and "above the limit of 1,000" in r.stderr
    assert not list((tmp_path / "preds").glob("*.png")) if (tmp_path / "preds").exists() else True
