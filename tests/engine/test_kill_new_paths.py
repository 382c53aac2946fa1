"""Faults on the paths opened since the first ring (issue 27, item 5): kill -9 and SIGTERM during crop training
at a scale (big images), during audit's fold training, and during a Hub pull (the local fake) leave nothing
half-written — no truncated model.json or safetensors, no partial folder that reads as a run — and a resume or
a re-run finishes cleanly. The pattern of test_faults.py: the command in a subprocess, a signal at a moment
found by watching its files, then the files and the next run checked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixelseg.errors import PixelsegError
from pixelseg.run.checkpoints import load_state
from pixelseg.run.folder import RunFolder

from tests.helpers import tinynet

pytestmark = pytest.mark.slow


def _cli(*args, **env) -> subprocess.Popen:
    """The pixelseg CLI with the test net registered, in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELSEG_")}
    full_env.update(CUDA_VISIBLE_DEVICES="", **{k: str(v) for k, v in env.items()})
    return subprocess.Popen([sys.executable, tinynet.__file__, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def _wait_for(p: subprocess.Popen, found, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and not found():
        time.sleep(0.05)
    assert p.poll() is None, f"finished before the signal: {p.communicate()[1][-2000:]}"
    assert found(), "the moment to signal never came"


def _nothing_half_written(folder: Path) -> None:
    """Every JSON file parses, every safetensors opens, last.pt loads; when model.json is there the folder reads
    as a run, or (killed before the first epoch's weights) says so with the fix, never as a run with no weights."""
    from safetensors import safe_open
    for p in folder.rglob("*.json"):
        json.loads(p.read_text())
    for p in folder.rglob("*.safetensors"):
        with safe_open(str(p), framework="pt") as f:
            assert list(f.keys()), p
    if (folder / "last.pt").exists():
        load_state(folder / "last.pt")
    if (folder / "model.json").exists():
        try:
            RunFolder(folder).info()
        except PixelsegError as e:
            assert not (folder / RunFolder.WEIGHTS).exists(), e
            assert "weights missing" in str(e) and "--resume" in str(e), e


@pytest.fixture(scope="module")
def big_images(tmp_path_factory) -> Path:
    """8 + 2 synthetic images of 192 x 256: trained on crops at scale 0.5, never resized whole."""
    from pixelseg.data.tools.synth import generate
    root = tmp_path_factory.mktemp("big")
    generate(root, n_train=8, n_val=2, size=(192, 256), seed=5)
    return root


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_crop_training_at_a_scale_survives_a_signal_and_resumes(big_images, tmp_path, sig):
    out = tmp_path / "run"
    p = _cli("train", "--data", big_images, "--out", out, "--model", tinynet.NAME, "--scale", "0.5", "--crop", "32",
             "--batch-size", "2", "--epochs", "10", "--num-workers", "0", "--threads", "1", "--lr", "0.01",
             "--checkpoint-minutes", "0", "--no-report")
    _wait_for(p, lambda: (out / "last.pt").exists())
    time.sleep(0.3)                                  # somewhere in a step, a validation or a save
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    if sig == signal.SIGTERM:                        # stopped at the end of the step, its state saved
        assert p.returncode == 130, err[-2000:]
    _nothing_half_written(out)
    killed_at = load_state(out / "last.pt")["state"]["step"]
    assert killed_at > 0
    (out / ".model.x1y2.tmp.json").write_text('{"format": "pixelseg-ru')   # what a kill inside a save leaves
    again = _cli("train", "--out", out, "--resume", "--num-workers", "0", "--threads", "1",
                 "--no-report")
    err = again.communicate(timeout=400)[1]
    assert again.returncode == 0, err[-3000:]
    assert f"step {killed_at}," in err, err[-2000:]
    assert not list(out.glob(".*.tmp*"))
    _nothing_half_written(out)
    info = RunFolder(out).info()
    assert info.preprocessing.resize == "scale" and info.preprocessing.scale == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A test-tinynet run (config.yaml included: audit trains its fold models from it) on 12 images of 32x32."""
    import pixelseg
    from pixelseg.data.tools.synth import generate
    root = tmp_path_factory.mktemp("audit")
    generate(root / "data", n_train=12, n_val=2, size=(32, 32), seed=1)
    with tinynet.registered():
        return Path(pixelseg.train(root / "data", tinynet.NAME, out=str(root / "run"), epochs=1, image_size=(32, 32),
                                   batch_size=4, num_workers=0, threads=1, augment="none", quiet=True))


@pytest.mark.parametrize("sig, moment", [(signal.SIGKILL, "fold*/last.pt"), (signal.SIGTERM, "fold*/last.pt"),
                                         (signal.SIGTERM, "fold0/metrics.json")],
                         ids=["kill-9", "SIGTERM", "SIGTERM-between-folds"])
def test_audit_stopped_during_fold_training_writes_nothing_and_reruns(tiny_run, tmp_path, sig, moment):
    """The fold models train in a temporary folder: a signal there leaves no audit folder and no changed run;
    SIGTERM also removes the temporary folder (exit 130), whether it lands in a fold's training or once the
    first fold model is complete (between folds: audit's own handler, not training's). A re-run writes the whole
    audit."""
    import hashlib
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run_before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_run.iterdir() if p.is_file()}
    out = tmp_path / "aud"
    args = ("audit", tiny_run, "--folds", "2", "--fold-minutes", "0.1", "--out", out, "--gallery", "2")
    p = _cli(*args, TMPDIR=tmp)
    _wait_for(p, lambda: any(tmp.glob(f"pixelseg-audit-*/{moment}")))
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    assert "Traceback" not in err, err[-3000:]
    assert not out.exists(), sorted(out.rglob("*"))
    if sig == signal.SIGTERM:
        assert p.returncode == 130, err[-2000:]
        assert not list(tmp.glob("pixelseg-audit-*")), "the fold models' temporary folder was left"
    run_after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_run.iterdir() if p.is_file()}
    assert run_after == run_before
    again = _cli(*args, TMPDIR=tmp)
    err = again.communicate(timeout=400)[1]
    assert again.returncode == 0, err[-3000:]
    result = json.loads((out / "audit.json").read_text())
    assert result["folds"] == 2 and len(result["images"]) == 12


def test_hub_pull_killed_mid_download_leaves_no_run_and_pulls_again(tmp_path):
    """kill -9 while the weights stream in (the fake serves them slowly): no snapshot in the cache reads as a run
    with partial weights, and the next pull completes with the weights pushed, byte for byte."""
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    from pixelseg import hub
    from pixelseg.inference.bench import model_run

    from tests.helpers.hub_fake import FakeHub, _Handler

    class Slow(_Handler):
        def _send(self, status, body=b"", headers=None, head=False):
            if head or len(body) < 2**20:
                return super()._send(status, body, headers, head)
            self.send_response(status)
            for k, v in {**(headers or {}), "Content-Length": str(len(body)), "Connection": "close"}.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                for i in range(0, len(body), 2**16):      # ~5 s for a few MB
                    self.wfile.write(body[i:i + 2**16])
                    time.sleep(0.08)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    run = model_run("fast_scnn", (32, 32), 2, tmp_path / "run")
    cache = tmp_path / "cache"
    env = dict(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HOME=tmp_path / "hf_home")
    fake = FakeHub(token="hf_write")
    fake.server.RequestHandlerClass = type("SlowHandler", (Slow,), {"hub": fake})
    old_xet = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        with fake:
            hub.push(run, "me/slow", token="hf_write", endpoint=fake.endpoint)
            code = (f"from pixelseg import hub; hub.pull('me/slow', endpoint={fake.endpoint!r}, "
                    f"cache_dir={str(cache)!r})")
            full_env = {**os.environ, **{k: str(v) for k, v in env.items()}}
            p = subprocess.Popen([sys.executable, "-c", code], env=full_env, stderr=subprocess.PIPE, text=True)
            # the client buffers what it receives, so the .incomplete file may stay empty until the end: its
            # existence plus a second is mid-stream (the weights take ~5 s)
            _wait_for(p, lambda: any(cache.rglob("*.incomplete")), timeout=120)
            time.sleep(1.0)
            assert p.poll() is None, "the download finished before the kill"
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
            for model_json in cache.rglob(RunFolder.MODEL):          # a snapshot that would read as a run
                weights = model_json.parent / RunFolder.WEIGHTS
                if weights.exists():
                    assert weights.read_bytes() == (run / RunFolder.WEIGHTS).read_bytes(), "partial weights"
            path = hub.pull("me/slow", endpoint=fake.endpoint, cache_dir=cache)
    finally:
        constants.HF_HUB_DISABLE_XET = old_xet
    assert (path / RunFolder.WEIGHTS).read_bytes() == (run / RunFolder.WEIGHTS).read_bytes()
    assert RunFolder(path).info().classes.names == RunFolder(run).info().classes.names
