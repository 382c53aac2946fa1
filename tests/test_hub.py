"""pixelseg.hub against a local fake of the Hub API (tests/helpers/hub_fake.py): the real huggingface_hub client
code path, no network."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("huggingface_hub")

import pixelseg
from pixelseg import hub
from pixelseg.data.classes import ClassTable
from pixelseg.errors import PixelsegError
from pixelseg.models import build_model
from pixelseg.run.folder import Preprocessing, RunFolder, RunInfo

from tests.helpers.hub_fake import FakeHub, isolate_hub_client

CLASSES = ClassTable(("background", "road", "car"), ((0, 0, 0), (128, 64, 128), (0, 0, 142)))
METRICS = {"mIoU": 0.61234, "pixel_accuracy": 0.9, "mean_accuracy": 0.7, "fw_iou": 0.8, "mean_dice": 0.7,
           "num_pixels": 1000, "classes_absent": ["car"], "split": "val", "images": 7, "train_seconds": 90.0,
           "hardware": "2-core CPU", "epoch": 3,
           "per_class": {"background": {"iou": 0.9}, "road": {"iou": 0.32468}, "car": {"iou": None}}}


@pytest.fixture(autouse=True)
def _hub_env(monkeypatch, tmp_path):
    isolate_hub_client(monkeypatch, tmp_path)


@pytest.fixture
def run_dir(tmp_path, one_thread):
    run = tmp_path / "home" / "me" / "runs" / "exp1"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("lraspp", 3, 3, None).eval()
    rf = RunFolder(run)
    info = RunInfo(run, "lraspp", None, CLASSES, Preprocessing((64, 64), (123.7, 116.3, 103.5), (58.4, 57.1, 57.4), 3),
                   {"epoch": 3, "step": 30, "mIoU": 0.61234})
    rf.write_info(info)
    rf.save_weights(model)
    rf.write_classes(CLASSES)
    rf.write_metrics(METRICS)
    rf.write_recipe({"hardware": {"device": "cpu", "name": "2-core CPU", "cores": 2},
                     "chosen": [{"key": "data.root", "value": str(tmp_path / "secret" / "roads"), "why": "given"}]})
    (run / "config.yaml").write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "secret" / "roads"), "format": "folder", "val_fraction": 0.1},
        "model": {"name": "lraspp", "encoder": None, "init_from": "../other/run"},
        "loss": {"name": "ce"},
        "train": {"max_minutes": 1.5, "epochs": None, "batch_size": 4, "lr": 0.01, "out": str(run)}}))
    (run / "last.pt").write_bytes(b"resumable state must never be uploaded")
    (run / "environment.json").write_text('{"sessions": [{"host": "my-laptop"}]}')
    return run


@pytest.mark.slow
def test_push_pull_round_trip_predicts_the_same(run_dir, tmp_path):
    with FakeHub(token="hf_write") as fake:
        url = hub.push(run_dir, "me/road-seg", token="hf_write", endpoint=fake.endpoint)
        assert url.endswith("/me/road-seg")
        files = fake.repos["me/road-seg"].files
        assert sorted(files) == sorted(["model.safetensors", "model.json", "classes.json", "metrics.json",
                                        "recipe.json", "config.yaml", "README.md"])
        # the weights took the LFS route, the way the real Hub stores *.safetensors
        assert any(p.endswith("/info/lfs/objects/batch") for _, p in fake.requests)
        assert files["model.safetensors"] == (run_dir / "model.safetensors").read_bytes()

        cache = tmp_path / "fresh_cache"
        pulled = hub.pull("me/road-seg", endpoint=fake.endpoint, cache_dir=cache)
        assert str(pulled).startswith(str(cache))
        assert sorted(p.name for p in pulled.iterdir()) == sorted(files)

    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    local = pixelseg.load(run_dir, device="cpu", backend="torch").predict(image)
    remote = pixelseg.load(pulled, device="cpu", backend="torch").predict(image)
    assert local.shape == (48, 80)
    np.testing.assert_array_equal(local, remote)


def test_no_local_path_or_host_leaks(run_dir, tmp_path):
    with FakeHub() as fake:
        hub.push(run_dir, "me/road-seg", endpoint=fake.endpoint)
        files = fake.repos["me/road-seg"].files
    cfg = yaml.safe_load(files["config.yaml"])
    assert cfg["data"]["root"] == "roads"
    assert cfg["train"]["out"] == "exp1"
    assert cfg["model"]["init_from"] == "run"
    for name, data in files.items():
        if name != "model.safetensors":
            assert str(tmp_path).encode() not in data, name
    assert json.loads(files["recipe.json"])["chosen"][0]["value"] == "roads"


def test_model_card_metadata_and_body(run_dir):
    with FakeHub() as fake:
        hub.push(run_dir, "me/road-seg", endpoint=fake.endpoint)
        readme = fake.repos["me/road-seg"].files["README.md"].decode()
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["library_name"] == "pixelseg"
    assert meta["pipeline_tag"] == "image-segmentation"
    assert "lraspp" in meta["tags"]
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-segmentation"
    assert result["dataset"] == {"name": "roads", "type": "roads", "split": "val"}
    miou = next(m for m in result["metrics"] if m["type"] == "mean_iou")
    assert miou["value"] == pytest.approx(0.61234)
    assert "ignore index 255" in miou["name"] and "7 images" in miou["name"]
    body = readme.split("---\n", 2)[2]
    for i, name in enumerate(CLASSES.names):
        assert f"| {i} | {name} |" in body
    assert "| 1 | road | `#804080` | 32.5 |" in body
    assert "| 2 | car | `#00008e` | absent |" in body
    assert "mIoU **61.2%**" in body and "(here: car)" in body
    assert "| input size | 64x64 (HxW, stretch), 3 channels |" in body
    assert "| budget | 1.5 min |" in body and "| hardware | 2-core CPU |" in body
    assert "Exported formats" not in body


def test_model_card_lists_exports_present(run_dir):
    (run_dir / "export").mkdir()
    (run_dir / "export" / "model.onnx").write_bytes(b"onnx")
    (run_dir / "export" / "model.int8.xml").write_bytes(b"ir")
    card = hub.model_card(RunFolder(run_dir), "me/road-seg")
    assert "## Exported formats" in card
    assert "onnx (model.onnx), openvino int8 (model.int8.xml)." in card


def test_resolve_source(run_dir, tmp_path, monkeypatch):
    assert hub.resolve_source(str(run_dir)) == str(run_dir)           # a local path passes through
    monkeypatch.chdir(run_dir.parent)
    assert hub.resolve_source("exp1") == "exp1"
    assert hub.parse_source("hf://me/road-seg@v1") == ("me/road-seg", "v1")
    assert hub.parse_source("me/road-seg") == ("me/road-seg", None)
    assert hub.parse_source("export/model.onnx") is None
    with FakeHub() as fake:
        hub.push(run_dir, "me/road-seg", endpoint=fake.endpoint)
        sha = fake.repos["me/road-seg"].sha
        path = hub.resolve_source(f"hf://me/road-seg@{sha}", endpoint=fake.endpoint, cache_dir=tmp_path / "c")
        assert RunFolder(path).info().model == "lraspp"
        assert sha in str(path)
        path2 = hub.resolve_source("me/road-seg", endpoint=fake.endpoint, cache_dir=tmp_path / "c")
        assert path2 == path


def test_errors_are_one_line(run_dir, tmp_path):
    with FakeHub(token="hf_write") as fake:
        opts = {"endpoint": fake.endpoint, "cache_dir": tmp_path / "c"}
        with pytest.raises(PixelsegError, match="me/nothing: repository not found") as e:
            hub.pull("me/nothing", **opts)
        assert "\n" not in str(e.value)
        with pytest.raises(PixelsegError, match="no such local folder, and on the Hub: .*not found"):
            hub.resolve_source("me/nothing", **opts)
        with pytest.raises(PixelsegError, match="not allowed to write .*--token"):
            hub.push(run_dir, "me/road-seg", token="wrong", endpoint=fake.endpoint)
        hub.push(run_dir, "me/road-seg", token="hf_write", endpoint=fake.endpoint)
        with pytest.raises(PixelsegError, match="no such revision"):
            hub.pull("me/road-seg", revision="v9", **opts)
        # a repo of something else: no model.json
        fake.repos["me/other"] = type(fake.repos["me/road-seg"])(private=False)
        fake.commit(fake.repos["me/other"], {"pytorch_model.bin": b"x", "README.md": b"hi"})
        with pytest.raises(PixelsegError, match="no model.json, so it is not a pixelseg model"):
            hub.pull("me/other", **opts)
        fake.repos["me/road-seg"].gated = True
        with pytest.raises(PixelsegError, match="me/road-seg: a gated repository; accept its conditions"):
            hub.pull("me/road-seg", **opts)
    with socket.socket() as s:       # a port nobody listens on: the Hub is unreachable
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(PixelsegError, match="cannot reach .*check the network") as e:
        hub.pull("me/road-seg", endpoint=dead, cache_dir=tmp_path / "other_cache")
    assert "\n" not in str(e.value)
    with pytest.raises(PixelsegError, match="not a Hub repository id"):
        hub.push(run_dir, "no-slash", endpoint="http://127.0.0.1:9")
    with pytest.raises(PixelsegError, match="not a pixelseg run folder"):
        hub.push(tmp_path, "me/x", endpoint="http://127.0.0.1:9")


def test_missing_package_names_the_extra(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_hf(name, *a, **k):
        if name == "huggingface_hub":
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_hf)
    with pytest.raises(PixelsegError, match=r"pip install 'pixelseg\[hub\]'"):
        hub.pull("me/road-seg")


def test_push_dry_run_writes_the_upload_offline(run_dir, tmp_path, capsys):
    """push --dry-run --out DIR: the files push would upload and the card, no network (HF_ENDPOINT points
    nowhere here), nothing outside DIR written; a non-empty DIR or a DIR inside the run is refused."""
    from pixelseg.cli import main
    out = tmp_path / "look"
    before = sorted(p.name for p in run_dir.rglob("*"))
    assert main(["push", str(run_dir), "me/road", "--dry-run", "--out", str(out), "--endpoint",
                 "http://127.0.0.1:9"]) == 0
    assert "nothing uploaded" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert {"README.md", "model.safetensors", "model.json"} <= set(names)
    assert "me/road" in (out / "README.md").read_text()
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    assert main(["push", str(run_dir), "me/road", "--dry-run", "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["push", str(run_dir), "me/road", "--dry-run", "--out", str(run_dir / "x")]) == 2
    assert "inside the run folder" in capsys.readouterr().err
    assert main(["push", str(run_dir), "me/road", "--dry-run"]) == 2
    assert "give it --out DIR" in capsys.readouterr().err


def test_a_hub_repo_with_a_pickle_for_weights_is_refused_and_nothing_runs(run_dir, tmp_path, evil_payload):
    """Someone else's tree: a pickle saved as model.safetensors and a file named to climb out of the cache.
    The pull refuses in one line, nothing is unpickled, and nothing lands outside the cache."""
    import pickle
    payload, marker = evil_payload
    cache = tmp_path / "cache"
    with FakeHub(token="hf_write") as fake:
        hub.push(run_dir, "me/evil", token="hf_write", endpoint=fake.endpoint)
        fake.commit(fake.repos["me/evil"], {"model.safetensors": pickle.dumps(payload)})
        with pytest.raises(PixelsegError, match=r"me/evil: model.safetensors is not a safetensors file") as e:
            hub.pull("me/evil", endpoint=fake.endpoint, cache_dir=cache)
        assert "\n" not in str(e.value)
        fake.commit(fake.repos["me/evil"], {"../../escape.txt": b"x"})
        with pytest.raises(PixelsegError):
            hub.pull("me/evil", endpoint=fake.endpoint, cache_dir=cache)
    assert not marker.exists()
    assert not list(tmp_path.glob("escape*")) and not list((tmp_path / "cache").parent.glob("**/escape.txt"))
