"""Bring-your-own-folder intake: ROOT/images + ROOT/masks with no splits, flat <stem> + <stem>_mask pairs,
stray mask values flagged by the doctor, and verify-dataset printing the plan `train` will use."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixelseg
from pixelseg.cli.main import main
from pixelseg.data.tools.doctor import diagnose
from pixelseg.data.formats import detect_format, open_dataset
from pixelseg.errors import PixelsegError


def _pair(i: int, size=(32, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    coarse = rng.integers(0, 120, (4, 4, 3), dtype=np.uint8)      # a distinct picture each (no near-duplicates)
    image = np.kron(coarse, np.ones((size[0] // 4, size[1] // 4, 1), np.uint8))
    mask = np.zeros(size, np.uint8)
    cls = 1 + i % 2
    y, x = 2 + i % 10, 2 + (3 * i) % 10
    image[y:y + 16, x:x + 16] = (220, 40, 40) if cls == 1 else (40, 220, 40)
    mask[y:y + 16, x:x + 16] = cls
    return image, mask


def make_unsplit(root: Path, n: int = 12) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = _pair(i)
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"img{i:02d}.png")
    return root


def make_pairs(root: Path, n: int = 12, suffix: str = "_mask") -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        image, mask = _pair(i)
        Image.fromarray(image).save(root / f"scan{i:02d}.png")
        Image.fromarray(mask).save(root / f"scan{i:02d}{suffix}.png")
    return root


def test_images_and_masks_without_splits_are_read_with_a_held_out_val(tmp_path):
    root = make_unsplit(tmp_path / "ds")
    assert detect_format(root) == "folder"
    index = open_dataset(root)
    assert len(index.splits["train"]) + len(index.splits["val"]) == 12 and index.splits["val"]
    stems = {s.stem for s in index.splits["train"]} | {s.stem for s in index.splits["val"]}
    assert stems == {f"img{i:02d}" for i in range(12)}
    assert not {s.stem for s in index.splits["train"]} & {s.stem for s in index.splits["val"]}
    assert index.classes.num_classes == 3
    assert any("held out" in n for n in index.notes)
    # the hold-out is the hash rule every layout uses: adding a file does not move the others
    (root / "images" / "img99.jpg").write_bytes((root / "images" / "img00.jpg").read_bytes())
    (root / "masks" / "img99.png").write_bytes((root / "masks" / "img00.png").read_bytes())
    again = open_dataset(root)
    assert {s.stem for s in index.splits["val"]} <= {s.stem for s in again.splits["val"]}


def test_unsplit_folder_with_a_missing_mask_names_the_file(tmp_path):
    root = make_unsplit(tmp_path / "ds")
    (root / "masks" / "img03.png").unlink()
    with pytest.raises(PixelsegError, match=r"img03\.jpg: has no mask"):
        open_dataset(root)


@pytest.mark.parametrize("suffix", ["_mask", "_label", "-mask", "_gt"])
def test_flat_pairs_are_detected_and_paired(tmp_path, suffix):
    root = make_pairs(tmp_path / "flat", suffix=suffix)
    assert detect_format(root) == "pairs"
    index = open_dataset(root)
    samples = index.splits["train"] + index.splits["val"]
    assert len(samples) == 12 and index.splits["val"]
    assert all(s.mask.name == f"{s.image.stem}{suffix}.png" for s in samples)
    assert index.classes.num_classes == 3


def test_flat_pairs_read_classes_json_values(tmp_path):
    root = make_pairs(tmp_path / "flat", 6)
    for p in root.glob("*_mask.png"):      # stored as 0/100/200
        m = np.asarray(Image.open(p)) * 100
        Image.fromarray(m.astype(np.uint8)).save(p)
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "red", "green"], "values": [0, 100, 200]}))
    index = open_dataset(root)
    from pixelseg.data.labels import load_mask
    s = index.splits["train"][0]
    assert set(np.unique(load_mask(s, None)).tolist()) <= {0, 1, 2}
    assert index.classes.names == ("bg", "red", "green")


def test_flat_pairs_unpaired_image_is_one_line_or_a_doctor_problem(tmp_path):
    root = make_pairs(tmp_path / "flat", 6)
    (root / "scan03_mask.png").unlink()
    with pytest.raises(PixelsegError, match=r"scan03\.png: has no mask .*scan03_mask\.png"):
        open_dataset(root)
    rep = diagnose(root)
    assert any("scan03.png: has no mask" in p for p in rep.problems)
    assert sum(st.labelled for st in rep.splits.values()) == 5


def test_a_folder_of_images_without_masks_is_not_a_dataset(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        Image.fromarray(_pair(i)[0]).save(root / f"p{i}.png")
    with pytest.raises(PixelsegError, match="no known dataset layout.*_mask.png"):
        detect_format(root)


def test_a_stray_mask_value_is_a_problem_to_confirm(tmp_path, capsys):
    root = make_unsplit(tmp_path / "ds")
    m = np.asarray(Image.open(root / "masks" / "img04.png")).copy()
    m[0, :4] = 9                                       # 4 pixels of value 9: a brush slip
    Image.fromarray(m).save(root / "masks" / "img04.png")
    rep = diagnose(root)
    stray = [p for p in rep.problems if "mask value 9" in p]
    assert len(stray) == 1 and "4 pixel(s) in 1 mask(s)" in stray[0] and "img04.png" in stray[0]
    assert "3..8 empty classes" in stray[0] and "classes.json" in stray[0]
    assert main(["verify-dataset", str(root)]) == 1
    assert "mask value 9" in capsys.readouterr().err
    # declared in classes.json, a rare class is only a warning (the user said it exists)
    names = [f"c{i}" for i in range(10)]
    (root / "classes.json").write_text(json.dumps({"names": names}))
    rep = diagnose(root)
    assert not [p for p in rep.problems if "c9" in p or "value 9" in p]
    assert any("'c9' has only 4 pixel(s)" in w for w in rep.warnings)


def test_a_real_class_in_many_files_is_not_flagged(tmp_path):
    rep = diagnose(make_unsplit(tmp_path / "ds"))
    assert rep.problems == [] and not any("has only" in w for w in rep.warnings)


def test_verify_dataset_prints_the_plan_train_uses(tmp_path, capsys):
    from pixelseg.config import Config, DataConfig
    from pixelseg.engine.recipe import detect_hardware, resolve

    root = make_pairs(tmp_path / "flat")
    assert main(["verify-dataset", str(root)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    cfg, _ = resolve(Config(data=DataConfig(root=str(root))), open_dataset(root), detect_hardware())
    h, w = cfg.data.image_size
    assert "train would use on this machine" in out
    assert f"model {cfg.model.name}" in out and f"input {h}x{w} (HxW)" in out
    assert f"batch {cfg.train.batch_size}" in out


@pytest.mark.slow
def test_training_on_flat_pairs_just_works(tmp_path):
    root = make_pairs(tmp_path / "flat", 8)
    run = pixelseg.train(root, "unet", encoder="resnet18", encoder_weights="none", out=str(tmp_path / "run"),
                         epochs=1, image_size=(32, 32), batch_size=4, num_workers=0, threads=1, quiet=True)
    cfg = (run / "config.yaml").read_text()
    assert "format: pairs" in cfg
    assert json.loads((run / "metrics.json").read_text())["images"] >= 1
