"""Shared test fixtures."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: with the cores shared, extra intra-op threads only wait on each other (10-100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # what a malicious pickle would run on load: builtins.open pickles by reference, so unpickling
        # needs no module of ours (several conftest.py files would make "conftest" ambiguous)
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil_payload(tmp_path):
    """(object whose unpickling creates a marker file, marker path): put it in a file a test loads."""
    marker = tmp_path / "pwned"
    return _Evil(marker), marker


@pytest.fixture(scope="session")
def tiny_unet_run(tmp_path_factory):
    """(root, run): a 1-epoch U-Net/ResNet18 run on 8 built-in images of 32x32 (root/data), trained once for the
    tests that need a real run folder without caring how good it is (audit, suggest)."""
    import pixelseg
    from pixelseg.data.tools.synth import generate
    root = tmp_path_factory.mktemp("tinyunet")
    generate(root / "data", 8, 2, (32, 32), seed=0)
    run = pixelseg.train(root / "data", "unet", out=str(root / "run"), epochs=1, image_size=(32, 32), batch_size=4,
                         num_workers=0, threads=1, augment="none", encoder="resnet18", quiet=True)
    return root, run


@pytest.fixture(scope="session")
def make_scale_run(tmp_path_factory):
    """make_scale_run(name, scale): a random-weights U-Net run (64x64 crops) in the big-image 'scale' mode."""
    from dataclasses import replace

    from pixelseg.inference.bench import model_run
    from pixelseg.run.folder import Preprocessing, RunFolder

    def make(name: str, scale: float):
        folder = model_run("unet", (64, 64), 3, tmp_path_factory.mktemp(name) / "run", encoder="resnet18")
        info = RunFolder(folder).info()
        pre = info.preprocessing
        RunFolder(folder).write_info(replace(info, preprocessing=Preprocessing((64, 64), pre.mean, pre.std, 3, "scale",
                                                                               scale)))
        return folder
    return make


@pytest.fixture(scope="session", autouse=True)
def user_cache_in_tmp(tmp_path_factory):
    """pixelseg's user cache (decoded images, ONNX graphs of runs) in a temporary folder, for this process and
    the CLI processes tests start, instead of the tester's ~/.cache."""
    import os
    old = os.environ.get("PIXELSEG_CACHE")
    os.environ["PIXELSEG_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if old is None:
        os.environ.pop("PIXELSEG_CACHE", None)
    else:
        os.environ["PIXELSEG_CACHE"] = old


# --- what this session collected, for tests/test_layout.py ---------------------------------------------------
# Recorded before -m/-k deselect anything (tryfirst: this hook runs ahead of pytest's own deselection), so
# test_layout can see which folders hold fast tests without collecting the tree a second time. With
# PIXELSEG_COLLECTED_JSON set (test_layout's own `pytest --collect-only` subprocess) it is written there too.
COLLECTED = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    rows = [(str(item.path), item.get_closest_marker("slow") is not None, item.get_closest_marker("skip") is not None)
            for item in items]
    config.stash[COLLECTED] = rows
    if os.environ.get("PIXELSEG_COLLECTED_JSON"):
        Path(os.environ["PIXELSEG_COLLECTED_JSON"]).write_text(json.dumps(rows))


@pytest.fixture(scope="session")
def collected(request) -> list[tuple[str, bool, bool]]:
    """(test file, marked slow, marked skip) for every test this session collected, before deselection."""
    return request.config.stash.get(COLLECTED, [])
