"""The name -> builder registry."""
from __future__ import annotations

import pytest

from pixelseg.errors import PixelsegError
from pixelseg.models import MODELS
from pixelseg.registry import Registry


def _registry() -> Registry:
    reg = Registry("loss")
    for name in ["cross_entropy", "dice", "focal", "lovasz"]:
        reg.register(name, kind="test")(lambda name=name: name)
    return reg


def test_register_get_and_list():
    reg = _registry()
    assert reg.names() == ["cross_entropy", "dice", "focal", "lovasz"]
    entry = reg.get("dice")
    assert entry.name == "dice" and entry.builder() == "dice" and entry.info == {"kind": "test"}
    assert "focal" in reg and "unet" not in reg
    assert sorted(e.name for e in reg) == reg.names()


def test_register_returns_the_function():
    reg = Registry("model")

    @reg.register("tiny")
    def tiny():
        return 1

    assert tiny() == 1 and reg.get("tiny").builder is tiny


def test_duplicate_registration_raises():
    reg = _registry()
    with pytest.raises(ValueError, match="'dice' is registered twice"):
        reg.register("dice")(lambda: None)
    assert reg.get("dice").builder() == "dice"   # the first registration stays


def test_unknown_name_suggests_the_closest():
    with pytest.raises(PixelsegError) as e:
        _registry().get("dise")
    msg = str(e.value)
    assert "unknown loss 'dise'" in msg
    hint, valid = msg.split("valid:")
    assert "did you mean dice" in hint and "lovasz" not in hint
    assert valid.strip() == "cross_entropy, dice, focal, lovasz"
    assert "\n" not in msg


def test_unknown_name_without_close_match_lists_valid_names():
    with pytest.raises(PixelsegError) as e:
        _registry().get("zzzzzz")
    msg = str(e.value)
    assert "did you mean" not in msg and "cross_entropy, dice, focal, lovasz" in msg


def test_empty_registry():
    with pytest.raises(PixelsegError, match="unknown model 'x'"):
        Registry("model").get("x")


def test_model_registry_has_the_documented_models():
    assert {"unet", "deeplabv3plus", "fpn", "lraspp"} <= set(MODELS.names())
    for entry in MODELS:
        assert entry.info.get("default_encoder"), entry.name
        assert entry.info.get("use"), entry.name
