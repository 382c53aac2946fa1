"""Fixtures for the server tests: one tiny trained run per session, apps over it, a live uvicorn."""
from __future__ import annotations

from pathlib import Path

import pytest

import pixelseg
from pixelseg.data.tools.synth import generate

from tests.helpers.serving import LiveServer


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory) -> Path:
    """A real run folder, as cheap as training gets: 1 epoch on 6 synthetic images at 48 px."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("serve-data")
        generate(root, n_train=4, n_val=2, size=(48, 48), seed=5)
        out = tmp_path_factory.mktemp("serve-run") / "run"
        return pixelseg.train(root, model="unet", image_size=(48, 48), batch_size=4, epochs=1, num_workers=0,
                              threads=1, out=str(out), quiet=True)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def serve_predictor(serve_run):
    """The reference every answer is checked against (PyTorch: exactly what `pixelseg predict` gives)."""
    from pixelseg.serve.app import make_predictor
    return make_predictor(serve_run, "cpu", "torch")


@pytest.fixture(scope="session")
def live_server(serve_run, serve_predictor):
    from pixelseg.serve.app import create_app
    with LiveServer(create_app(serve_run, device="cpu", backend="torch", predictor=serve_predictor)) as server:
        yield server
