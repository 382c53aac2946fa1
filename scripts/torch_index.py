#!/usr/bin/env python3
"""Which package index scripts/setup.sh installs torch and torchvision from.

Prints the index URL, or nothing for PyPI, and one line on stderr saying what it chose and why.
Standard library only: setup.sh runs it with the system python before the venv has anything in it.

  TORCH_INDEX_URL=<url>       that index, as asked; TORCH_INDEX_URL=pypi: PyPI
  an NVIDIA GPU               PyPI (its Linux wheels bring the CUDA libraries, wanted here)
  not Linux                   PyPI (the macOS and Windows wheels there are already CPU-only)
  otherwise                   the CPU index if it answers within a few seconds, else PyPI

PIXELSEG_TORCH_CPU_INDEX and PIXELSEG_NVIDIA_PROC replace the CPU index URL and /proc/driver/nvidia (for tests).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TIMEOUT_S = 5.0


def nvidia_gpu() -> str | None:
    """Why we think there is an NVIDIA GPU, or None."""
    proc = os.environ.get("PIXELSEG_NVIDIA_PROC", "/proc/driver/nvidia")
    if os.path.exists(proc):
        return f"{proc} exists"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            subprocess.run([smi], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S, check=True)
            return "nvidia-smi runs"
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def reachable(index: str, timeout: float = TIMEOUT_S) -> bool:
    """True if <index>/torch/ answers HTTP 200 within timeout seconds. The request runs in a daemon thread because
    urlopen's timeout does not cover the DNS lookup, which can hang for much longer."""
    result: list[bool] = []

    def probe():
        try:
            with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout) as r:
                result.append(r.status == 200)
        except Exception:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def choose() -> tuple[str, str]:
    """(index URL or "" for PyPI, the reason in words)."""
    asked = os.environ.get("TORCH_INDEX_URL", "").strip()
    if asked.lower() == "pypi":
        return "", "TORCH_INDEX_URL=pypi"
    if asked:
        return asked, "as asked (TORCH_INDEX_URL)"
    gpu = nvidia_gpu()
    if gpu:
        return "", f"NVIDIA GPU found ({gpu}): the CUDA wheels are wanted"
    if not sys.platform.startswith("linux"):
        return "", f"not Linux ({sys.platform}): PyPI's wheels are CPU-only there"
    cpu = os.environ.get("PIXELSEG_TORCH_CPU_INDEX", "").strip() or CPU_INDEX
    if reachable(cpu):
        return cpu, "no NVIDIA GPU found: CPU-only wheels (about 1 GB instead of 6)"
    return "", (f"no NVIDIA GPU found, but the CPU index {cpu} is unreachable, so PyPI's wheels are installed, "
                f"with the CUDA libraries (about 6 GB); to pick an index: TORCH_INDEX_URL=<url> bash scripts/setup.sh")


def main() -> int:
    index, why = choose()
    print(f"torch from {index or 'PyPI'}: {why}", file=sys.stderr)
    if index:
        print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
