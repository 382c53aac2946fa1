"""`pixelseg serve`: a real process on localhost, started and stopped like a user would; its mistakes
are one line and exit 2; the worker factory rebuilds the same settings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from pixelseg.cli import main
from pixelseg.serve.server import SETTINGS_ENV, app_from_env, is_loopback
from pixelseg.serve.settings import Batching, Limits, ServeSettings

from tests.helpers.serving import free_port, png_bytes, sample_image, wait_healthy


@pytest.mark.slow
def test_serve_process_answers_and_stops_cleanly_on_ctrl_c(serve_run):
    port = free_port()
    env = {**os.environ, "PIXELSEG_API_KEY": "env-key-0123456789", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pixelseg.cli", "serve", str(serve_run), "--port", str(port),
                             "--backend", "torch", "--device", "cpu", "--threads", "1", "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, poll_s=0.3)
        image = png_bytes(sample_image(30, 40))
        # the key came from the environment
        assert httpx.post(f"{url}/v1/segment", content=image).status_code == 401
        r = httpx.post(f"{url}/v1/segment?format=label", content=image,
                       headers={"X-API-Key": "env-key-0123456789", "content-type": "image/png"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert httpx.get(f"{url}/").status_code == 200 and "app.js" in httpx.get(f"{url}/").text
        assert httpx.get(f"{url}/static/style.css").status_code == 200       # package data is installed
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"page http://127.0.0.1:{port}/" in out and "Traceback" not in out


@pytest.mark.slow
def test_port_0_prints_the_port_it_serves_on(serve_run):
    import re
    proc = subprocess.Popen([sys.executable, "-m", "pixelseg.cli", "serve", str(serve_run), "--port", "0",
                             "--backend", "torch", "--device", "cpu", "--threads", "1", "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        first = proc.stdout.readline()
        port = int(re.search(r"page http://127\.0\.0\.1:(\d+)/", first).group(1))
        assert port > 0, first
        wait_healthy(proc, f"http://127.0.0.1:{port}", poll_s=0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in out


@pytest.mark.parametrize("args,message", [
    (["serve", "{missing}"], "run folder not found"),
    (["serve", "{run}", "--api-key", "short"], "shorter than 8 characters"),
    (["serve", "{run}", "--workers", "0"], "argument --workers: must be positive (got 0)"),
    (["serve", "{run}", "--max-batch", "0"], "argument --max-batch: must be positive (got 0)"),
    (["serve", "{run}", "--timeout", "0"], "argument --timeout: must be positive (got 0)"),
    (["serve", "{run}", "--port", "70000"], "argument --port: must be in [0, 65535] (got 70000)"),
    (["serve", "{run}", "--backend", "tensorrt", "--port", "0"], "tensorrt"),
])
def test_serve_mistakes_are_one_line_and_exit_2(serve_run, tmp_path, capsys, args, message):
    from PIL import Image
    argv = [a.format(missing=tmp_path / "nope", run=serve_run) for a in args]
    guard = Image.MAX_IMAGE_PIXELS
    try:
        rc = main(argv)
    except SystemExit as e:          # a flag's value is refused by the parser, before any handler runs
        rc = e.code
    assert rc == 2
    assert Image.MAX_IMAGE_PIXELS == guard             # a server that never started changed nothing global
    err = capsys.readouterr().err.strip()
    assert err.startswith(("pixelseg: error: ", "pixelseg serve: error: ")) and message in err and "\n" not in err


def test_worker_factory_rebuilds_the_settings(serve_run, monkeypatch):
    settings = ServeSettings(str(serve_run), backend="torch", device="cpu", api_key="worker-key-123", threads=1,
                             limits=Limits(max_pixels=12345, timeout_s=7.5), batching=Batching(max_batch=3))
    from PIL import Image
    assert ServeSettings.from_json(settings.to_json()) == settings
    monkeypatch.setenv(SETTINGS_ENV, settings.to_json())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)   # the worker sets it process-wide
    app = app_from_env()
    assert app.state.settings == settings
    assert json.loads(settings.to_json())["limits"]["max_pixels"] == 12345
    assert Image.MAX_IMAGE_PIXELS == 12345            # Pillow's own bomb guard, at the server's limit


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def test_run_server_warns_off_localhost_and_splits_cores_between_workers(serve_run, monkeypatch, capsys):
    import uvicorn
    calls, sent, sent_dirs = [], [], []

    def fake_run(app, **kw):                            # what the worker processes would inherit
        calls.append((app, kw))
        sent.append(ServeSettings.from_json(os.environ[SETTINGS_ENV]))
        sent_dirs.append(os.path.isdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from pixelseg.serve.server import run_server
    run_server(ServeSettings(str(serve_run), backend="torch", device="cpu"), host="0.0.0.0", port=0, workers=3)
    err = capsys.readouterr().err
    assert "without an API key" in err
    app, kw = calls[0]
    assert app == "pixelseg.serve.server:app_from_env" and kw["factory"] and kw["workers"] == 3
    assert sent[0].threads == max(1, (os.cpu_count() or 1) // 3)
    assert sent_dirs[0]                                # the metrics folder existed while the workers ran
    # and this process has its environment back
    assert SETTINGS_ENV not in os.environ and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    # with a key, or on localhost, no warning
    run_server(ServeSettings(str(serve_run), api_key="long-enough-key"), host="0.0.0.0", port=0, workers=3)
    run_server(ServeSettings(str(serve_run)), host="127.0.0.1", port=0, workers=2)
    assert "without an API key" not in capsys.readouterr().err
