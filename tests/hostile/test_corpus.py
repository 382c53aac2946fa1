"""The bad-input corpus (corpus.py) through the command line, as a user's shell runs it: a subprocess in its
own working folder, under a memory cap a decompression bomb cannot pass. Each case must end in exit 1 or 2,
without a traceback, with a last line on stderr naming the file or flag involved, and with every file that
was there before unchanged (new files only where the case allows them)."""
from __future__ import annotations

import fnmatch
import hashlib
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.corpus import SLOW_VARIANTS, Ctx, all_cases, images

CASES = all_cases()
ALL = os.environ.get("PIXELSEG_HOSTILE") == "all"
PARAMS = [pytest.param(c, id=c.id, marks=[] if ALL or c.id not in SLOW_VARIANTS else
                       pytest.mark.skip(reason="a slower variant of a case that runs; PIXELSEG_HOSTILE=all runs it"))
          for c in CASES]
# the data segment (heap and private anonymous mappings), not the address space: torch's CUDA libraries map
# over 3 GB before anything runs. A normal command (the controls below) stays far under 3 GB of data, while
# decoding one of the bombs needs 10-30 GB.
MEMORY_CAP = 3 * 1024**3
TIMEOUT = 120
PARALLEL = 4


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))


def pixelseg(args, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELSEG_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
               CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", MPLBACKEND="Agg", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pixelseg", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_cap_memory)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root (links not followed) -> what it is: file content hash, link target, folder."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_files(run: Path) -> dict[str, str]:
    """The run's files, all of them: nothing but training writes into a run (the ONNX graph the default backend
    builds once goes to the user's cache)."""
    return snapshot(run)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A fast_scnn run folder (model.json + safetensors, random weights) shared by every case: never changed."""
    from pixelseg.inference.bench import model_run
    return model_run("fast_scnn", (32, 32), 2, tmp_path_factory.mktemp("shared") / "run")


def check(case, p: subprocess.CompletedProcess) -> None:
    out = f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"
    assert p.returncode in (1, 2), out
    assert "Traceback" not in p.stdout + p.stderr, out
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines, out
    last = lines[-1]
    if case.doctor and p.returncode == 1:       # the doctor lists each problem, then its verdict
        assert last.startswith("verdict:"), out
        problems = [ln for ln in lines if ln.startswith("problem:")]
        assert any(all(n in ln for n in case.names) for ln in problems), out
    else:
        assert "error" in last and all(n in last for n in case.names), out


@dataclass
class Outcome:
    tmp: Path
    args: list
    before: dict
    run_before: dict | None
    proc: subprocess.CompletedProcess | None = None
    after: dict | None = None
    seconds: float = 0.0


@pytest.fixture(scope="session")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Every selected case run once, a few at a time: most of a case's time is the interpreter starting and
    torch loading, which overlap well, and the corpus must stay a minute-scale part of the suite."""
    chosen = [it.callspec.params["case"] for it in request.session.items
              if getattr(it, "originalname", "") == "test_hostile_input_is_refused_in_one_line"
              and not it.get_closest_marker("skip")]
    run = request.getfixturevalue("tiny_run") if any(c.run for c in chosen) else None
    results = {}
    for c in chosen:
        tmp = tmp_path_factory.mktemp(c.id.replace("/", "_")[:40], numbered=True)
        args = c.build(Ctx(tmp, run if c.run else None))
        results[c.id] = Outcome(tmp, args, snapshot(tmp), run_files(run) if c.run else None)

    def one(c):
        o, t0 = results[c.id], time.perf_counter()
        try:
            o.proc = pixelseg(o.args, o.tmp)
        except subprocess.TimeoutExpired as e:
            o.proc = subprocess.CompletedProcess(e.cmd, -9, str(e.stdout or ""), f"timed out after {TIMEOUT}s")
        o.seconds = time.perf_counter() - t0
        o.after = snapshot(o.tmp)
    # the commands that load torch first, so that no slow case starts last and runs alone
    slow_first = sorted(chosen, key=lambda c: not (c.run or c.id.startswith(("train-", "evaluate-", "compare-"))))
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, slow_first))
    # the slowest cases first, to see what to move earlier than torch's import
    times = sorted(((o.seconds, k) for k, o in results.items()), reverse=True)
    (tmp_path_factory.getbasetemp() / "hostile-times.txt").write_text("".join(f"{t:6.1f}s {k}\n" for t, k in times))
    return results


@pytest.mark.parametrize("case", PARAMS)
@pytest.mark.slow
def test_hostile_input_is_refused_in_one_line(case, outcomes, request):
    o = outcomes[case.id]
    check(case, o.proc)
    changed = sorted(k for k, v in o.before.items() if o.after.get(k) != v)
    new = sorted(k for k in o.after.keys() - o.before.keys()
                 if not any(fnmatch.fnmatch(k, g) for g in case.writes))
    assert not changed and not new, f"changed: {changed}, new: {new}"
    if case.run:
        assert run_files(request.getfixturevalue("tiny_run")) == o.run_before, "the shared run folder was changed"


@pytest.mark.slow
def test_controls_pass_under_the_memory_cap(tmp_path, tiny_run):
    """The cap and the fixtures are not what makes the cases fail: the clean dataset passes the doctor and the
    run predicts, under the same cap."""
    from tests.hostile.corpus import dataset
    p = pixelseg(["verify-dataset", dataset(tmp_path / "ds")], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    p = pixelseg(["predict", tiny_run, images(tmp_path / "imgs"), "--out", "o"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(q.name for q in (tmp_path / "o").iterdir()) == ["im0.png", "im1.png"]


def test_the_memory_cap_stops_a_bomb_decoded_without_the_gate(tmp_path):
    """The cap is tight enough to matter: Pillow decoding the PNG bomb with its own check off dies under it."""
    from tests.hostile.corpus import bomb_png
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    code = "from PIL import Image; Image.MAX_IMAGE_PIXELS = None; Image.open('bomb.png').load()"
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       preexec_fn=_cap_memory)
    assert p.returncode != 0 and "MemoryError" in p.stderr, p.stderr[-2000:]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 80 and len(CASES) - len(SLOW_VARIANTS) >= 80
