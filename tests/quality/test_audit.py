"""`pixelseg audit`: planted label errors are ranked first and named by kind (a perfect stub model makes
this exact and fast); the fold views and the CLI end to end on a tiny run; user mistakes are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.quality.audit import (
    AuditSettings,
    TopImages,
    audit_samples,
    fold_of,
    score_image,
    write_audit,
    write_view,
)
from pixelseg.cli import main
from pixelseg.data.formats import open_dataset
from pixelseg.data.tools.synth import class_table, make_scene
from pixelseg.testing import plant_error

PLANTED = {1: "swap", 3: "missing", 5: "shifted", 7: "wrong_image"}


def _one_hot(mask: np.ndarray, k: int = 6, sure: float = 0.95) -> np.ndarray:
    probs = np.full((k, *mask.shape), (1 - sure) / (k - 1), np.float32)
    np.put_along_axis(probs, mask[None].astype(np.int64), sure, 0)
    return probs


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A folder dataset of 10 scenes, four with one planted error each; the clean masks by stem."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(1)
    scenes = [make_scene(np.random.default_rng(100 + i), (64, 64), 3, 4) for i in range(10)]
    clean = {}
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
    for i, (img, mask) in enumerate(scenes):
        stem = f"img{i}"
        clean[stem] = mask
        shown = mask
        if i in PLANTED:
            shown = plant_error(mask, PLANTED[i], rng, 6, other=scenes[(i + 4) % 10][1], offset=0.12)
            assert shown is not None and (shown != mask).mean() > 0.01
        Image.fromarray(img).save(root / "train" / "images" / f"{stem}.png")
        Image.fromarray(shown).save(root / "train" / "masks" / f"{stem}.png")
    Image.fromarray(scenes[0][0]).save(root / "val" / "images" / "v.png")
    Image.fromarray(scenes[0][1]).save(root / "val" / "masks" / "v.png")
    (root / "classes.json").write_text(json.dumps(class_table().to_dict()))
    return root, clean


def test_planted_errors_rank_first_with_their_kind(planted, tmp_path):
    root, clean = planted
    index = open_dataset(root, "folder")
    top = TopImages(4)
    findings = audit_samples(index.split("train"), index, lambda s: _one_hot(clean[s.stem]), AuditSettings(), top)
    res = write_audit(tmp_path, findings, top, index.classes, split="train", folds=0, data=str(root))
    ranked = res["images"]
    bad = {f"img{i}": kind for i, kind in PLANTED.items()}
    assert {e["stem"] for e in ranked[:4]} == set(bad)
    assert all(e["score"] == 0 and e["regions"] == [] for e in ranked[4:])      # a perfect model: no finding
    assert {e["stem"]: e["kind"] for e in ranked[:4]} == bad
    shifted = next(e for e in ranked if e["stem"] == "img5")
    assert shifted["shift"] is not None and max(map(abs, shifted["shift"])) >= 5
    for e in ranked[:4]:
        for r in e["regions"]:
            x0, y0, x1, y1 = r["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and r["area"] <= (x1 - x0) * (y1 - y0)
    on_disk = json.loads((tmp_path / "audit.json").read_text())
    assert [e["stem"] for e in on_disk["images"]] == [e["stem"] for e in ranked]
    html = (tmp_path / "audit.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "img7" in html


def test_swapped_object_is_one_region_naming_both_classes():
    _, mask = make_scene(np.random.default_rng(3), (64, 64), 2, 2)
    bad = plant_error(mask, "swap", np.random.default_rng(0), 6)
    changed = bad != mask
    res = score_image(_one_hot(mask), bad)
    r = res["regions"][0]
    assert res["kind"] == "swap" and r["area"] == changed.sum()
    assert r["mask_class"] == int(np.unique(bad[changed])[0]) and r["model_class"] == int(np.unique(mask[changed])[0])


def test_unsure_model_finds_nothing():
    _, mask = make_scene(np.random.default_rng(4), (64, 64))
    bad = plant_error(mask, "missing", np.random.default_rng(0), 6)
    res = score_image(_one_hot(mask, sure=0.6), bad, settings=AuditSettings(threshold=0.7))
    assert res["score"] == 0 and res["regions"] == []


def test_folds_cover_every_image_once_and_the_view_reads_back(planted, tmp_path):
    fold = fold_of(10, 3, seed=0)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 4]
    assert (fold_of(10, 3, seed=0) == fold).all() and not (fold_of(10, 3, seed=1) == fold).all()
    root, _ = planted
    index = open_dataset(root, "folder")
    train = [s for s, f in zip(index.split("train"), fold) if f != 0]
    view = open_dataset(write_view(tmp_path / "view", index, train, index.split("val")), "folder")
    assert len(view.split("train")) == len(train) and len(view.split("val")) == 1
    assert (tmp_path / "view" / "train" / "images").iterdir().__next__().is_symlink()
    assert view.classes.names == index.classes.names


@pytest.fixture(scope="module")
def tiny_run(tiny_unet_run):
    return tiny_unet_run


def test_cli_audit_end_to_end_with_the_run_as_is(tiny_run, tmp_path, capsys):
    root, run = tiny_run
    assert main(["audit", str(run), "--folds", "0", "--out", str(tmp_path / "a"), "--gallery", "3", "--device", "cpu"]) == 0
    res = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert res["folds"] == 0 and res["split"] == "train"
    assert sorted(e["stem"] for e in res["images"]) == [f"train_{i:05d}" for i in range(8)]
    scores = [e["score"] for e in res["images"]]
    assert scores == sorted(scores, reverse=True) and [e["rank"] for e in res["images"]] == list(range(1, 9))
    assert all(e["kind"] in ("swap", "missing", "extra", "shifted", "wrong_image", "none") for e in res["images"])
    assert (tmp_path / "a" / "audit.html").read_text().count("data:image/png;base64,") == 3
    assert "audit.json" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["audit", "{tmp}/nowhere"], "run folder not found"),
    (["audit", "{tmp}"], "not a pixelseg run folder"),
    (["audit", "{run}", "--data", "{tmp}/nodata"], "dataset folder not found"),
    (["audit", "{run}", "--folds", "1"], "--folds 1"),
])
def test_cli_mistakes_are_one_line(tiny_run, tmp_path, capsys, args, needle):
    _, run = tiny_run
    rc = main([a.format(tmp=tmp_path, run=run) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_fold_line_warns_only_when_a_fold_model_is_weak():
    from pixelseg.quality.audit import _fold_line
    ok = _fold_line(0, 3, {"mIoU": 0.817}, {"mIoU": 0.452})
    assert ok == "fold 1/3: val mIoU 0.817 (the run's: 0.452)"
    weak = _fold_line(1, 3, {"mIoU": 0.30}, {"mIoU": 0.60})
    assert weak.startswith("fold 2/3: val mIoU 0.300 (the run's: 0.600)") and "raise --fold-minutes" in weak
    assert "raise --fold-minutes" in _fold_line(2, 3, None, {"mIoU": 0.6})
