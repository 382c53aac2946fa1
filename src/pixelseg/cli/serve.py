"""`pixelseg serve`: the HTTP API and web page for a run (serve/)."""
from __future__ import annotations

import os

from pixelseg.cli.common import POSITIVE, POSITIVE_INT, bounded


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="HTTP API and web page for a run (POST /v1/segment, page at /)")
    s.add_argument("run", help="run folder, or hf://user/name (pulled into the Hub cache)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    s.add_argument("--port", type=bounded(int, "port 0..65535", ge=0, le=65535), default=8000, help="default %(default)s")
    s.add_argument("--backend", default="auto", help="inference backend: auto | torch | onnxruntime | openvino "
                   "(default %(default)s: the fast path for the device)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    s.add_argument("--workers", type=POSITIVE_INT, default=1, help="processes, each with its own model (default %(default)s)")
    s.add_argument("--threads", type=POSITIVE_INT, help="torch threads per worker (default: the cores divided by --workers)")
    s.add_argument("--api-key", help="require this key in the X-API-Key header (default: $PIXELSEG_API_KEY, else none)")
    s.add_argument("--max-upload-mb", type=POSITIVE, default=25.0, help="largest upload (default %(default)s MB)")
    s.add_argument("--max-pixels", type=POSITIVE_INT, default=4096 * 4096,
                   help="largest image, width x height, checked before decoding (default %(default)s)")
    s.add_argument("--max-pixels-in-flight", type=POSITIVE_INT,
                   help="decoded pixels across all requests at once; more wait their turn, then get 503 "
                        "(default: 2 x --max-pixels)")
    s.add_argument("--idle-timeout", type=POSITIVE, default=10.0,
                   help="seconds a connection may stay silent (headers, body, keep-alive) before it is closed "
                        "(default %(default)s)")
    s.add_argument("--timeout", type=POSITIVE, default=30.0, help="seconds per request, upload to answer (default %(default)s)")
    s.add_argument("--max-queue", type=POSITIVE_INT, default=64, help="images waiting for the model before 429 (default %(default)s)")
    s.add_argument("--max-batch", type=POSITIVE_INT, default=4, help="images per model call under load (default %(default)s)")
    s.add_argument("--batch-wait-ms", type=bounded(float, "number >= 0", ge=0), default=0.0,
                   help="hold a lone request this long to batch it with others (default %(default)s)")
    s.add_argument("--no-cache", action="store_true",
                   help="do not keep recent label maps by upload hash (the page's label download then reruns the model)")
    s.add_argument("--no-access-log", action="store_true", help="do not log every request")
    s.set_defaults(handler=cmd_serve)


def cmd_serve(a) -> int:
    from pixelseg.serve.server import API_KEY_ENV, run_server
    from pixelseg.serve.settings import Batching, Limits, ServeSettings
    settings = ServeSettings(
        a.run, backend=a.backend, device=a.device, api_key=a.api_key or os.environ.get(API_KEY_ENV) or None,
        threads=a.threads, limits=Limits(max_upload_bytes=int(a.max_upload_mb * 1024 * 1024), max_pixels=a.max_pixels,
                                         timeout_s=a.timeout, max_queue=a.max_queue,
                                         idle_timeout_s=a.idle_timeout, max_pixels_in_flight=a.max_pixels_in_flight),
        batching=Batching(max_batch=a.max_batch, max_wait_ms=a.batch_wait_ms),
        **({"cache_pixels": 0} if a.no_cache else {}))
    run_server(settings, a.host, a.port, a.workers, access_log=not a.no_access_log)
    return 0
