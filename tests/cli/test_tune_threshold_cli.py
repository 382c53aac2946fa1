"""`pixelseg tune-threshold RUN`: the sigmoid threshold with the best mIoU, printed before/after and written into
the run (which evaluate then uses); a run without a sigmoid head is a one-line error with exit 2."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import pixelseg
from pixelseg.cli import main
from pixelseg.run.folder import RunFolder

pytestmark = pytest.mark.slow


def _data(root):
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for k in range(n):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / split / "images" / f"{k}.png")
            Image.fromarray(np.where(img[:, :, 0] > 127, 255, 0).astype(np.uint8)).save(root / split / "masks" / f"{k}.png")
    (root / "classes.json").write_text(json.dumps({"names": ["background", "lesion"], "values": [0, 255]}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tt")
    _data(root / "data")
    out = {}
    for sigmoid in (True, False):
        out[sigmoid] = pixelseg.train(root / "data", "unet", out=str(root / f"run{int(sigmoid)}"), epochs=1,
                                      image_size=(32, 32), batch_size=2, num_workers=0, threads=1, augment="none",
                                      binary_sigmoid=sigmoid or None, encoder="resnet18", quiet=True)
    return root, out


def test_tune_threshold_prints_before_after_and_writes_the_run(runs, tmp_path, capsys):
    root, out = runs
    run = tmp_path / "run"
    shutil.copytree(out[True], run)            # the module's run stays untuned for the other tests
    before = RunFolder(run).info().sigmoid_threshold
    rc = main(["tune-threshold", str(run), "--json", str(tmp_path / "t.json")])   # data: the run's own
    text = capsys.readouterr().out
    assert rc == 0, text
    t = re.search(r"threshold (\d\.\d\d) -> (\d\.\d\d)", text)
    m = re.search(r"mIoU\s+(\d\.\d{4}) -> (\d\.\d{4})", text)
    assert t and m, text
    r = json.loads((tmp_path / "t.json").read_text())
    assert float(t[1]) == pytest.approx(before) == pytest.approx(r["threshold_before"])
    assert float(t[2]) == pytest.approx(r["threshold"], abs=0.005) and 0 < r["threshold"] < 1
    assert float(m[2]) >= float(m[1]) and r["mIoU"] >= r["mIoU_before"] - 1e-9 and r["images"] == 2
    assert RunFolder(run).info().sigmoid_threshold == r["threshold"]           # written into model.json
    # evaluate now predicts with the tuned threshold: its mIoU is the one tuning reported
    assert pixelseg.evaluate(run, root / "data", "val")["mIoU"] == pytest.approx(r["mIoU"], abs=2e-3)


def test_tune_threshold_on_a_softmax_run_is_a_one_line_error(runs, capsys):
    root, out = runs
    rc = main(["tune-threshold", str(out[False]), "--data", str(root / "data")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a binary_sigmoid run" in err and err.count("\n") == 1 and "Traceback" not in err
    assert RunFolder(out[False]).info().sigmoid_threshold is None
    rc = main(["tune-threshold", str(root / "nope")])
    assert rc == 2 and "run folder not found" in capsys.readouterr().err
