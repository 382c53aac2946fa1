"""Training and evaluation run end to end on a standard format read through its label decoder, with the
decoders crossing into DataLoader worker processes."""
from __future__ import annotations

import json

import numpy as np
import pytest

import pixelseg

from tests.helpers import dataset_makers as M

pytestmark = pytest.mark.slow


def test_train_and_evaluate_on_cityscapes_layout(tmp_path):
    expected = M.make_cityscapes(tmp_path / "cs")      # train ids from the official cityscapesscripts table
    run = pixelseg.train(tmp_path / "cs", "unet", format="cityscapes", out=str(tmp_path / "run"), epochs=1,
                         image_size=(32, 32), batch_size=2, num_workers=1, threads=1, augment="aerial", quiet=True)
    classes = json.loads((run / "classes.json").read_text())
    assert len(classes["names"]) == 19 and classes["names"][0] == "road"
    m = pixelseg.evaluate(run, tmp_path / "cs", "val")
    assert m["images"] == 1
    # the same number computed independently: the run's prediction of the val image against the official
    # train ids, ignore pixels (labelIds 0/1/6/9 -> 255) left out
    stem = "frankfurt_000000_000019"
    pred = pixelseg.load(run, device="cpu").predict(tmp_path / "cs" / "leftImg8bit" / "val" / "frankfurt" /
                                                    f"{stem}_leftImg8bit.png")
    gt = expected[stem]
    counted = gt != 255
    assert 0 < counted.sum() < M.H * M.W and m["num_pixels"] == int(counted.sum())
    assert m["pixel_accuracy"] == pytest.approx(float(np.mean(pred[counted] == gt[counted])), abs=1e-12)
