"""Prediction jobs (inference/jobs.py): inputs listed and shared out over torchrun ranks, outputs planned and
checked against the inputs before anything is written, label maps written with the Predictor's names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelseg.errors import PixelsegError
from pixelseg.inference.predictor import Predictor
from pixelseg.inference import jobs, outputs


def _images(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / n)
    return folder


def test_plan_names_outputs_and_keeps_equal_stems_apart(tmp_path):
    a = _images(tmp_path / "a", ["x.png", "y.png"])
    b = _images(tmp_path / "b", ["x.png"])
    plan = jobs.plan([a, b], tmp_path / "out", overlay=True)
    assert plan.paths == [a / "x.png", a / "y.png", b / "x.png"] and (plan.rank, plan.world) == (0, 1)
    assert outputs.output_stems(plan.paths) == ["a_x", "y", "b_x"]
    assert [p.name for p in outputs.planned_outputs(plan.paths, plan.out_dir, True)] == \
        ["a_x.png", "a_x_overlay.png", "y.png", "y_overlay.png", "b_x.png", "b_x_overlay.png"]
    assert not (tmp_path / "out").exists()                    # planning writes nothing


@pytest.mark.parametrize("case, words", [
    ("same folder", "is the input folder"),
    ("file beside", "is an input image"),
    ("overlay name", "two inputs would write"),
    ("out is a file", "is a file"),
])
def test_plan_refuses_outputs_that_would_replace_inputs(tmp_path, case, words):
    src = _images(tmp_path / "in", ["p.png", "q.jpg", "r.png", "r_overlay.png"])
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    inputs, out, overlay = {
        "same folder": ([src], src, False),
        "file beside": ([src / "p.png"], src, False),                  # its label map would be src/p.png
        "overlay name": ([src / "r.png", src / "r_overlay.png"], tmp_path / "o", True),
        "out is a file": ([src / "q.jpg"], src / "p.png", False),
    }[case]
    with pytest.raises(PixelsegError, match=words):
        jobs.plan(inputs, out, overlay)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_a_jpeg_predicted_into_its_own_folder_under_another_name_is_allowed(tmp_path):
    src = _images(tmp_path / "in", ["p.jpg"])
    plan = jobs.plan([src / "p.jpg"], src)                          # writes in/p.png: a new file
    assert outputs.planned_outputs(plan.paths, plan.out_dir, False) == [src / "p.png"]


def test_shard_splits_by_stem_over_ranks(tmp_path, monkeypatch):
    paths = [Path(f"d{i % 2}") / f"s{i // 2}.png" for i in range(10)]   # every stem twice
    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        mine, r, w = jobs.shard(paths)
        assert (r, w) == (rank, 3)
        shares.append(mine)
    assert sorted(p for s in shares for p in s) == sorted(paths)    # every image once
    for s in shares:                                                 # a stem's images stay together
        assert all(sum(q.stem == p.stem for q in s) == 2 for p in s)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(PixelsegError, match="torchrun"):
        jobs.shard(paths)


def test_run_writes_what_the_predictor_predicts(random_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 24 + 8 * i, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    pred = Predictor(random_run, "cpu", backend="torch")
    r = jobs.run(pred, jobs.plan([src], tmp_path / "out"), batch_size=2)
    assert r.images == 3 and r.backend == "torch" and len(r.written) == 3 and r.images_per_second > 0
    for i in range(3):
        got = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        assert got.shape == (40, 24 + 8 * i) and np.array_equal(got, pred.predict(src / f"im{i}.png"))
    with pytest.raises(PixelsegError, match="batch size 0"):
        jobs.run(pred, jobs.plan([src], tmp_path / "out2"), batch_size=0)
    assert not (tmp_path / "out2").exists()
