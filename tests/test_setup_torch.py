"""scripts/torch_index.py (where setup.sh installs PyTorch from) and its use in scripts/setup.sh, offline: a local
http.server stands in for download.pytorch.org/whl/cpu, a fake nvidia-smi for a GPU, a fake .venv/bin/python for
pip; and pip's resolver, on a fake local-version wheel, admits torch X+cpu under constraints.txt's torch==X."""
from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHOOSER = ROOT / "scripts" / "torch_index.py"


def torch_pin() -> str:
    pins = re.findall(r"^torch==(\S+)\s*$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert len(pins) == 1 and "+" not in pins[0], pins     # one exact public pin, which a +cpu build can meet
    return pins[0]


def free_port() -> int:
    """A localhost port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cpu_index(tmp_path_factory):
    """URL of a local fake CPU index: <url>/torch/ answers 200, <url>/missing/torch/ 404."""
    root = tmp_path_factory.mktemp("whl")
    (root / "cpu" / "torch").mkdir(parents=True)
    (root / "cpu" / "torch" / "index.html").write_text("<a href='torch-x+cpu-py3-none-any.whl'>torch</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cpu"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fakebin(tmp_path):
    """An empty folder that is the whole PATH of the chooser: put a fake nvidia-smi in it to have a GPU."""
    d = tmp_path / "bin"
    d.mkdir()
    return d


def nvidia_smi(fakebin: Path, rc: int):
    p = fakebin / "nvidia-smi"
    p.write_text(f"#!/bin/sh\nexit {rc}\n")
    p.chmod(0o755)


def chooser_env(fakebin: Path, index: str, **extra) -> dict:
    # built from scratch: no proxy variables, no real nvidia-smi or /proc/driver/nvidia (the GPU machines have both)
    return {"PATH": str(fakebin), "PIXELSEG_NVIDIA_PROC": str(fakebin / "no-driver"),
            "PIXELSEG_TORCH_CPU_INDEX": index, **extra}


def choose(env: dict) -> tuple[str, str, float]:
    """(stdout, stderr, seconds) of the chooser run as setup.sh runs it; -I -S: no site-packages, so stdlib only."""
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-I", "-S", str(CHOOSER)], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr       # one line saying what and why
    return p.stdout.strip(), p.stderr.strip(), time.monotonic() - t


def test_no_gpu_and_the_cpu_index_answers_gives_the_cpu_index(fakebin, cpu_index):
    out, err, _ = choose(chooser_env(fakebin, cpu_index))
    assert out == cpu_index and "no NVIDIA GPU" in err and "CPU-only" in err


def test_an_index_without_torch_is_not_taken(fakebin, cpu_index):
    out, err, _ = choose(chooser_env(fakebin, cpu_index + "/missing"))
    assert out == "" and "unreachable" in err


def test_torch_index_url_wins_and_pypi_opts_out(fakebin, cpu_index):
    out, err, _ = choose(chooser_env(fakebin, cpu_index, TORCH_INDEX_URL="https://example.invalid/whl/cu126"))
    assert out == "https://example.invalid/whl/cu126" and "as asked" in err
    out, err, _ = choose(chooser_env(fakebin, cpu_index, TORCH_INDEX_URL="pypi"))
    assert out == "" and "PyPI" in err and "TORCH_INDEX_URL=pypi" in err


def test_an_nvidia_gpu_gives_pypi(fakebin, cpu_index, tmp_path):
    nvidia_smi(fakebin, 0)
    out, err, _ = choose(chooser_env(fakebin, cpu_index))
    assert out == "" and "nvidia-smi runs" in err
    nvidia_smi(fakebin, 9)                                           # nvidia-smi without a driver: no GPU
    assert choose(chooser_env(fakebin, cpu_index))[0] == cpu_index
    proc = tmp_path / "proc-driver-nvidia"
    proc.mkdir()
    out, err, _ = choose(chooser_env(fakebin, cpu_index, PIXELSEG_NVIDIA_PROC=str(proc)))
    assert out == "" and str(proc) in err


def test_an_unreachable_cpu_index_falls_back_to_pypi_fast(fakebin):
    out, err, seconds = choose(chooser_env(fakebin, f"http://127.0.0.1:{free_port()}/whl/cpu"))
    assert out == "" and "unreachable" in err and "6 GB" in err and "TORCH_INDEX_URL=" in err
    assert seconds < 8, seconds


def load_chooser():
    spec = importlib.util.spec_from_file_location("torch_index", CHOOSER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_server_that_never_answers_is_given_up_at_the_deadline():
    mod = load_chooser()
    with socket.socket() as s:                  # listens, never accepts nor answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        t = time.monotonic()
        assert mod.reachable(f"http://127.0.0.1:{s.getsockname()[1]}/cpu", timeout=0.5) is False
        assert time.monotonic() - t < 2


def test_a_dns_lookup_that_hangs_is_given_up_at_the_deadline(monkeypatch):
    """urlopen's timeout does not cover the name lookup; the probe's own deadline does."""
    mod = load_chooser()
    release = threading.Event()

    def hanging_lookup(*a, **k):
        release.wait(10)
        raise socket.gaierror("hung")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    t = time.monotonic()
    try:
        assert mod.reachable("http://download.example.invalid/whl/cpu", timeout=0.5) is False
        assert time.monotonic() - t < 2
    finally:
        release.set()


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_not_linux_gives_pypi_without_probing(platform, monkeypatch, fakebin):
    mod = load_chooser()
    for k, v in chooser_env(fakebin, "http://127.0.0.1:9/never-asked").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    monkeypatch.setattr(mod, "reachable", lambda *a, **k: pytest.fail("probed"))
    monkeypatch.setattr(sys, "platform", platform)
    index, why = mod.choose()
    assert index == "" and "not Linux" in why


# --- pip's resolver: the pin admits the CPU build ---------------------------------------------------------------

def fake_wheel(simple: Path, version: str) -> str:
    """A minimal valid wheel torch-<version>-py3-none-any.whl in a PEP 503 index at simple/; its file name."""
    name = f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    files = {"torch/__init__.py": b"",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pixelseg-test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()}"
                     f",{len(data)}\n" for path, data in files.items()) + f"{info}/RECORD,,\n"
    (simple / "torch").mkdir(parents=True)
    with zipfile.ZipFile(simple / "torch" / name, "w") as z:
        for path, data in {**files, f"{info}/RECORD": record.encode()}.items():
            z.writestr(path, data)
    (simple / "index.html").write_text("<!DOCTYPE html><html><body><a href='torch/'>torch</a></body></html>")
    (simple / "torch" / "index.html").write_text(
        f"<!DOCTYPE html><html><body><a href='{name.replace('+', '%2B')}'>{name}</a></body></html>")
    return name


def pip_dry_run(simple: Path, constraints: Path, report: Path) -> subprocess.CompletedProcess:
    # no pip configuration of this machine (its extra indexes, find-links and global constraints): only our index
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--no-cache-dir",
         "--disable-pip-version-check", "--report", str(report), "--index-url", simple.as_uri(),
         "-c", str(constraints), "torch"], env=env, capture_output=True, text=True, timeout=60)


def test_pip_takes_the_cpu_build_under_the_pin_and_nothing_else(tmp_path):
    pin = torch_pin()
    simple = tmp_path / "simple"
    wheel = fake_wheel(simple, f"{pin}+cpu")
    p = pip_dry_run(simple, ROOT / "constraints.txt", tmp_path / "r.json")     # the file setup.sh passes
    assert p.returncode == 0, p.stdout + p.stderr
    (picked,) = json.loads((tmp_path / "r.json").read_text())["install"]
    assert picked["metadata"]["name"] == "torch" and picked["metadata"]["version"] == f"{pin}+cpu"
    assert picked["download_info"]["url"].endswith(wheel.replace("+", "%2B"))

    major, minor = pin.split(".")[:2]
    other = tmp_path / "other.txt"
    other.write_text(f"torch=={major}.{int(minor) - 1}.0\n")                   # 2.14.1 -> 2.13.0
    p = pip_dry_run(simple, other, tmp_path / "r2.json")
    assert p.returncode != 0 and re.search(r"ResolutionImpossible|No matching distribution", p.stderr), p.stderr


# --- scripts/setup.sh with a fake .venv: which pip commands it runs, its stamp, idempotence ---------------------

@pytest.fixture
def checkout(tmp_path):
    """A copy of what setup.sh reads, with a .venv whose python logs its arguments (one line per call)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for f in ("scripts/setup.sh", "scripts/torch_index.py", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / f, repo / f)
    (repo / ".venv" / "bin").mkdir(parents=True)
    py = repo / ".venv" / "bin" / "python"
    py.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../../pip.log"\nexit "${FAKE_PIP_RC:-0}"\n')
    py.chmod(0o755)
    return repo


def setup_sh(repo: Path, fakebin: Path, index: str, **extra) -> subprocess.CompletedProcess:
    env = chooser_env(fakebin, index, **extra)
    env["PATH"] = f"{fakebin}:/usr/bin:/bin"
    env["PYTHON"] = sys.executable
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)


