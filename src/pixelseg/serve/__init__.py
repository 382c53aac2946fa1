"""pixelseg serve: an HTTP API and a web page for a run folder (FastAPI + uvicorn).

    from pixelseg.serve import create_app
    app = create_app("runs/my-run")          # then: uvicorn.run(app) or TestClient(app)
"""
from pixelseg.serve.app import create_app
from pixelseg.serve.settings import Batching, Limits, ServeSettings

__all__ = ["create_app", "Limits", "Batching", "ServeSettings"]
