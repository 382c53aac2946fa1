"""One opener for a run's labelled data (measure/opener.py): every measuring verb reads the same images, decoded
the same way, and refuses the same mistakes with the same words."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import pixelseg
from pixelseg.deploy.export import _reference, val_miou, val_split
from pixelseg.errors import PixelsegError
from pixelseg.measure import verbs
from pixelseg.measure.opener import open_split
from pixelseg.reports.analysis import analyze_run
from pixelseg.run.folder import RunFolder

COLORS = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]

pytestmark = pytest.mark.slow      # trains or starts a process: not in the fast subset


def colour_mask_set(root, names=("sky", "roof", "tree"), n=(4, 3), size=(32, 32)):
    """The colormask layout: RGB masks whose colours classes.json maps to classes (read raw, they are not
    class indices), so a reader that skips the format's decoder gets other numbers or an error."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"names": list(names), "colors": [list(c) for c in COLORS]}))
    for split, count in zip(("train", "val"), n):
        for d in ("images", "masks"):
            (root / split / d).mkdir(parents=True)
        for i in range(count):
            idx = np.zeros(size, np.uint8)
            idx[:, size[1] // 3:] = 1
            idx[size[0] // 2:, 2 * size[1] // 3:] = 2
            idx = np.roll(idx, 3 * i, axis=1)
            rgb = np.asarray(COLORS, np.uint8)[idx]
            noisy = np.clip(rgb * 0.6 + rng.integers(0, 90, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / split / "images" / f"{split}{i}.png")
            Image.fromarray(rgb).save(root / split / "masks" / f"{split}{i}.png")
    return root


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("opener")
    data = colour_mask_set(base / "data")
    torch.manual_seed(0)
    run = pixelseg.train(data, "unet", out=str(base / "run"), epochs=2, image_size=(32, 32), batch_size=4,
                         num_workers=0, threads=1, augment="none", encoder="resnet18", quiet=True)
    return data, run


def test_the_split_is_read_with_the_runs_format_and_decoder(colour_run):
    data, run = colour_run
    labelled = open_split(run)                                   # no --data: the run's own dataset
    assert labelled.root == data.resolve() and labelled.index.format == "colormask"
    assert [s.stem for s in labelled.samples] == ["val0", "val1", "val2"]
    masks = list(labelled.masks())
    assert {int(v) for m in masks for v in np.unique(m)} == {0, 1, 2}     # colours decoded to class indices


def test_export_measures_the_same_miou_as_evaluate(colour_run):
    """export's INT8 measurement (val_miou) goes through the same opener and evaluation pass as evaluate: on
    colour masks the two numbers are identical (the old export read the RGB masks raw)."""
    _, run = colour_run
    info = RunFolder(run).info()
    exported = val_miou(_reference(info.load_model(torch.device("cpu"))), info, val_split(info))
    evaluated = verbs.evaluate_run(run, device="cpu")["mIoU"]
    assert exported == pytest.approx(evaluated, abs=1e-12)


def test_report_and_evaluate_read_the_same_data_the_same_way(colour_run):
    data, run = colour_run
    own = verbs.evaluate_run(run, device="cpu")
    named = verbs.evaluate_run(run, data, device="cpu")
    report = analyze_run(run, data, device="cpu").summary
    assert own["mIoU"] == named["mIoU"] == pytest.approx(report["mIoU"], abs=1e-12)
    assert own["images"] == named["images"] == 3


def test_every_verb_refuses_data_with_other_classes_in_the_same_words(colour_run, tmp_path):
    _, run = colour_run
    other = colour_mask_set(tmp_path / "other", names=("water", "roof", "tree"))
    calls = {
        "evaluate": lambda: verbs.evaluate_run(run, other, device="cpu"),
        "calibrate": lambda: verbs.calibrate(run, other, device="cpu"),
        "compare": lambda: verbs.compare(run, run, other, device="cpu"),
        "report": lambda: analyze_run(run, other, device="cpu"),
        "audit": lambda: pixelseg.audit(run, other, split="val", folds=0, out=tmp_path / "audit", device="cpu"),
    }
    for verb, call in calls.items():
        with pytest.raises(PixelsegError, match=r"classes \['water', 'roof', 'tree'\] differ from the run's") as e:
            call()
        assert f"{verb} on data with the run's class table" in str(e.value)
    assert not (tmp_path / "audit").exists()

