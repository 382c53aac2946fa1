"""benchmarks/semi.py's self-training arm: the teacher's pseudo-labels keep only sure pixels (the rest is the
ignore index), the student trains on the labelled images plus the pseudo-labelled ones, starting from the teacher,
and it gets what the teacher and the pseudo-labelling left of the budget."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pixelseg.data.tools.synth import generate
from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def semi():
    return load_benchmark("semi")


@pytest.mark.slow
def test_selftrain_arm_pseudo_labels_and_student(semi, tmp_path):
    generate(tmp_path / "data", 24, 4, (32, 32), seed=0)
    lab, unl, hid = semi.split_labels(tmp_path / "data", 0.3, tmp_path / "work")
    n_lab, n_unl = len(list((lab / "train" / "images").iterdir())), len(list(unl.iterdir()))
    assert n_lab and n_unl and not any((unl / p.name).exists() for p in (lab / "train" / "images").iterdir())

    minutes = 0.6
    row = semi.self_train(lab, unl, hid, minutes, 0, tmp_path / "st", confidence=0.6)
    assert "error" not in row, row
    union = tmp_path / "st" / "data" / "train"
    assert len(list((union / "images").iterdir())) == len(list((union / "masks").iterdir())) == n_lab + n_unl
    pseudo = [np.asarray(Image.open(union / "masks" / f"{p.stem}.png")) for p in unl.iterdir()]
    assert any((m == 255).any() for m in pseudo)                        # unsure pixels are left out
    assert 0 < row["pseudo_coverage"] < 1 and 0 <= row["pseudo_accuracy"] <= 1
    cfg = yaml.safe_load((tmp_path / "st" / "student" / "config.yaml").read_text())
    assert Path(cfg["model"]["init_from"]).resolve() == (tmp_path / "st" / "teacher").resolve()
    teacher = yaml.safe_load((tmp_path / "st" / "teacher" / "config.yaml").read_text())["train"]["max_minutes"]
    assert teacher == minutes / 2
    assert cfg["train"]["max_minutes"] <= minutes - teacher         # the student gets what is left, no more