def pip_calls(repo: Path) -> list[str]:
    log = repo / "pip.log"
    return log.read_text().splitlines() if log.is_file() else []


def stamps(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".venv").glob(".installed-*"))


def test_setup_installs_torch_from_the_cpu_index_once(checkout, fakebin, cpu_index):
    p = setup_sh(checkout, fakebin, cpu_index)
    assert p.returncode == 0, p.stderr
    calls = pip_calls(checkout)
    assert len(calls) == 2 and "--force-reinstall" not in calls[0], calls          # a fresh venv: nothing to replace
    assert calls[0].endswith(f"-c constraints.txt --index-url {cpu_index} torch torchvision")
    assert calls[1].endswith("-c constraints.txt -e .")
    (stamp,) = stamps(checkout)
    assert ".torch-" in stamp and (checkout / ".venv" / ".torch-index").read_text().strip() == cpu_index

    p = setup_sh(checkout, fakebin, f"http://127.0.0.1:{free_port()}/cpu")           # again, index gone: kept
    assert p.returncode == 0 and p.stderr == "" and len(pip_calls(checkout)) == 2, p.stderr
    assert stamps(checkout) == [stamp]


def test_setup_reinstalls_torch_when_the_choice_changes(checkout, fakebin, cpu_index):
    assert setup_sh(checkout, fakebin, cpu_index).returncode == 0
    p = setup_sh(checkout, fakebin, cpu_index, TORCH_INDEX_URL="pypi")
    assert p.returncode == 0, p.stderr
    calls = pip_calls(checkout)[2:]
    assert [c.split(" -c constraints.txt ")[-1] for c in calls] == \
        ["--force-reinstall --no-deps torch torchvision", "torch torchvision", "-e ."], calls
    assert [s for s in stamps(checkout) if ".torch-" in s] == [] and len(stamps(checkout)) == 1
    assert (checkout / ".venv" / ".torch-index").read_text().strip() == "pypi"
    p = setup_sh(checkout, fakebin, cpu_index, TORCH_INDEX_URL="pypi")               # the same choice: nothing
    assert p.returncode == 0 and len(pip_calls(checkout)) == 5


