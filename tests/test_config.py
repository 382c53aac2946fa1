"""Config: unknown keys and wrong values are one-line errors naming the key; YAML round-trips exactly."""
from __future__ import annotations

import dataclasses

import pytest

from pixelseg.config import Config, dump_config, from_dict, load_config, valid_keys
from pixelseg.errors import PixelsegError


def _err(fn, *a, **kw) -> str:
    with pytest.raises(PixelsegError) as ei:
        fn(*a, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_defaults_and_frozen():
    cfg = from_dict({})
    assert cfg == Config()
    assert cfg.train.schedule == "poly" and cfg.data.image_size is None and cfg.train.lr is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0
    assert "train.lr" in valid_keys() and "data.image_size" in valid_keys()
    assert from_dict({"train": None}) == Config()   # an empty section is allowed


@pytest.mark.parametrize("d, key, suggestion", [
    ({"train": {"lrr": 0.1}}, "train.lrr", "train.lr"),
    ({"data": {"imagesize": 64}}, "data.imagesize", "data.image_size"),
    ({"model": {"encoder_weight": "imagenet"}}, "model.encoder_weight", "model.encoder_weights"),
])
def test_unknown_key_with_suggestion(d, key, suggestion):
    msg = _err(from_dict, d)
    assert f"'{key}'" in msg and f"did you mean '{suggestion}'" in msg


def test_unknown_section_and_bad_shapes():
    msg = _err(from_dict, {"optimizer": {"lr": 1}})
    assert "'optimizer'" in msg and "valid keys" in msg
    assert "mapping" in _err(from_dict, {"train": [1, 2]})
    assert "mapping" in _err(from_dict, ["train"])


@pytest.mark.parametrize("d, key, expect", [
    ({"train": {"lr": "abc"}}, "train.lr", "a number"),
    ({"train": {"lr": True}}, "train.lr", "a number"),
    ({"train": {"epochs": "ten"}}, "train.epochs", "an integer"),
    ({"train": {"epochs": 2.5}}, "train.epochs", "an integer"),
    ({"data": {"image_size": [64, 64, 3]}}, "data.image_size", "two positive integers"),
    ({"data": {"image_size": [0, 64]}}, "data.image_size", "two positive integers"),
    ({"data": {"image_size": "512"}}, "data.image_size", "two positive integers"),
    ({"data": {"format": 5}}, "data.format", "a string"),
    ({"loss": {"class_weights": "1,2"}}, "loss.class_weights", "a list of numbers"),
    ({"train": {"weight_decay": None}}, "train.weight_decay", "cannot be empty"),
])
def test_wrong_types_name_the_key(d, key, expect):
    msg = _err(from_dict, d)
    assert f"'{key}'" in msg and expect in msg


def test_coercions():
    cfg = from_dict({"data": {"image_size": 64}, "train": {"epochs": "5", "lr": "1e-3"},
                     "loss": {"class_weights": [1, 2.5]}})
    assert cfg.data.image_size == (64, 64)
    assert cfg.train.epochs == 5 and cfg.train.lr == pytest.approx(1e-3)
    assert cfg.loss.class_weights == [1.0, 2.5]
    assert from_dict({"data": {"image_size": [32, 48]}}).data.image_size == (32, 48)


@pytest.mark.parametrize("override, expect", [
    ({"train.epochs": -1}, "train.epochs must be positive"),
    ({"train.epochs": 0}, "train.epochs must be positive"),
    ({"train.lr": 0}, "train.lr must be positive"),
    ({"train.batch_size": 0}, "train.batch_size must be positive"),
    ({"train.schedule": "step"}, "train.schedule must be poly or cosine"),
    ({"train.amp": "fp8"}, "train.amp"),
    ({"data.format": "pascal"}, "data.format"),
    ({"data.augment": "extreme"}, "data.augment"),
    ({"data.val_fraction": 1.0}, "data.val_fraction"),
    ({"loss.label_smoothing": 1.0}, "loss.label_smoothing"),
])
def test_value_checks(override, expect):
    assert expect in _err(from_dict, {}, override)


def test_replace_with_dotted_overrides():
    base = from_dict({"train": {"lr": 0.1, "epochs": 3}})
    new = base.replace(**{"train.lr": 0.01, "data.image_size": [32, 64], "model.name": "unet"})
    assert new.train.lr == 0.01 and new.train.epochs == 3
    assert new.data.image_size == (32, 64) and new.model.name == "unet"
    assert base.train.lr == 0.1 and base.data.image_size is None      # the original is untouched
    assert "did you mean 'train.lr'" in _err(base.replace, **{"train.lrr": 1})
    assert "'lr'" in _err(base.replace, lr=1)
    assert "'train.lr'" in _err(base.replace, **{"train.lr": "abc"})


def test_dump_load_round_trip(tmp_path):
    cfg = from_dict({
        "data": {"root": "/data/x", "format": "keras", "image_size": [96, 128], "augment": "strong", "in_channels": 4},
        "model": {"name": "unet", "encoder": "resnet18"},
        "loss": {"name": "ce+dice", "class_weights": [0.5, 2.0], "label_smoothing": 0.1},
        "train": {"epochs": 7, "lr": 3e-4, "weight_decay": 1e-5, "schedule": "cosine", "amp": "bf16", "seed": 3},
    })
    p = tmp_path / "config.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg
    assert load_config(p, {"train.epochs": 9}).train.epochs == 9
    assert load_config(p).data.image_size == (96, 128)


def test_load_config_unknown_key_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 3\n")
    msg = _err(load_config, p)
    assert str(p) in msg and "'train.epoch'" in msg and "did you mean 'train.epochs'" in msg


@pytest.mark.parametrize("text", ["train: {lr: [1, 2\n", "train:\n  lr: 1\n lr2: 2\n", "a: b: c\n"])
def test_invalid_yaml_is_one_line_naming_the_file(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    msg = _err(load_config, p)
    assert msg.startswith(str(p)) and "not valid YAML" in msg


def test_load_config_path_mistakes(tmp_path):
    assert "not found" in _err(load_config, tmp_path / "missing.yaml")
    msg = _err(load_config, tmp_path)                     # a run folder given instead of its config.yaml
    assert str(tmp_path) in msg and "config.yaml" in msg
    (tmp_path / "w.safetensors").write_bytes(b"\x80\xff\xfe\x00" * 8)
    assert str(tmp_path / "w.safetensors") in _err(load_config, tmp_path / "w.safetensors")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert str(tmp_path / "list.yaml") in _err(load_config, tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == Config()


@pytest.mark.parametrize("key, bad, good, expect", [
    ("train.seed", -1, 4294967295, "train.seed must be in [0, 4294967295]"),
    ("train.seed", 2**40, 0, "train.seed must be in [0, 4294967295]"),
    ("data.num_workers", -1, 0, "data.num_workers must be 0 or more"),
    ("train.threads", 0, 1, "train.threads must be 1 or more"),
    ("train.weight_decay", -0.1, 0.0, "train.weight_decay must be 0 or more"),
    ("train.warmup_steps", -5, 0, "train.warmup_steps must be 0 or more"),
    ("train.ema", 1.0, 0.999, "train.ema must be in (0, 1)"),
    ("train.repeat_threshold", 0, 1.0, "train.repeat_threshold must be in (0, 1]"),
    ("train.sampling", "often", "repeat", "train.sampling must be uniform or repeat"),
])
def test_bounds_from_the_field_table(key, bad, good, expect):
    assert expect in _err(from_dict, {}, {key: bad})
    section, _, name = key.partition(".")
    assert getattr(getattr(from_dict({}, {key: good}), section), name) == good     # the edge inside is allowed


def test_every_field_has_help_and_says_what_its_default_means():
    from pixelseg.config import config_fields
    for key, f in config_fields():
        assert f.metadata.get("help"), key
        if f.default is None:
            assert f.metadata.get("auto"), f"{key}: say what None means"


def test_a_bad_file_value_is_reported_even_when_an_override_sets_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: fast\n  epochs: 2\n")
    msg = _err(load_config, p, {"train.lr": 0.01})
    assert str(p) in msg and "'train.lr'" in msg
    p.write_text("train:\n  lr: 0.5\n  epochs: 2\n")
    cfg = load_config(p, {"train.lr": 0.01})
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 2      # a good value: the override wins
