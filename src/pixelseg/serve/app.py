"""The HTTP API and the web page: create_app(run) -> a FastAPI app (serve it with uvicorn).

    POST /v1/segment   an image (multipart field `image`, or the raw bytes) -> JSON | label PNG | overlay PNG
    GET  /v1/model     classes, colors, preprocessing, model name, training metrics, limits
    GET  /healthz      liveness/readiness (no API key needed)
    GET  /metrics      Prometheus text format
    GET  /             the web page (static files from this package; nothing from the internet)
    GET  /openapi.json the schema (the Swagger/ReDoc pages are off: they load their assets from a CDN)

Everything the server knows about the model comes from the run folder, through the Predictor.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import logging
import os
import time
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from pixelseg import __version__
from pixelseg.data.io import to_channels
from pixelseg.errors import PixelsegError
from pixelseg.serve import encode
from pixelseg.serve.batching import Batcher
from pixelseg.serve.decode import SUPPORTED, decode_image, media_type
from pixelseg.serve.errors import SEGMENT_ERRORS, ApiError
from pixelseg.serve.metrics import Metrics, MetricsMiddleware
from pixelseg.serve.settings import Batching, Limits, ServeSettings

log = logging.getLogger("pixelseg.serve")

API_KEY_HEADER = "X-API-Key"
IMAGE_FIELD = "image"
SEGMENT_PARAMS = ("format", "rle", "alpha", "boundaries", "legend")
# a multipart body holds the image and a little framing; anything with more parts is not our client
_MAX_FORM_PARTS = 8


# ------------------------------------------------------------------------------------ response models

class ClassInfo(BaseModel):
    index: int = Field(description="the class index: the pixel value in the label PNG")
    name: str
    color: list[int] = Field(min_length=3, max_length=3, description="[r, g, b] in 0..255, as in the label PNG's palette")


class ClassShare(ClassInfo):
    pixels: int = Field(description="pixels labeled with this class")
    fraction: float = Field(ge=0, le=1, description="pixels / (width * height)")


class LabelRLE(BaseModel):
    """Row-major runs: values[i] repeated lengths[i] times; np.repeat(values, lengths).reshape(height, width)."""
    height: int
    width: int
    values: list[int]
    lengths: list[int]


class SegmentResult(BaseModel):
    width: int = Field(description="of the uploaded image (after its EXIF orientation); the label map has this size")
    height: int
    model: str
    classes: list[ClassShare] = Field(description="every class of the model, in index order (absent ones with 0 pixels)")
    label_rle: LabelRLE | None = Field(None, description="the label map, with rle=true")
    inference_ms: float = Field(description="waiting for and running the model (0 when answered from the cache)")
    cached: bool = Field(description="the label map came from the server's cache of recent identical uploads")


class ModelInfo(BaseModel):
    model: str
    encoder: str | None
    backend: str
    device: str
    classes: list[ClassInfo]
    ignore_index: int
    in_channels: int
    preprocessing: dict[str, Any] = Field(description="image_size [h, w] the network sees, mean/std (0..255 scale), "
                                                      "in_channels, resize")
    metrics: dict[str, Any] | None = Field(description="the run's validation metrics (RUN/metrics.json), if present")
    limits: dict[str, float | int]
    batching: dict[str, float | int]
    input_formats: list[str]
    pixelseg_version: str


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    backend: str
    queued: int


# ------------------------------------------------------------------------------------------ helpers

def make_predictor(run: str | Path, device: str, backend: str, threads: int | None = None):
    """A Predictor, with `backend` and `threads` passed through when this pixelseg's Predictor takes them."""
    from pixelseg.inference import Predictor
    params = inspect.signature(Predictor).parameters
    kwargs = {"threads": threads} if threads and "threads" in params else {}
    if "backend" in params:
        return Predictor(run, device, backend=backend, **kwargs)
    if backend not in ("auto", "torch"):
        raise PixelsegError(f"--backend {backend}: this pixelseg's predictor runs PyTorch only; use --backend auto")
    return Predictor(run, device, **kwargs)


def backend_name(predictor) -> str:
    name = getattr(predictor, "backend_name", None)
    return name if isinstance(name, str) else "torch"


