# pixelseg serve in a container: the HTTP API and web page for one run folder, on the CPU with OpenVINO.
#
#   docker build -t pixelseg .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/exp1:/model:ro" pixelseg          # then open http://localhost:8000
#
# The run folder is mounted at /model (read-only is fine: the exported model is then cached in /tmp).
# Options of `pixelseg serve` go after the image name, e.g. `... pixelseg pixelseg serve /model --host 0.0.0.0
# --workers 2`; PIXELSEG_API_KEY=... (docker run -e) requires the key in the X-API-Key header.
#
# CUDA variant: the same file with the CUDA build of PyTorch (its wheels bring the CUDA runtime; the host needs
# the NVIDIA driver and the NVIDIA Container Toolkit):
#   docker build -t pixelseg:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#   docker run --rm --gpus all -p 8000:8000 -v "$PWD/runs/exp1:/model:ro" pixelseg:cuda
FROM python:3.11-slim

# the CPU build of PyTorch (about 200 MB instead of several GB of CUDA libraries); see above for CUDA
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV and OpenVINO load these at import time; slim images leave them out
RUN apt-get update \
 && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY constraints.txt ./
# torch first, from the index chosen above, at the version the project tests (constraints.txt); a pin
# without a local label (torch==2.14.1) matches the index's 2.14.1+cpu / +cu126 builds
RUN pip install --index-url "$TORCH_INDEX" \
      "torch==$(sed -n 's/^torch==//p' constraints.txt)" "torchvision==$(sed -n 's/^torchvision==//p' constraints.txt)"

COPY pyproject.toml README.md ./
COPY src ./src
# pixelseg[serve,export]: FastAPI + uvicorn, and ONNX Runtime + OpenVINO for the fast CPU path
RUN pip install -c constraints.txt ".[serve,export]" && rm -rf /src

# not root: the server needs no privileges
RUN useradd --create-home --uid 1000 pixelseg
USER pixelseg
WORKDIR /home/pixelseg

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["pixelseg", "serve", "/model", "--host", "0.0.0.0"]