def test_setup_replaces_a_pypi_torch_installed_before_the_choice_was_recorded(checkout, fakebin, cpu_index):
    (checkout / ".venv" / "lib" / "python3.11" / "site-packages" / "torch-2.14.1.dist-info").mkdir(parents=True)
    assert setup_sh(checkout, fakebin, cpu_index).returncode == 0
    calls = pip_calls(checkout)
    assert calls[0].endswith(f"--force-reinstall --no-deps --index-url {cpu_index} torch torchvision"), calls


def test_setup_without_a_route_to_the_cpu_index_uses_pypi(checkout, fakebin):
    t = time.monotonic()
    p = setup_sh(checkout, fakebin, f"http://127.0.0.1:{free_port()}/cpu")
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t < 10 and "unreachable" in p.stderr
    calls = pip_calls(checkout)
    assert [c.split(" -c constraints.txt ")[-1] for c in calls] == ["torch torchvision", "-e ."], calls
    assert len(stamps(checkout)) == 1 and ".torch-" not in stamps(checkout)[0]


def test_setup_stops_on_a_failed_install_and_leaves_no_stamp(checkout, fakebin, cpu_index):
    p = setup_sh(checkout, fakebin, cpu_index, FAKE_PIP_RC="1")
    assert p.returncode != 0 and len(pip_calls(checkout)) == 1 and stamps(checkout) == []