class LabelCache:
    """Label maps of recent uploads by content hash, bounded by total pixels (LRU).

    Why: the web page asks twice for one picture (JSON to draw it, then the label PNG to download), and
    clients retry. Only touched from the event loop thread, so it needs no lock."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pixels = 0

    def get(self, key: str) -> np.ndarray | None:
        label = self._items.get(key)
        if label is not None:
            self._items.move_to_end(key)
        return label

    def put(self, key: str, label: np.ndarray) -> None:
        if label.size > self.max_pixels or key in self._items:
            return
        self._items[key] = label
        self._pixels += label.size
        while self._pixels > self.max_pixels:
            _, old = self._items.popitem(last=False)
            self._pixels -= old.size


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes max_upload_bytes (declared or counted)."""
    declared = request.headers.get("content-length", "")
    too_big = ApiError(413, "payload_too_large", f"the upload is larger than this server's limit of "
                       f"{limits.max_upload_bytes:,} bytes", "max_upload_bytes", limits.max_upload_bytes)
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_upload_bytes:
            raise too_big
    return bytes(body)


async def _upload(request: Request, limits: Limits) -> tuple[bytes, str | None, str]:
    """(image bytes, their declared content type, how to name them in messages) from either body form."""
    content_type = request.headers.get("content-type")
    mt = media_type(content_type)
    if mt == "multipart/form-data":
        body = await _read_body(request, limits)

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        try:
            form = await MultiPartParser(request.headers, chunks(), max_files=_MAX_FORM_PARTS,
                                         max_fields=_MAX_FORM_PARTS).parse()
        except MultiPartException as e:
            raise ApiError(400, "malformed_multipart", f"the multipart body cannot be parsed ({e})") from None
        try:
            names = list(form.keys())
            unknown = sorted(set(names) - {IMAGE_FIELD})
            if IMAGE_FIELD not in names:
                got = f"got {', '.join(repr(n) for n in names)}" if names else "it has no fields"
                raise ApiError(422, "missing_field",
                               f"the multipart body has no '{IMAGE_FIELD}' field ({got}); send the file as '{IMAGE_FIELD}'")
            if unknown:
                raise ApiError(422, "unknown_field", f"unknown multipart field(s) {', '.join(map(repr, unknown))}; "
                               f"send only '{IMAGE_FIELD}' (options go in the query string: {', '.join(SEGMENT_PARAMS)})")
            parts = form.getlist(IMAGE_FIELD)
            if len(parts) != 1 or not isinstance(parts[0], UploadFile):
                raise ApiError(422, "invalid_field", f"'{IMAGE_FIELD}' must be exactly one file part "
                               f"(got {len(parts)} part(s){'' if isinstance(parts[0], UploadFile) else ', not a file'})")
            part = parts[0]
            data = await part.read()
            return data, part.content_type, f"field '{IMAGE_FIELD}' ({part.filename or 'no file name'})"
        finally:
            await form.close()
    if mt in ("application/x-www-form-urlencoded", "text/plain", "application/json") or mt.startswith("text/"):
        raise ApiError(415, "unsupported_media_type",
                       f"content type '{mt}' is not an image; send multipart/form-data with the file in field "
                       f"'{IMAGE_FIELD}', or the raw bytes with Content-Type image/png, image/jpeg, ... "
                       "(curl: -H 'Content-Type: image/png' --data-binary @photo.png)")
    return await _read_body(request, limits), content_type, "the request body"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _static_dir() -> Path:
    return Path(str(resources.files("pixelseg.serve") / "static"))


# -------------------------------------------------------------------------------------------- app

