"""Checkpoints: safetensors weights, resumable state read with weights_only=True, atomic writes."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import safetensors.torch
from pixelseg.run.checkpoints import load_state, save_state, save_weights
from pixelseg.errors import PixelsegError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _trained():
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(2, 3, 9, 11)).square().mean().backward()
        opt.step()
    return net, opt


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_weights_is_plain_safetensors(tmp_path):
    net, _ = _trained()
    path = tmp_path / "sub" / "model.safetensors"   # the folder is made on demand
    save_weights(path, net)
    loaded = load_file(str(path))
    expected = net.state_dict()
    assert set(loaded) == set(expected)
    for k, v in expected.items():
        assert torch.equal(loaded[k], v), k
    assert _files(path.parent) == ["model.safetensors"]


def test_save_weights_of_non_contiguous_tensor(tmp_path):
    net = nn.Linear(3, 4)
    with torch.no_grad():
        net.weight = nn.Parameter(torch.randn(3, 4).t())  # a transposed view
    assert not net.weight.is_contiguous()
    save_weights(tmp_path / "w.safetensors", net)
    assert torch.equal(load_file(str(tmp_path / "w.safetensors"))["weight"], net.weight.detach())


def test_state_round_trip(tmp_path):
    net, opt = _trained()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 7, "step": 123,
             "best_miou": 0.625, "name": "unet", "history": [0.1, 0.2], "scaler": None,
             "rng": torch.get_rng_state()}
    path = tmp_path / "last.pt"
    save_state(path, state)
    got = load_state(path)
    assert got["epoch"] == 7 and got["step"] == 123 and got["best_miou"] == 0.625
    assert got["name"] == "unet" and got["history"] == [0.1, 0.2] and got["scaler"] is None
    assert torch.equal(got["rng"], state["rng"])
    for k, v in state["model"].items():
        assert torch.equal(got["model"][k], v), k
    # the optimizer moments come back and resume where they were
    net2 = _net()
    net2.load_state_dict(got["model"])
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    opt2.load_state_dict(got["optimizer"])
    for group in opt.state_dict()["state"]:
        for key, v in opt.state_dict()["state"][group].items():
            assert torch.equal(opt2.state_dict()["state"][group][key], v)
    assert _files(tmp_path) == ["last.pt"]


def test_save_state_replaces_previous(tmp_path):
    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1})
    save_state(path, {"epoch": 2})
    assert load_state(path) == {"epoch": 2}
    assert _files(tmp_path) == ["last.pt"]


def _partial_writer(exc):
    def write(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PARTIAL")
        raise exc
    return write


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_state_keeps_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1})
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _partial_writer(exc))
    with pytest.raises(type(exc)):
        save_state(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["last.pt"]          # no temp file left behind
    monkeypatch.undo()
    assert load_state(path) == {"epoch": 1}


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_weights_keeps_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "model.safetensors"
    net = _net()
    save_weights(path, net)
    before = path.read_bytes()

    def write(state, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"PARTIAL")
        raise exc

    monkeypatch.setattr(safetensors.torch, "save_file", write)
    with pytest.raises(type(exc)):
        save_weights(path, _trained()[0])
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["model.safetensors"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _partial_writer(OSError("disk full")))
    with pytest.raises(OSError):
        save_state(tmp_path / "last.pt", {"epoch": 1})
    assert _files(tmp_path) == []


def test_load_state_missing_file(tmp_path):
    path = tmp_path / "last.pt"
    with pytest.raises(PixelsegError) as e:
        load_state(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"garbage, not a torch file", "truncated"])
def test_load_state_damaged_file(tmp_path, content):
    path = tmp_path / "last.pt"
    if content == "truncated":
        save_state(path, {"model": _net().state_dict(), "epoch": 3})
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(PixelsegError) as e:
        load_state(path)
    assert str(path) in str(e.value)


def test_load_state_refuses_pickled_code(tmp_path, evil_payload):
    payload, marker = evil_payload
    path = tmp_path / "last.pt"
    torch.save({"epoch": 1, "payload": payload}, path)
    with pytest.raises(PixelsegError) as e:
        load_state(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_saved_files_get_usual_permissions(tmp_path):
    # the temporary file is made owner-only; the result must be readable like any other file
    # (a run folder on a shared server, a server process under another user)
    mask = os.umask(0o022)
    os.umask(mask)
    save_weights(tmp_path / "model.safetensors", _net())
    save_state(tmp_path / "last.pt", {"epoch": 1})
    for name in ["model.safetensors", "last.pt"]:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_weights_with_tied_modules_save_and_load_strictly(tmp_path):
    """Tied weights (one module under two names) are saved as two tensors, and every key loads back."""
    from safetensors.torch import load_file

    from pixelseg.run.checkpoints import save_weights

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Sequential(self.conv, torch.nn.ReLU())

    model = Tied()
    save_weights(tmp_path / "w.safetensors", model)
    state = load_file(str(tmp_path / "w.safetensors"))
    assert set(state) == {"conv.weight", "conv.bias", "head.0.weight", "head.0.bias"}
    assert torch.equal(state["head.0.weight"], model.conv.weight.detach())
    Tied().load_state_dict(state, strict=True)
