"""The dataset doctor finds each problem planted in a corrupted fixture, and its statistics are right."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli import main
from pixelseg.data.tools.doctor import diagnose, phash, suggest_image_size

from tests.helpers import dataset_makers as M


def _folder(root, spec):
    """spec: {split: {stem: mask array}}; images are distinct noise (seeded by split and stem)."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": ["bg", "cat", "dog"]}))
    for split, items in spec.items():
        for k, (stem, mask) in enumerate(items.items()):
            M.image(root / split / "images" / f"{stem}.png", 100 * len(split) + k, mask.shape)
            M.save_gray(root / split / "masks" / f"{stem}.png", mask)
    return root


def _planted(tmp_path):
    b = M.blocks
    root = _folder(tmp_path / "ds", {
        "train": {"t0": b(0, [0, 1]), "t1": b(1, [0, 1]), "t2": b(2, [0, 1]), "t3": b(3, [0, 1]), "t4": b(4, [0, 1]),
                  "allign": np.full((M.H, M.W), 255, np.uint8)},
        "val": {"v0": b(5, [0, 1, 2]), "v1": b(6, [0, 1])},
    })
    tr, va = root / "train", root / "val"
    M.image(tr / "images" / "lonely.png", 7)                                             # 1 image without mask
    M.save_gray(va / "masks" / "orphan.png", b(0, [0]))                                  # 2 mask without image
    (tr / "images" / "t1.png").write_bytes((tr / "images" / "t1.png").read_bytes()[:60])  # 3 truncated image
    M.save_gray(tr / "masks" / "t2.png", np.zeros((10, 12), np.uint8))                  # 4 size mismatch
    bad = b(3, [0, 1])
    bad[0, 0] = 7
    M.save_gray(tr / "masks" / "t3.png", bad)                                            # 5 value 7 of 3 classes
    # 6 a train image re-encoded as a slightly smaller JPEG in val: the same picture, different bytes
    smooth = np.kron(np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    Image.fromarray(smooth).save(tr / "images" / "t4.png")
    M.save_gray(tr / "masks" / "t4.png", np.zeros((48, 64), np.uint8))
    Image.fromarray(smooth).resize((56, 42)).save(va / "images" / "dup.jpg", quality=85)
    M.save_gray(va / "masks" / "dup.png", np.zeros((42, 56), np.uint8))
    return root


def test_doctor_finds_every_planted_problem(tmp_path):
    root = _planted(tmp_path)
    rep = diagnose(root)
    text = "\n".join(rep.problems)
    tr, va = root / "train", root / "val"
    assert f"{tr / 'images' / 'lonely.png'}: has no mask" in text
    assert f"{va / 'masks' / 'orphan.png'}: mask without an image" in text
    assert f"{tr / 'images' / 't1.png'}: image cannot be decoded" in text
    assert f"{tr / 'masks' / 't2.png'}: mask is 12x10" in text
    assert f"{tr / 'masks' / 't3.png'}: mask value(s) [7]" in text
    dup = [p for p in rep.problems if "same picture" in p]
    assert len(dup) == 1 and "dup.jpg" in dup[0] and "t4.png" in dup[0]
    assert rep.duplicates[0][0] == "train" and rep.duplicates[0][2] == "val"
    assert len(rep.problems) == 6, rep.problems
    warn = "\n".join(rep.warnings)
    assert "all ignore" in warn and "allign.png" in warn
    assert "classes in val but never in train: dog" in warn


def test_doctor_statistics(tmp_path):
    # train: image a has bg 3/4 + cat 1/4; image b is all cat. val: a single dog.
    a = np.zeros((16, 16), np.uint8)
    a[:8, :8] = 1
    root = _folder(tmp_path / "s", {"train": {"a": a, "b": np.ones((16, 32), np.uint8)},
                                    "val": {"c": np.full((16, 16), 2, np.uint8)}})
    rep = diagnose(root)
    assert rep.problems == []
    tr = rep.splits["train"]
    assert tr.pixels.tolist() == [192, 64 + 512, 0, 0] and tr.images_with.tolist() == [1, 2, 0]
    assert tr.background_only == 0 and rep.splits["val"].images_with.tolist() == [0, 0, 1]
    # median frequency: freq(bg) = 192/256, freq(cat) = 576/768; median of the two seen classes
    f_bg, f_cat = 192 / 256, 576 / 768
    med = np.median([f_bg, f_cat])
    assert rep.class_weights == pytest.approx([med / f_bg, med / f_cat, 1.0], rel=1e-5)
    assert rep.sizes["height"] == {"min": 16, "median": 16, "max": 16} and rep.sizes["distinct_sizes"] == 2
    assert rep.suggested_image_size == (32, 32)
    d = rep.to_dict()
    json.dumps(d)
    assert d["splits"]["val"]["images_with"]["dog"] == 1 and d["format"] == "folder"
    # object sizes on the train masks: a's cat is one 8x8 object; b is all cat (one 16x32 object)
    cat = d["objects"]["per_class"]["cat"]
    assert d["objects"]["masks"] == 2 and cat["objects"] == 2 and cat["median_extent_px"] == 20.0
    assert d["objects"]["background"] == "cat" and d["objects"]["per_class"]["dog"]["objects"] == 0


def test_suggested_size_is_the_median_capped_and_divisible():
    assert suggest_image_size([(1024, 2048)] * 3) == (512, 1024)
    assert suggest_image_size([(375, 500), (480, 640), (500, 500)]) == (480, 512)
    assert suggest_image_size([(10, 20)]) == (32, 32)


def test_phash_is_robust_to_resizing_and_separates_different_pictures():
    rng = np.random.default_rng(0)
    a = np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    b = np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    small = np.asarray(Image.fromarray(a).resize((100, 75)))
    assert bin(phash(a) ^ phash(small)).count("1") <= 4
    assert bin(phash(a) ^ phash(b)).count("1") > 10


def test_doctor_aggregates_unknown_colors_over_files(tmp_path):
    M.make_colormask(tmp_path)
    for split, stem, n in (("train", "a", 3), ("val", "c", 5)):
        p = tmp_path / split / "masks" / f"{stem}.png"
        arr = np.array(Image.open(p))
        arr[0, :n] = (7, 7, 7)
        Image.fromarray(arr).save(p)
    rep = diagnose(tmp_path)
    assert len(rep.problems) == 1
    msg = rep.problems[0]
    assert "[7, 7, 7]: 8 px" in msg and "a.png" in msg


def test_verify_cli_exit_codes_and_json(tmp_path, capsys):
    root = _planted(tmp_path)
    out_json = tmp_path / "r.json"
    rc = main(["verify-dataset", str(root), "--json", str(out_json)])
    err = capsys.readouterr().err
    assert rc == 1
    assert len([ln for ln in err.splitlines() if ln.startswith("problem:")]) == 6
    assert "verdict: 6 problem(s)" in err
    assert len(json.loads(out_json.read_text())["problems"]) == 6
    clean = tmp_path / "clean"
    M.make_cityscapes(clean)
    rc = main(["verify-dataset", str(clean), "--format", "cityscapes"])
    out = capsys.readouterr().out
    assert rc == 0 and "verdict: OK" in out and "cityscapes format, 19 classes" in out
    assert "train would use on this machine" in " ".join(out.split())          # the recipe's own plan


def test_verify_help_lists_every_layout(capsys):
    from pixelseg.data.formats import FORMATS
    with pytest.raises(SystemExit):
        main(["verify-dataset", "-h"])
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in FORMATS) and "leftImg8bit" in out and "_annotations.coco.json" in out