def create_app(run: str | Path | ServeSettings, *, backend: str = "auto", device: str = "auto",
               api_key: str | None = None, limits: Limits | None = None, batching: Batching | None = None,
               threads: int | None = None, cache_pixels: int | None = None, predictor=None) -> FastAPI:
    """A FastAPI app serving the run folder `run` (or built from a ServeSettings).

    The model is loaded here, so a bad run folder fails before anything listens. `predictor` lets a
    caller hand in an already loaded Predictor (it must be for the same run)."""
    if isinstance(run, ServeSettings):
        settings = run
    else:
        settings = ServeSettings(str(run), backend=backend, device=device, api_key=api_key,
                                 limits=limits or Limits(), batching=batching or Batching(), threads=threads,
                                 **({} if cache_pixels is None else {"cache_pixels": cache_pixels}))
    if settings.threads:
        import torch
        torch.set_num_threads(settings.threads)
    pred = predictor if predictor is not None else make_predictor(settings.run, settings.device, settings.backend,
                                                                  settings.threads)
    info = pred.info
    classes = info.classes
    backend = backend_name(pred)
    limits_ = settings.limits
    metrics = Metrics()
    cache = LabelCache(settings.cache_pixels)
    # Decoding is CPU-bound and holds a full image in memory: more decodes at once than cores only adds
    # memory (a burst of 16 MP uploads), not speed.
    decode_slots = asyncio.Semaphore(os.cpu_count() or 2)
    batcher = Batcher(pred.predict_batch, settings.batching, limits_, metrics.observe_batch)

    train_metrics = None
    metrics_file = Path(settings.run) / "metrics.json"
    if metrics_file.is_file():
        try:
            train_metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("%s: unreadable, /v1/model will report no metrics", metrics_file)

    class_infos = [ClassInfo(index=i, name=n, color=list(c)) for i, (n, c) in enumerate(zip(classes.names, classes.colors))]
    model_info = ModelInfo(
        model=info.model, encoder=info.encoder, backend=backend, device=str(getattr(pred, "device", settings.device)),
        classes=class_infos, ignore_index=classes.ignore_index, in_channels=info.preprocessing.in_channels,
        preprocessing=info.preprocessing.to_dict(), metrics=train_metrics,
        limits={"max_upload_bytes": limits_.max_upload_bytes, "max_pixels": limits_.max_pixels,
                "timeout_s": limits_.timeout_s, "max_queue": limits_.max_queue},
        batching={"max_batch": settings.batching.max_batch, "max_wait_ms": settings.batching.max_wait_ms},
        input_formats=SUPPORTED.replace(" or ", ", ").split(", "), pixelseg_version=__version__)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    # The key check exists only when a key is set, so the schema documents a security scheme exactly then.
    dependencies = []
    if settings.api_key:
        header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="the key given to `pixelseg serve --api-key` (or PIXELSEG_API_KEY)")
        expected = settings.api_key.encode()

        async def require_key(key: str | None = Security(header)) -> None:
            if key is None or not hmac.compare_digest(key.encode(), expected):
                raise ApiError(401, "unauthorized", f"this server needs its API key in the {API_KEY_HEADER} header"
                               + ("" if key is None else " (the key sent is wrong)"),
                               headers={"WWW-Authenticate": API_KEY_HEADER})
        dependencies = [Depends(require_key)]

    app = FastAPI(title="pixelseg", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Semantic segmentation with the `{info.model}` model of run `{Path(settings.run).name}`: "
                              f"{classes.num_classes} classes ({', '.join(classes.names[:8])}"
                              f"{', ...' if classes.num_classes > 8 else ''}).")
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.settings, app.state.predictor, app.state.batcher, app.state.metrics = settings, pred, batcher, metrics

    # ----------------------------------------------------------------------------- error answers
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
        err = ApiError(exc.status_code, code, message, headers=getattr(exc, "headers", None))
        return error_response(err)

    def no_unknown_params(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(SEGMENT_PARAMS))
        if unknown:
            raise ApiError(422, "unknown_parameter", f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                           f"valid: {', '.join(SEGMENT_PARAMS)}")

    # --------------------------------------------------------------------------------- endpoints
    image_schema = {"type": "string", "format": "binary"}
    request_body = {
        "required": True,
        "description": f"a {SUPPORTED} image: multipart/form-data with the file in field `{IMAGE_FIELD}`, or the raw "
                       "bytes with their image content type (or application/octet-stream)",
        "content": {"multipart/form-data": {"schema": {"type": "object", "required": [IMAGE_FIELD],
                                                       "properties": {IMAGE_FIELD: image_schema},
                                                       "additionalProperties": False}},
                    **{ct: {"schema": image_schema} for ct in ("image/png", "image/jpeg", "image/bmp", "image/tiff",
                                                               "image/webp", "application/octet-stream")}},
    }

    @app.post("/v1/segment", tags=["segmentation"], summary="Segment an image",
              dependencies=[*dependencies, Depends(no_unknown_params)],
              openapi_extra={"requestBody": request_body},
              responses={200: {"model": SegmentResult,
                               "description": "format=json: the class table with each class's share (and the RLE "
                                              "label map with rle=true); format=label: a palette PNG whose pixel "
                                              "values are class indices; format=overlay: the image with the classes "
                                              "blended over it. PNGs have the uploaded image's size (overlay with "
                                              "legend=true adds a legend panel).",
                               "content": {"image/png": {"schema": image_schema}}},
                         **SEGMENT_ERRORS})
    async def segment(
        request: Request,
        format: Literal["json", "label", "overlay"] = Query("json", description="what to answer"),
        rle: bool = Query(False, description="json: include the label map, run-length encoded"),
        alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay: opacity of the class colors"),
        boundaries: bool = Query(True, description="overlay: draw class edges at full strength"),
        legend: bool = Query(False, description="overlay: append a legend panel (the PNG grows by the panel)"),
    ) -> Response:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(limits_.timeout_s):
                batcher.check_capacity()
                data, content_type, where = await _upload(request, limits_)
                async with decode_slots:
                    image = await run_in_threadpool(decode_image, data, content_type, limits_, where)
                t_decode = time.perf_counter()
                key = hashlib.sha256(data).hexdigest()
                label = cache.get(key)
                cached = label is not None
                if label is None:
                    try:
                        model_input = to_channels(image, info.preprocessing.in_channels)
                    except ValueError:
                        channels = 1 if image.ndim == 2 else image.shape[2]
                        raise ApiError(422, "wrong_channels", f"{where} has {channels} channel(s) and cannot be "
                                       f"converted to the {info.preprocessing.in_channels} the model takes") from None
                    label = await batcher.submit(model_input)
                    cache.put(key, label)
                t_model = time.perf_counter()
                if format == "json":
                    result = await run_in_threadpool(_json_result, label, rle, (t_model - t_decode) * 1000, cached)
                    response: Response = JSONResponse(result)
                else:
                    body = await run_in_threadpool(
                        encode.label_png, label, classes) if format == "label" else await run_in_threadpool(
                        encode.overlay_png, image, label, classes, alpha, boundaries, legend)
                    response = Response(body, media_type="image/png")
        except TimeoutError:
            raise ApiError(408, "timeout", f"the request took longer than this server's {limits_.timeout_s:g} s "
                           "limit (upload, queue and model together); retry, or send a smaller image",
                           "timeout_s", limits_.timeout_s) from None
        t_end = time.perf_counter()
        response.headers["Server-Timing"] = (f"decode;dur={(t_decode - t0) * 1000:.1f}, model;dur="
                                             f"{(t_model - t_decode) * 1000:.1f}, encode;dur={(t_end - t_model) * 1000:.1f}")
        response.headers["X-Cache"] = "hit" if cached else "miss"
        return response

    def _json_result(label: np.ndarray, with_rle: bool, inference_ms: float, cached: bool) -> dict:
        counts = encode.class_counts(label, classes.num_classes)
        total = max(label.size, 1)
        shares = [{**ci.model_dump(), "pixels": int(counts[ci.index]), "fraction": float(counts[ci.index] / total)}
                  for ci in class_infos]
        out = {"width": int(label.shape[1]), "height": int(label.shape[0]), "model": info.model, "classes": shares,
               "label_rle": None, "inference_ms": round(0.0 if cached else inference_ms, 2), "cached": cached}
        if with_rle:
            values, lengths = encode.rle(label)
            out["label_rle"] = {"height": out["height"], "width": out["width"], "values": values, "lengths": lengths}
        return out

    @app.get("/v1/model", tags=["model"], summary="What this server's model is", response_model=ModelInfo,
             dependencies=dependencies, responses={401: SEGMENT_ERRORS[401]})
    async def model() -> ModelInfo:
        return model_info

    @app.get("/healthz", tags=["operations"], summary="Liveness and readiness", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", model=info.model, backend=backend, queued=batcher.pending)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text format)", dependencies=dependencies,
             response_class=Response, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                                       "description": "Prometheus exposition format 0.0.4"},
                                                 401: SEGMENT_ERRORS[401]})
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    static = _static_dir()
    index_html = (static / "index.html").read_text(encoding="utf-8")
    # the page may talk to this server only: a CDN asset would not load even if someone added one
    csp = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index_html, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                                                 "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")
    return app
