"""Every command that only reads a run takes an hf://user/name reference in its place (pulled through the real
huggingface_hub client from a local fake of the Hub: no network); the commands that write into a run refuse it
with the way round."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

import pixelseg
from pixelseg import hub
from pixelseg.cli import main
from pixelseg.inference.bench import model_run
from pixelseg.run.folder import RunFolder

from tests.helpers.hub_fake import FakeHub, isolate_hub_client

@pytest.fixture
def shared(tmp_path, monkeypatch, one_thread):
    """A run pushed to a fake Hub as me/road; the client's endpoint, cache and token all point into tmp_path."""
    isolate_hub_client(monkeypatch, tmp_path)
    run = model_run("lraspp", (32, 32), 2, tmp_path / "run")
    with FakeHub() as fake:
        hub.push(run, "me/road", endpoint=fake.endpoint)
        yield fake, run


@pytest.mark.slow
def test_export_and_bench_take_a_hub_reference(shared, tmp_path):
    """In CLI processes, as a user runs them (HF_ENDPOINT set, the Hub cache under HF_HOME)."""
    pytest.importorskip("onnxruntime")
    fake, _ = shared
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=str(Path(pixelseg.__file__).parents[1]), HF_ENDPOINT=fake.endpoint,
               HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pixelseg", *args], capture_output=True, text=True, timeout=300,
                              env=env, cwd=tmp_path)
    out = tmp_path / "m.onnx"
    p = cli("export", "hf://me/road", "--out", str(out))
    assert p.returncode == 0 and out.is_file(), p.stderr
    p = cli("bench", "hf://me/road", "--backend", "eager", "--iters", "2")
    assert p.returncode == 0 and "eager" in p.stdout, p.stderr


def test_commands_that_write_into_a_run_refuse_a_hub_reference(shared, capsys):
    _, run = shared
    before = RunFolder(run).model_json.read_bytes()
    assert main(["calibrate", "hf://me/road"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pixelseg pull me/road --out DIR" in err
    assert RunFolder(run).model_json.read_bytes() == before
