"""Running the app under uvicorn: one process, or N worker processes sharing the port.

With workers > 1 uvicorn starts fresh interpreters that import an app factory by name, so the settings
travel in an environment variable (JSON), and prometheus_client's multiprocess mode (a folder of
per-process files) lets any worker answer /metrics for all of them.
"""
from __future__ import annotations

import ipaddress
import os
import sys
import tempfile

from pixelseg.errors import PixelsegError
from pixelseg.serve.settings import ServeSettings

SETTINGS_ENV = "PIXELSEG_SERVE_SETTINGS"
API_KEY_ENV = "PIXELSEG_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard_pillow(settings: ServeSettings) -> None:
    # Pillow's own decompression-bomb guard stays on in the library at Pillow's default (behind data.io's
    # decode gate); a server process takes uploads from strangers, so it tightens the guard to its own
    # limit, behind serve's header check.
    from PIL import Image

    import pixelseg.data.io  # noqa: F401  (its import-time setting must not undo ours)
    Image.MAX_IMAGE_PIXELS = settings.limits.max_pixels


def uvicorn_options(settings: ServeSettings, http: type | None = None) -> dict:
    """What every uvicorn this package starts is given (run_server, its workers, the tests' live server):
    the HTTP protocol with a request-head deadline, and the idle timeout for it and for keep-alive."""
    from pixelseg.serve.protocol import default_protocol
    return {"http": http or default_protocol(), "timeout_keep_alive": settings.limits.idle_timeout_s}


def app_from_env():
    """uvicorn factory for worker processes: the settings come from PIXELSEG_SERVE_SETTINGS."""
    from pixelseg.serve.app import create_app
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise PixelsegError(f"{SETTINGS_ENV} is not set; start workers with `pixelseg serve RUN --workers N`")
    settings = ServeSettings.from_json(text)
    _guard_pillow(settings)
    return create_app(settings)


def free_port(host: str) -> int:
    """A TCP port free on `host` now (the OS picks it). Uvicorn binds it a moment later; what it prints and what
    pixelseg prints then agree, which `--port 0` passed through would not (it would print port 0)."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    except OSError as e:
        raise PixelsegError(f"--host {host}: cannot bind to it ({e.strerror}); give an address of this machine") from None


def run_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
               access_log: bool = True) -> None:
    import uvicorn

    from pixelseg.run.folder import RunFolder

    if workers < 1:
        raise PixelsegError(f"--workers must be at least 1 (got {workers})")
    if not 0 <= port <= 65535:
        raise PixelsegError(f"--port {port} is not a TCP port (0..65535)")
    info = RunFolder(settings.run).info()                  # a bad run folder fails here, before anything binds
    if port == 0:
        port = free_port(host)                      # --port 0: any free port, and the address printed is real
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {settings.run} ({info.model}, {info.classes.num_classes} classes): page http://{shown}:{port}/  "
          f"API http://{shown}:{port}/v1/segment  schema http://{shown}:{port}/openapi.json", flush=True)
    if not is_loopback(host) and not settings.api_key:
        print(f"pixelseg: warning: serving on {host} without an API key: anyone who can reach this machine can "
              f"use the model; set --api-key or {API_KEY_ENV}", file=sys.stderr)
    if workers == 1:
        from pixelseg.serve.app import create_app
        app = create_app(settings)
        _guard_pillow(settings)
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", **uvicorn_options(settings))
        return
    if settings.threads is None:
        # each worker runs its own model; without this they would all use every core and fight
        from dataclasses import replace
        settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    saved = {k: os.environ.get(k) for k in (SETTINGS_ENV, "PROMETHEUS_MULTIPROC_DIR")}
    try:
        with tempfile.TemporaryDirectory(prefix="pixelseg-metrics-") as metrics_dir:
            # the workers inherit these; this process gets its environment back when the server stops
            os.environ[SETTINGS_ENV] = settings.to_json()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            uvicorn.run("pixelseg.serve.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                        access_log=access_log, log_level="info", **uvicorn_options(settings))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
