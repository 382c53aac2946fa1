"""Training and evaluation run end to end on a standard format read through its label decoder, with the
decoders crossing into DataLoader worker processes."""
from __future__ import annotations

import json

import pixelseg
import dataset_makers as M


def test_train_and_evaluate_on_cityscapes_layout(tmp_path):
    M.make_cityscapes(tmp_path / "cs")
    run = pixelseg.train(tmp_path / "cs", "unet", format="cityscapes", out=str(tmp_path / "run"), epochs=1,
                         image_size=(32, 32), batch_size=2, num_workers=1, threads=1, augment="aerial", quiet=True)
    classes = json.loads((run / "classes.json").read_text())
    assert len(classes["names"]) == 19 and classes["names"][0] == "road"
    m = pixelseg.evaluate(run, tmp_path / "cs", "val")
    assert m["images"] == 1 and 0.0 <= m["pixel_accuracy"] <= 1.0
    # the ignore pixels (labelIds 0/1/6/9 -> 255) are not counted: the metric saw only the mapped classes
    assert m["num_pixels"] < M.H * M.W
