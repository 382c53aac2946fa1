"""The routes of the app, in groups: error answers, POST /v1/segment, the model and operations
endpoints, the page. Each group is added by one function over the shared `Served` state."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pixelseg.data.io import to_channels
from pixelseg.serve import encode
from pixelseg.serve.batching import Batcher, Done
from pixelseg.serve.budget import PixelBudget, check_pixels, declared_size
from pixelseg.serve.cache import LabelCache
from pixelseg.serve.decode import decode_image
from pixelseg.serve.errors import SEGMENT_ERRORS, ApiError
from pixelseg.serve.metrics import Metrics
from pixelseg.serve.schemas import SEGMENT_OK, SEGMENT_REQUEST_BODY, ClassInfo, Health, ModelInfo
from pixelseg.serve.settings import ServeSettings
from pixelseg.serve.upload import SEGMENT_PARAMS, read_upload

log = logging.getLogger("pixelseg.serve")

API_KEY_HEADER = "X-API-Key"
# the page may talk to this server only: a CDN asset would not load even if someone added one
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass
class Served:
    """What every route reads: the run's model behind its batcher, and the server's machinery."""
    settings: ServeSettings
    predictor: Any
    backend: str
    metrics: Metrics
    cache: LabelCache
    batcher: Batcher
    decode_slots: asyncio.Semaphore
    budget: PixelBudget
    class_infos: list[ClassInfo]
    model_info: ModelInfo
    # format=confidence runs the model outside the batcher (probabilities, not labels): one at a time, so
    # such requests cannot crowd the batched label path off the CPU
    probs_slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    @property
    def info(self):
        return self.predictor.info


def key_dependencies(api_key: str | None) -> list:
    """The key check, only when a key is set: the schema documents a security scheme exactly then."""
    if not api_key:
        return []
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="the key given to `pixelseg serve --api-key` (or PIXELSEG_API_KEY)")
    expected = api_key.encode()

    async def require_key(key: str | None = Security(header)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), expected):
            raise ApiError(401, "unauthorized", f"this server needs its API key in the {API_KEY_HEADER} header"
                           + ("" if key is None else " (the key sent is wrong)"),
                           headers={"WWW-Authenticate": API_KEY_HEADER})
    return [Depends(require_key)]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    def error_response(err: ApiError) -> JSONResponse:
        metrics.refusals.labels(err.code).inc()
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(422, "invalid_parameter", _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: f"no such path {request.url.path}; the API is under /v1 (schema: /openapi.json)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error_response(ApiError(exc.status_code, code, message, headers=getattr(exc, "headers", None)))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # nobody is left to answer: one line for the log (not a traceback), and 499 (nginx's "client
        # closed request") for the metrics
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning("%s closed the connection during the upload to %s %s; request dropped", client,
                    request.method, request.url.path)
        return Response(status_code=499)


def no_unknown_params(request: Request) -> None:
    unknown = sorted(set(request.query_params) - set(SEGMENT_PARAMS))
    if unknown:
        raise ApiError(422, "unknown_parameter", f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                       f"valid: {', '.join(SEGMENT_PARAMS)}")


@dataclass(frozen=True)
class _Wanted:
    format: str
    rle: bool
    alpha: float
    boundaries: bool
    legend: bool


def add_segment_route(app: FastAPI, s: Served, dependencies: list) -> None:
    limits = s.settings.limits

    @app.post("/v1/segment", tags=["segmentation"], summary="Segment an image",
              dependencies=[*dependencies, Depends(no_unknown_params)],
              openapi_extra={"requestBody": SEGMENT_REQUEST_BODY}, responses={200: SEGMENT_OK, **SEGMENT_ERRORS})
    async def segment(
        request: Request,
        format: Literal["json", "label", "overlay", "confidence"] = Query(
            "json", description="what to answer; confidence: an 8-bit grayscale PNG of each pixel's top class "
                                "probability (value / 255), with the run's calibrated temperature"),
        rle: bool = Query(False, description="json: include the label map, run-length encoded"),
        alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay: opacity of the class colors"),
        boundaries: bool = Query(True, description="overlay: draw class edges at full strength"),
        legend: bool = Query(False, description="overlay: append a legend panel (the PNG grows by the panel)"),
    ) -> Response:
        wanted, t0 = _Wanted(format, rle, alpha, boundaries, legend), time.perf_counter()
        try:
            async with asyncio.timeout(limits.timeout_s):
                s.batcher.check_capacity()
                data, content_type, where = await read_upload(request, limits)
                return await _segment(s, data, content_type, where, wanted, t0)
        except TimeoutError:
            raise ApiError(408, "timeout", f"the request took longer than this server's {limits.timeout_s:g} s "
                           "limit (upload, queue and model together); retry, or send a smaller image",
                           "timeout_s", limits.timeout_s, headers={"Connection": "close"}) from None


async def _segment(s: Served, data: bytes, content_type: str | None, where: str, wanted: _Wanted,
                   t0: float) -> Response:
    """Size from the header, then (holding that many pixels of the budget) decode, label, encode."""
    limits = s.settings.limits
    size = declared_size(data)
    if size is not None:
        check_pixels(size, limits.max_pixels, where)
    # a header that does not parse is charged the largest size: decode_image refuses it (fast) anyway
    pixels = size[0] * size[1] if size is not None else limits.max_pixels
    async with s.budget.reserve(pixels):
        return await _decode_label_encode(s, data, content_type, where, wanted, t0)


async def _decode_label_encode(s: Served, data: bytes, content_type: str | None, where: str, wanted: _Wanted,
                               t0: float) -> Response:
    """The Server-Timing header says where the time since t0 (the request's start) went: decode includes
    reading the upload."""
    async with s.decode_slots:
        image = await run_in_threadpool(_taking(decode_image), [data], content_type, s.settings.limits, where)
    t_decode = time.perf_counter()
    if wanted.format == "confidence":
        return await _confidence(s, image, where, t0, t_decode)
    label, done = await _label(s, image, hashlib.sha256(data).hexdigest(), where)
    cached = done is None
    t_model = time.perf_counter()
    if wanted.format == "json":
        result = await run_in_threadpool(_taking(_json_result), [label], s, wanted.rle, (t_model - t_decode) * 1000,
                                         cached)
        note = _scale_note(s, image)
        response: Response = JSONResponse(result | ({"warning": note} if note else {}))
    elif wanted.format == "label":
        body = await run_in_threadpool(_taking(encode.label_png), [label], s.info.classes)
        response = Response(body, media_type="image/png")
    else:
        body = await run_in_threadpool(_taking(encode.overlay_png), [image], label, s.info.classes, wanted.alpha,
                                       wanted.boundaries, wanted.legend)
        response = Response(body, media_type="image/png")
    t_end = time.perf_counter()
    # model = waiting for and running the model; infer = the model call alone (its whole batch); every
    # entry stays plain name;dur=ms, which is what simple clients split on
    infer = "" if done is None else f", infer;dur={done.model_s * 1000:.1f}"
    response.headers["Server-Timing"] = (f"decode;dur={(t_decode - t0) * 1000:.1f}, model;dur="
                                         f"{(t_model - t_decode) * 1000:.1f}, encode;dur={(t_end - t_model) * 1000:.1f}"
                                         + infer)
    response.headers["X-Cache"] = "hit" if cached else "miss"
    note = _scale_note(s, image)
    if note:
        response.headers["X-Pixelseg-Warning"] = note
    return response


def _scale_note(s: Served, image: np.ndarray) -> str | None:
    """Predictor.scale_warning for this upload: an input far from the training images' size, said in a header
    (and in the JSON body) so a client can show it; the label map is still the model's answer."""
    check = getattr(s.predictor, "scale_warning", None)
    return check(tuple(image.shape[:2])) if check is not None else None


def _taking(fn):
    """fn with its first argument taken out of a one-item list. Why: anyio's worker threads keep the
    arguments of their last call alive until their next call, so an idle thread would hold the last
    upload, image or label map it worked on: memory the pixel budget has already handed to other
    requests (seen: a decoded image alive after its request in 1 of 3 runs of the budget test)."""
    def call(box: list, *args):
        return fn(box.pop(), *args)
    return call


def _model_input(s: Served, image: np.ndarray, where: str) -> np.ndarray:
    in_channels = s.info.preprocessing.in_channels
    try:
        return to_channels(image, in_channels)
    except ValueError:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise ApiError(422, "wrong_channels", f"{where} has {channels} channel(s) and cannot be "
                       f"converted to the {in_channels} the model takes") from None


async def _confidence(s: Served, image: np.ndarray, where: str, t0: float, t_decode: float) -> Response:
    """format=confidence: Predictor.probs (the run's temperature applied), its max as 8-bit PNG."""
    model_input = _model_input(s, image, where)
    async with s.probs_slot:
        conf = await run_in_threadpool(_taking(_top_probability), [model_input], s.predictor)
    t_model = time.perf_counter()
    body = await run_in_threadpool(_taking(encode.confidence_png), [conf])
    response = Response(body, media_type="image/png")
    t_end = time.perf_counter()
    response.headers["Server-Timing"] = (f"decode;dur={(t_decode - t0) * 1000:.1f}, "
                                         f"model;dur={(t_model - t_decode) * 1000:.1f}, "
                                         f"encode;dur={(t_end - t_model) * 1000:.1f}")
    response.headers["X-Temperature"] = f"{float(getattr(s.info, 'temperature', 1.0)):g}"
    return response


def _top_probability(model_input: np.ndarray, predictor) -> np.ndarray:
    return predictor.probs([model_input])[0].max(0)


async def _label(s: Served, image: np.ndarray, key: str, where: str) -> tuple[np.ndarray, Done | None]:
    """(label map, how the model made it; None when it came from the cache)."""
    label = s.cache.get(key)
    if label is not None:
        return label, None
    model_input = _model_input(s, image, where)
    done = await s.batcher.run(model_input)
    s.cache.put(key, done.label)
    return done.label, done


def _json_result(label: np.ndarray, s: Served, with_rle: bool, inference_ms: float, cached: bool) -> dict:
    counts = encode.class_counts(label, s.info.classes.num_classes)
    total = max(label.size, 1)
    shares = [{**ci.model_dump(), "pixels": int(counts[ci.index]), "fraction": float(counts[ci.index] / total)}
              for ci in s.class_infos]
    out = {"width": int(label.shape[1]), "height": int(label.shape[0]), "model": s.info.model, "classes": shares,
           "label_rle": None, "inference_ms": round(0.0 if cached else inference_ms, 2), "cached": cached}
    if with_rle:
        values, lengths = encode.rle(label)
        out["label_rle"] = {"height": out["height"], "width": out["width"], "values": values, "lengths": lengths}
    return out


def add_info_routes(app: FastAPI, s: Served, dependencies: list) -> None:
    @app.get("/v1/model", tags=["model"], summary="What this server's model is", response_model=ModelInfo,
             dependencies=dependencies, responses={401: SEGMENT_ERRORS[401]})
    async def model() -> ModelInfo:
        return s.model_info

    @app.get("/healthz", tags=["operations"], summary="Liveness and readiness", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", model=s.info.model, backend=s.backend, queued=s.batcher.pending)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text format)", dependencies=dependencies,
             response_class=Response, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                                       "description": "Prometheus exposition format 0.0.4"},
                                                 401: SEGMENT_ERRORS[401]})
    async def prometheus() -> Response:
        body, content_type = s.metrics.exposition()
        return Response(body, media_type=content_type)


def add_page(app: FastAPI, static: Path) -> None:
    index_html = (static / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index_html, headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                                 "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")


# Swagger UI's own page runs an inline script and styles; everything still comes from this server
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")


def add_docs(app: FastAPI) -> bool:
    """/docs: FastAPI's Swagger UI with its files from the fastapi-offline package instead of a CDN
    (FastAPI users look for it there). Without that package there is no /docs (False)."""
    try:
        import fastapi_offline
    except ImportError:
        return False
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    assets = Path(fastapi_offline.__file__).parent / "static"

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                                   swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-assets/favicon.png",
                                   # no badge fetched from validator.swagger.io
                                   swagger_ui_parameters={"validatorUrl": None})
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    return True
