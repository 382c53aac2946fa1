"""The wheel a user installs: built with `python -m build` (no network: --no-isolation uses this environment's
setuptools), it holds the CLI and the web page's static files, installs into a fresh venv and `pixelseg --help`
runs from it. And the Dockerfile names what the image needs (no Docker here to build it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = sorted(p.name for p in (ROOT / "src" / "pixelseg" / "serve" / "static").iterdir() if p.is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the `build` package is missing: pip install -e '.[test]' installs it")
    # a copy of the sources, so that build/ and *.egg-info never land in the working tree
    src = tmp_path_factory.mktemp("sdist-tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (whl,) = out.glob("pixelseg-*.whl")
    return whl


def test_wheel_holds_the_cli_the_static_files_and_the_extras(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        entry = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert STATIC and {f"pixelseg/serve/static/{n}" for n in STATIC} <= names
    assert {"pixelseg/cli/__init__.py", "pixelseg/cli/main.py", "pixelseg/cli/hub.py", "pixelseg/inference/results.py",
            "pixelseg/engine/tracking.py", "pixelseg/hub.py", "pixelseg/__main__.py"} <= names
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
    assert "pixelseg = pixelseg.cli:main" in entry
    for extra in ("serve", "export", "hub", "mlflow", "wandb", "logging"):
        assert f"Provides-Extra: {extra}" in meta


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_the_cli_runs(wheel, tmp_path):
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # the dependencies (torch, ...) come from this environment, so pip needs no index: only pixelseg is new
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(venv / "bin" / "pixelseg"), "--help"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    for command in ("train", "predict", "serve", "push", "pull"):
        assert f"    {command}" in p.stdout
    code = ("import importlib.resources as r, pixelseg; print(pixelseg.__file__); "
            "print(sorted(f.name for f in r.files('pixelseg.serve').joinpath('static').iterdir()))")
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    where, static = p.stdout.splitlines()
    assert where.startswith(purelib)                      # the installed copy, not the working tree
    assert static == repr(STATIC)


def test_dockerfile_names_the_extras_and_serves_the_run():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "pixelseg[serve,export]" in text or ".[serve,export]" in text
    assert "download.pytorch.org/whl/cpu" in text                  # the CPU build of torch, not the CUDA one
    assert "EXPOSE 8000" in text
    assert 'CMD ["pixelseg", "serve", "/model", "--host", "0.0.0.0"]' in text
    assert "-c constraints.txt" in text                            # the tested versions
    assert "CUDA" in text                                          # the GPU variant is documented
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", "tests"} <= {p.strip("/") for p in ignore}
