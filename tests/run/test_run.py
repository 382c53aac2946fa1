"""The run folder: model.json written and read back, and every way it can be wrong is a one-line user error."""
from __future__ import annotations

import json

import pytest
import torch

from pixelseg.data.classes import ClassTable
from pixelseg.run.checkpoints import save_weights
from pixelseg.errors import PixelsegError
from pixelseg.models import build_model
from pixelseg.run.folder import Preprocessing, RUN_FORMAT, RunFolder, RunInfo


pytestmark = pytest.mark.usefixtures("one_thread")


def _info(path, model="unet", encoder="resnet18", num_classes=3, in_channels=3, resize="stretch", scale=None) -> RunInfo:
    names = tuple(["background", "road", "car", "sky", "tree"][:num_classes])
    classes = ClassTable(names, tuple((10 * i, 20 * i, 30 * i) for i in range(num_classes)), ignore_index=255)
    pre = Preprocessing((64, 96), tuple([120.5] * in_channels), tuple([60.25] * in_channels), in_channels, resize, scale)
    return RunInfo(path, model, encoder, classes, pre, {"miou": 0.5, "epoch": 4})


@pytest.mark.parametrize("resize, scale", [("stretch", None), ("scale", 0.5)])
def test_write_and_read_round_trip(tmp_path, resize, scale):
    info = _info(tmp_path / "run", resize=resize, scale=scale)
    RunFolder(info.path).write_info(info)
    assert RunFolder(info.path).is_run()
    d = json.loads((info.path / "model.json").read_text(encoding="utf-8"))
    assert d["format"] == RUN_FORMAT and "pixelseg_version" in d
    assert d["model"] == {"name": "unet", "encoder": "resnet18", "num_classes": 3, "in_channels": 3}

    got = RunFolder(info.path).info(need_weights=False)
    assert got == info
    assert got.preprocessing.image_size == (64, 96) and got.preprocessing.resize == resize
    assert got.preprocessing.scale == scale
    assert got.classes.colors == info.classes.colors
    assert got.weights == info.path / "model.safetensors"


def test_load_model_round_trip(tmp_path):
    info = _info(tmp_path, model="fpn", num_classes=2, in_channels=1)
    RunFolder(info.path).write_info(info)
    torch.manual_seed(0)
    trained = build_model("fpn", 2, 1).eval()
    save_weights(info.weights, trained)
    model = (RunFolder(tmp_path).info()).load_model()
    assert not model.training
    x = torch.randn(1, 1, 37, 53)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


def test_read_run_missing_folder(tmp_path):
    path = tmp_path / "no_such_run"
    with pytest.raises(PixelsegError) as e:
        RunFolder(path).info()
    assert str(path) in str(e.value)
    assert not RunFolder(path).is_run()


def test_read_run_folder_without_model_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(PixelsegError) as e:
        RunFolder(tmp_path).info()
    assert str(tmp_path) in str(e.value) and "model.json" in str(e.value)


def _valid_json(tmp_path) -> dict:
    RunFolder(_info(tmp_path).path).write_info(_info(tmp_path))
    return json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("damage", ["not json", "truncated", "list", "no model", "no preprocessing",
                                    "model not an object", "bad classes", "bad image_size", "binary"])
def test_read_run_damaged_model_json(tmp_path, damage):
    d = _valid_json(tmp_path)
    mj = tmp_path / "model.json"
    text = json.dumps(d)
    if damage == "not json":
        text = "{this is not json"
    elif damage == "truncated":
        text = text[: len(text) // 2]
    elif damage == "list":
        text = json.dumps([d])
    elif damage == "no model":
        del d["model"]
        text = json.dumps(d)
    elif damage == "no preprocessing":
        del d["preprocessing"]
        text = json.dumps(d)
    elif damage == "model not an object":
        d["model"] = "unet"
        text = json.dumps(d)
    elif damage == "bad classes":
        d["classes"] = {"names": ["a", "a"]}
        text = json.dumps(d)
    elif damage == "bad image_size":
        d["preprocessing"]["image_size"] = 64
        text = json.dumps(d)
    if damage == "binary":
        mj.write_bytes(b"\xff\xfe\x00garbage")
    else:
        mj.write_text(text, encoding="utf-8")
    with pytest.raises(PixelsegError) as e:
        RunFolder(tmp_path).info(need_weights=False)
    assert str(mj) in str(e.value)


@pytest.mark.parametrize("fmt", ["pixelseg-run/0", "pixelseg-run/2", None])
def test_read_run_wrong_format_version(tmp_path, fmt):
    d = _valid_json(tmp_path)
    d["format"] = fmt
    (tmp_path / "model.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(PixelsegError) as e:
        RunFolder(tmp_path).info(need_weights=False)
    msg = str(e.value)
    assert str(tmp_path / "model.json") in msg and RUN_FORMAT in msg


def test_read_run_missing_weights(tmp_path):
    RunFolder(_info(tmp_path).path).write_info(_info(tmp_path))
    with pytest.raises(PixelsegError) as e:
        RunFolder(tmp_path).info()
    assert str(tmp_path / "model.safetensors") in str(e.value) and "--resume" in str(e.value)
    assert RunFolder(tmp_path).info(need_weights=False).model == "unet"


@pytest.mark.parametrize("weights_from", [("deeplabv3plus", 3, 3), ("unet", 5, 3), ("unet", 3, 1)],
                         ids=["other-architecture", "other-num-classes", "other-in-channels"])
def test_load_model_with_weights_of_another_model(tmp_path, weights_from):
    name, k, c = weights_from
    RunFolder(_info(tmp_path, model="unet", num_classes=3, in_channels=3).path).write_info(_info(tmp_path, model="unet", num_classes=3, in_channels=3))
    save_weights(tmp_path / "model.safetensors", build_model(name, k, c))
    with pytest.raises(PixelsegError) as e:
        (RunFolder(tmp_path).info()).load_model()
    assert str(tmp_path / "model.safetensors") in str(e.value) and "different runs" in str(e.value)


def test_load_model_with_damaged_weights(tmp_path):
    RunFolder(_info(tmp_path).path).write_info(_info(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(PixelsegError) as e:
        (RunFolder(tmp_path).info()).load_model()
    assert str(tmp_path / "model.safetensors") in str(e.value)


@pytest.mark.parametrize("resize, scale", [("letterbox", None), ("scale", 0.0), ("scale", -1.0)])
def test_unknown_resize_mode_or_bad_scale_is_a_damaged_description(tmp_path, resize, scale):
    info = _info(tmp_path / "run", resize="scale", scale=0.5)
    RunFolder(info.path).write_info(info)
    p = info.path / "model.json"
    d = json.loads(p.read_text(encoding="utf-8"))
    d["preprocessing"]["resize"] = resize
    if scale is not None:
        d["preprocessing"]["scale"] = scale
    p.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(PixelsegError, match="model.json: damaged run description"):
        RunFolder(info.path).info(need_weights=False)
