"""Binary data both ways: 0/255 masks read through classes.json 'values', trained as 2 softmax classes and
as one sigmoid channel; the sigmoid run predicts, evaluates and reloads through the same paths."""
from __future__ import annotations

import json

import numpy as np
import pytest

import pixelseg
from pixelseg.measure.verbs import tune_threshold
from pixelseg.run.folder import RunFolder

from tests.helpers import dataset_makers as M


@pytest.fixture(scope="module")
def binary_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bin")
    for split, n in (("train", 4), ("val", 2)):
        for k in range(n):
            img = M.image(root / split / "images" / f"{split}{k}.png", 7 * len(split) + k)
            mask = np.where(img[:, :, 0] > 127, 255, 0).astype(np.uint8)   # learnable: foreground = bright red
            M.save_gray(root / split / "masks" / f"{split}{k}.png", mask)
    (root / "classes.json").write_text(json.dumps({"names": ["background", "lesion"], "values": [0, 255]}))
    return root


@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.slow
def test_binary_trains_predicts_and_evaluates(binary_data, tmp_path, sigmoid):
    run = pixelseg.train(binary_data, "unet", out=str(tmp_path / "run"), epochs=1, image_size=(32, 32),
                         batch_size=2, num_workers=0, threads=1, augment="none", binary_sigmoid=sigmoid or None,
                         quiet=True)
    info = RunFolder(run).info()
    assert (info.sigmoid_threshold == 0.5) if sigmoid else info.sigmoid_threshold is None
    model = info.load_model()
    import torch
    out = model(torch.zeros(1, 3, 32, 32))
    assert out.shape[1] == 2                           # the sigmoid model is seen as 2-class logits
    inner = getattr(model, "model", model)
    assert inner(torch.zeros(1, 3, 32, 32)).shape[1] == (1 if sigmoid else 2)
    label = pixelseg.load(run).predict(binary_data / "val" / "images" / "val0.png")
    assert label.shape == (M.H, M.W) and set(np.unique(label).tolist()) <= {0, 1}
    m = pixelseg.evaluate(run, binary_data, "val")
    assert m["images"] == 2 and set(m["per_class"]) == {"background", "lesion"}
    if not sigmoid:
        with pytest.raises(pixelseg.PixelsegError, match="not a binary_sigmoid run"):
            tune_threshold(run, binary_data)
        return
    tuned = tune_threshold(run, binary_data)
    assert 0.0 < tuned["threshold"] < 1.0 and tuned["mIoU"] >= tuned["mIoU_before"] - 1e-9
    assert RunFolder(run).info().sigmoid_threshold == tuned["threshold"]         # written into model.json
    # prediction now uses it: the wrapped model's fixed logit is logit(threshold)
    t = tuned["threshold"]
    assert (RunFolder(run).info()).load_model().offset == pytest.approx(np.log(t / (1 - t)))
