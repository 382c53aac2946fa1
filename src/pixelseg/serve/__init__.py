"""pixelseg serve: an HTTP API and a web page for a run folder (FastAPI + uvicorn).

    from pixelseg.serve.app import create_app
    app = create_app("runs/my-run")          # then: uvicorn.run(app) or TestClient(app)

app.py builds the app from serve/settings.py (Limits, Batching, ServeSettings); routes.py answers; decode.py
and encode.py turn bytes into images and label maps into bytes; server.py runs uvicorn.
"""
