"""What it takes to reproduce a run besides its config: versions, code, hardware, launch
(one entry of RUN/environment.json per training session)."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

PACKAGES = ("pixelseg", "torch", "torchvision", "timm", "segmentation-models-pytorch", "albumentations",
            "numpy", "opencv-python-headless", "opencv-python", "pillow", "safetensors")


def environment(seed: int, hw, d) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    versions = {"python": platform.python_version()}
    for pkg in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    return {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv, "cwd": os.getcwd(),
            "seed": seed, "versions": versions, "git": git_state(Path.cwd()),
            "hardware": {"device": hw.device, "name": hw.name, "cores": hw.cores, "platform": platform.platform(),
                         "cpu": cpu_name(), "cuda": torch.version.cuda,
                         "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
            "distributed": {"world_size": d.world, "backend": d.backend,
                            "nodes": int(os.environ.get("GROUP_WORLD_SIZE", 1)) if d.enabled else 1}}


def git_state(cwd: Path) -> dict | None:
    """The commit of the user's code (the repository around the working folder), if any."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": head.stdout.strip(), "dirty": dirty, "root": git("rev-parse", "--show-toplevel").stdout.strip()}
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
