"""The HTTP API and the web page: create_app(run) -> a FastAPI app (serve it with uvicorn).

    POST /v1/segment   an image (multipart field `image`, or the raw bytes) -> JSON | label PNG | overlay PNG
    GET  /v1/model     classes, colors, preprocessing, model name, training metrics, limits
    GET  /healthz      liveness/readiness (no API key needed)
    GET  /metrics      Prometheus text format
    GET  /             the web page (static files from this package; nothing from the internet)
    GET  /openapi.json the schema
    GET  /docs         Swagger UI, its files served from here (the fastapi-offline package), not from a CDN

Everything the server knows about the model comes from the run folder, through the Predictor.
The routes live in serve/routes.py, the answer shapes in serve/schemas.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from importlib import resources
from pathlib import Path

from fastapi import FastAPI

from pixelseg import __version__
from pixelseg.errors import PixelsegError
from pixelseg.run.folder import RunFolder
from pixelseg.serve import routes
from pixelseg.serve.batching import Batcher
from pixelseg.serve.budget import PixelBudget
from pixelseg.serve.cache import LabelCache
from pixelseg.serve.decode import SUPPORTED
from pixelseg.serve.metrics import Metrics, MetricsMiddleware
from pixelseg.serve.timeouts import BodyIdleTimeout
from pixelseg.serve.schemas import ClassInfo, ModelInfo
from pixelseg.serve.settings import Batching, Limits, ServeSettings

log = logging.getLogger("pixelseg.serve")


def make_predictor(run: str | Path, device: str, backend: str, threads: int | None = None):
    from pixelseg.inference.predictor import Predictor
    return Predictor(run, device, backend=backend, threads=threads)


def backend_name(predictor) -> str:
    # a stand-in predictor (tests, a caller's wrapper) may not say; the Predictor always does
    name = getattr(predictor, "backend_name", None)
    return name if isinstance(name, str) else "torch"


def _static_dir() -> Path:
    return Path(str(resources.files("pixelseg.serve") / "static"))


def _train_metrics(run: str) -> dict | None:
    try:
        return RunFolder(run).metrics()
    except (PixelsegError, OSError) as e:       # a damaged file must not keep the model from serving
        log.warning("%s; /v1/model will report no metrics", e)
        return None


def _model_info(settings: ServeSettings, pred, backend: str, class_infos: list[ClassInfo]) -> ModelInfo:
    info, limits = pred.info, settings.limits
    return ModelInfo(
        model=info.model, encoder=info.encoder, backend=backend, device=str(getattr(pred, "device", settings.device)),
        classes=class_infos, ignore_index=info.classes.ignore_index, in_channels=info.preprocessing.in_channels,
        preprocessing=info.preprocessing.to_dict(), metrics=_train_metrics(settings.run),
        limits={"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                "timeout_s": limits.timeout_s, "max_queue": limits.max_queue,
                "max_pixels_in_flight": limits.pixel_budget, "idle_timeout_s": limits.idle_timeout_s},
        batching={"max_batch": settings.batching.max_batch, "max_wait_ms": settings.batching.max_wait_ms},
        input_formats=SUPPORTED.replace(" or ", ", ").split(", "), pixelseg_version=__version__)


def _served(settings: ServeSettings, pred) -> routes.Served:
    classes = pred.info.classes
    class_infos = [ClassInfo(index=i, name=n, color=list(c)) for i, (n, c) in enumerate(zip(classes.names, classes.colors))]
    backend = backend_name(pred)
    metrics = Metrics()
    return routes.Served(
        settings=settings, predictor=pred, backend=backend, metrics=metrics, cache=LabelCache(settings.cache_pixels),
        batcher=Batcher(pred.predict_batch, settings.batching, settings.limits, metrics.observe_batch),
        # Decoding is CPU-bound and holds a full image in memory: more decodes at once than cores only
        # adds memory (a burst of 16 MP uploads), not speed.
        decode_slots=asyncio.Semaphore(os.cpu_count() or 2),
        budget=PixelBudget(settings.limits.pixel_budget, settings.limits.budget_wait_s),
        class_infos=class_infos, model_info=_model_info(settings, pred, backend, class_infos))


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
        from pixelseg.config import check_threads
        check_threads(settings.threads)          # before torch spawns them (issue 27)
        import torch
        torch.set_num_threads(settings.threads)
    pred = predictor if predictor is not None else make_predictor(settings.run, settings.device, settings.backend,
                                                                  settings.threads)
    served = _served(settings, pred)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await served.batcher.start()
        try:
            yield
        finally:
            await served.batcher.stop()

    info, classes = pred.info, pred.info.classes
    app = FastAPI(title="pixelseg", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Semantic segmentation with the `{info.model}` model of run `{Path(settings.run).name}`: "
                              f"{classes.num_classes} classes ({', '.join(classes.names[:8])}"
                              f"{', ...' if classes.num_classes > 8 else ''}).")
    app.add_middleware(BodyIdleTimeout, seconds=settings.limits.idle_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=served.metrics)
    app.state.settings, app.state.predictor = settings, pred
    app.state.batcher, app.state.metrics, app.state.budget = served.batcher, served.metrics, served.budget
    dependencies = routes.key_dependencies(settings.api_key)
    routes.add_error_handlers(app, served.metrics)
    routes.add_segment_route(app, served, dependencies)
    routes.add_info_routes(app, served, dependencies)
    routes.add_page(app, _static_dir())
    routes.add_docs(app)
    return app
