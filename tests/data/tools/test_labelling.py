"""The labelling round trip: label maps out as LabelMe polygons that redraw them, corrected files back in as the
dataset's masks (old ones kept), and suggest / audit writing their picks for a labelling tool."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli import main
from pixelseg.data.classes import ClassTable
from pixelseg.data.formats import open_dataset
from pixelseg.data.tools.labelling import export_labelme, import_labelme, label_shapes
from pixelseg.data.labels import load_mask
from pixelseg.errors import PixelsegError

CLASSES = ClassTable(("background", "road", "car"), ((0, 0, 0), (128, 64, 128), (0, 0, 142)), 255)


def _scene() -> np.ndarray:
    label = np.zeros((48, 64), np.uint8)
    label[30:48, :] = 1                        # road along the bottom
    label[8:24, 10:30] = 2                     # a car with a hole of road in it, and the road inside the hole
    label[12:18, 16:22] = 0
    label[14:16, 18:20] = 1
    label[5:9, 45:47] = 2                      # a small region
    return label


def test_shapes_redraw_the_label_map(tmp_path):
    from pixelseg.data.labels import LabelMeShapes   # the reader pixelseg uses for LabelMe datasets
    label = _scene()
    shapes = label_shapes(label, CLASSES.names)
    assert {s["label"] for s in shapes} == {"road", "car", "_background_"}
    (tmp_path / "x.json").write_text(json.dumps({"shapes": shapes, "imageHeight": 48, "imageWidth": 64}))
    back = LabelMeShapes((("_background_", 0), ("road", 1), ("car", 2)))(tmp_path / "x.json")
    agree = (back == label).mean()
    assert agree > 0.97, agree
    for c in (1, 2):
        inter, union = ((back == c) & (label == c)).sum(), ((back == c) | (label == c)).sum()
        assert inter / union > 0.9


def _dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"f{i}.png")
        Image.fromarray(_scene() if i else np.zeros((48, 64), np.uint8)).save(root / "masks" / f"f{i}.png")
    (root / "classes.json").write_text(json.dumps(CLASSES.to_dict()))
    return root


def test_export_then_import_replaces_masks_and_keeps_the_old_ones(tmp_path):
    data = _dataset(tmp_path / "ds")
    out = tmp_path / "lm"
    # pre-labels: the good scene for f0 (whose mask is empty), and a new image g0 not in the dataset
    new_image = tmp_path / "g0.png"
    shutil.copyfile(data / "images" / "f1.png", new_image)
    export_labelme([(data / "images" / "f0.png", _scene()), (new_image, _scene())], CLASSES, out)
    assert sorted(p.name for p in out.iterdir()) == ["f0.json", "f0.png", "g0.json", "g0.png", "labels.txt"]
    doc = json.loads((out / "f0.json").read_text())
    assert doc["imagePath"] == "f0.png" and doc["imageData"] is None and (doc["imageHeight"], doc["imageWidth"]) == (48, 64)
    assert open_dataset(out).format == "labelme"              # what LabelMe writes back is a dataset pixelseg reads
    old = (data / "masks" / "f0.png").read_bytes()
    r = import_labelme(out, data, split="train")
    assert r["replaced"] == [str(data / "masks" / "f0.png")] and r["added"] == [str(data / "masks" / "g0.png")]
    assert (Path(r["backup"]) / "f0.png").read_bytes() == old
    assert (data / "images" / "g0.png").is_file()
    index = open_dataset(data)
    f0 = next(s for v in index.splits.values() for s in v if s.stem == "f0")
    assert (load_mask(f0, None) == _scene()).mean() > 0.97
    assert len([s for v in index.splits.values() for s in v]) == 5


def test_import_refuses_unknown_labels_and_writes_nothing(tmp_path):
    data = _dataset(tmp_path / "ds")
    out = tmp_path / "lm"
    export_labelme([(data / "images" / "f1.png", _scene())], CLASSES, out)
    doc = json.loads((out / "f1.json").read_text())
    doc["shapes"][0]["label"] = "truck"
    (out / "f1.json").write_text(json.dumps(doc))
    (out / "labels.txt").write_text("__ignore__\n_background_\nroad\ncar\ntruck\n")
    before = {p: p.read_bytes() for p in (data / "masks").iterdir()}
    with pytest.raises(PixelsegError, match="label 'truck' is not a class of"):
        import_labelme(out, data)
    assert {p: p.read_bytes() for p in (data / "masks").iterdir()} == before
    assert not (data / ".pixelseg-replaced").exists()


def test_export_never_writes_into_a_folder_with_files(tmp_path):
    out = tmp_path / "lm"
    out.mkdir()
    (out / "corrected.json").write_text("{}")
    with pytest.raises(PixelsegError, match="may hold corrected labels"):
        export_labelme([], CLASSES, out)
    assert (out / "corrected.json").read_text() == "{}"


def test_suggest_writes_pre_labels_and_the_cli_imports_them(tiny_unet_run, tmp_path, capsys):
    root, run = tiny_unet_run
    pool = tmp_path / "pool"
    pool.mkdir()
    for p in sorted((root / "data" / "val" / "images").iterdir())[:2]:
        shutil.copyfile(p, pool / f"new_{p.name}")
    assert main(["suggest", str(run), str(pool), "--n", "2", "--out", str(tmp_path / "sg"), "--labelme",
                 "--device", "cpu"]) == 0
    assert f"labelme: {tmp_path / 'sg' / 'labelme'}" in capsys.readouterr().out
    lm = tmp_path / "sg" / "labelme"
    assert len(list(lm.glob("*.json"))) == 2
    page = (tmp_path / "sg" / "suggest.html").read_text()
    assert 'id=legend' in page and "background" in page
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    assert main(["data", "import", str(lm), "--into", str(data), "--split", "train"]) == 0
    assert "0 mask(s) replaced, 2 added" in capsys.readouterr().out
    assert sorted(p.name for p in (data / "train" / "masks").glob("new_*")) == sorted(
        p.stem + ".png" for p in pool.iterdir())
    # a second export into the same folder is refused: it may hold corrections
    assert main(["suggest", str(run), str(pool), "--n", "2", "--out", str(tmp_path / "sg"), "--labelme"]) == 2
    assert "may hold corrected labels" in capsys.readouterr().err


def test_audit_writes_its_most_suspicious_masks_for_correction(tiny_unet_run, tmp_path, capsys):
    root, run = tiny_unet_run
    assert main(["audit", str(run), "--folds", "0", "--labelme", "2", "--out", str(tmp_path / "au"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"labelme: {tmp_path / 'au' / 'labelme'}" in out and "pixelseg data import" in out
    ranked = json.loads((tmp_path / "au" / "audit.json").read_text())["images"][:2]
    assert sorted(p.stem for p in (tmp_path / "au" / "labelme").glob("*.json")) == sorted(e["stem"] for e in ranked)
    # the files hold the CURRENT masks (to correct): read back, they are those masks
    back = open_dataset(tmp_path / "au" / "labelme", "labelme")
    index = open_dataset(root / "data")
    masks = {s.stem: load_mask(s, None) for v in index.splits.values() for s in v}
    for s in back.splits["train"] + back.splits.get("val", []):
        assert (load_mask(s, None) == masks[s.stem]).mean() > 0.9
    assert "id=legend" in (tmp_path / "au" / "audit.html").read_text()
