"""torchrun on the CPU (gloo): 2 processes train like 1, a killed rank ends the job with a message,
prediction splits its inputs over the ranks."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.run.checkpoints import load_state

from tests.helpers import tinynet

HELPER = tinynet.__file__
ARGS = ["--model", tinynet.NAME, "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
        "--lr", "0.01", "--augment", "light", "--no-report"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=16, n_val=6, size=(32, 32), seed=5)
    return root


def _torchrun(nproc: int, *args: str) -> list[str]:
    # --standalone: a private rendezvous on a free port, so parallel test runs cannot collide
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), HELPER, *args]


@pytest.mark.slow
def test_two_processes_train_like_one(data, tmp_path):
    """Same seed and global batch: 2 gloo ranks (2 images each) reach the weights and metrics of 1 process
    (4 images). The net has no BatchNorm, so the only difference is the order of float sums."""
    with tinynet.registered():
        one = pixelseg.train(data, out=str(tmp_path / "one"), epochs=3, model=tinynet.NAME, image_size=(32, 32),
                             batch_size=4, num_workers=0, threads=1, lr=0.01, augment="light", quiet=True)
    r = subprocess.run(_torchrun(2, "train", "--data", str(data), "--out", str(tmp_path / "two"), "--epochs", "3", *ARGS),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    two = tmp_path / "two"
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (one, two))
    assert m1["processes"] == 1 and m2["processes"] == 2
    assert m2["mIoU"] == pytest.approx(m1["mIoU"], abs=1e-4)
    assert m2["pixel_accuracy"] == pytest.approx(m1["pixel_accuracy"], abs=1e-4)
    # every rank's per-image matrices were gathered: the same bootstrap intervals as one process
    assert m2["ci"] == m1["ci"] and m2["mIoU_ci"] == pytest.approx(m1["mIoU_ci"], abs=1e-4)
    w1, w2 = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-4, rtol=1e-3, msg=k)
    # the logged loss is the global batch's (all-reduced), and training moved it
    rows1 = (one / "metrics.csv").read_text().splitlines()[1:]
    rows2 = (two / "metrics.csv").read_text().splitlines()[1:]
    loss1 = [float(r.split(",")[4]) for r in rows1]
    loss2 = [float(r.split(",")[4]) for r in rows2]
    assert loss1[-1] < loss1[0]
    assert loss2 == pytest.approx(loss1, abs=1e-4)
    # rank 0 alone wrote the folder and printed the result
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert r.stdout.count("run folder:") == 1
    # the same seeds, the same data order: the weights are not merely close by chance (rank 1 trained too)
    assert load_state(two / "last.pt")["state"]["step"] == load_state(one / "last.pt")["state"]["step"] == 12


@pytest.mark.slow
def test_one_process_under_torchrun_joins_the_group(data, tmp_path):
    """torchrun with one process still runs the distributed path (process group, DDP), so a one-GPU machine
    can check NCCL and SyncBN; on the CPU that is gloo, and the run is an ordinary run otherwise."""
    r = subprocess.run(_torchrun(1, "train", "--data", str(data), "--out", str(tmp_path / "one"), "--epochs", "1", *ARGS),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    env = json.loads((tmp_path / "one" / "environment.json").read_text())["sessions"][-1]
    assert env["distributed"] == {"world_size": 1, "backend": "gloo", "nodes": 1}
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["processes"] == 1
    assert "1 processes (gloo)" in r.stdout + r.stderr      # the plan table says so


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"RANK="):
            return int(kv[5:])
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the rank's process in /proc")
@pytest.mark.slow
def test_killed_rank_ends_the_job_with_a_message(data, tmp_path):
    out = tmp_path / "k"
    p = subprocess.Popen(_torchrun(2, "train", "--data", str(data), "--out", str(out), "--epochs", "1000",
                                   "--checkpoint-minutes", "0", *ARGS),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "last.pt").exists() and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert (out / "last.pt").exists(), p.communicate()[1][-3000:]
        rank1 = [c for c in _children(p.pid) if _rank_of(c) == 1]
        assert len(rank1) == 1
        os.kill(rank1[0], signal.SIGKILL)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert "pixelseg: error: rank 0 of 2: another rank stopped" in err, err[-3000:]
    assert "--resume" in err and "[rank0]: Traceback" not in err
    # what rank 0 left is complete: a loadable state and no half-written file
    assert load_state(out / "last.pt")["state"]["step"] >= 1
    assert not list(out.glob(".*.tmp*"))


def test_predict_ranks_split_the_images(data, tmp_path, monkeypatch, capsys):
    """`pixelseg predict` as each of 2 torchrun ranks sees it (RANK/WORLD_SIZE set; prediction needs no
    process group): together they write every image once."""
    from pixelseg import cli
    with tinynet.registered():
        run = pixelseg.train(data, out=str(tmp_path / "run"), epochs=1, model=tinynet.NAME, image_size=(32, 32),
                             batch_size=4, num_workers=0, threads=1, quiet=True)
        images = tmp_path / "imgs"
        images.mkdir()
        rng = np.random.default_rng(0)
        for i in range(5):
            Image.fromarray((rng.random((20 + i, 30, 3)) * 255).astype(np.uint8)).save(images / f"im{i}.png")
        monkeypatch.setenv("WORLD_SIZE", "2")
        counts = []
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            assert cli.main(["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--device", "cpu"]) == 0
            line = capsys.readouterr().out.strip().splitlines()[-1]
            assert line.startswith(f"rank {rank}/2: ")
            counts.append(int(line.split(": ")[1].split()[0]))
    assert sorted(counts) == [2, 3]                                   # split, not duplicated
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [f"im{i}.png" for i in range(5)]
    with Image.open(tmp_path / "pred" / "im4.png") as im:
        assert im.size == (30, 24)


def test_python_dash_m_pixelseg_is_the_cli():
    """torchrun starts `-m pixelseg`; it must be the CLI (exit codes included). Kept to commands that do
    not import torch: the training paths are run under torchrun above."""
    r = subprocess.run([sys.executable, "-m", "pixelseg", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("pixelseg ")
    r = subprocess.run([sys.executable, "-m", "pixelseg", "no-such-command"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_two_processes_learn_from_unlabelled_images(data, tmp_path):
    """--semi on under torchrun: each rank draws its share of the unlabelled stream; the report counts every
    rank's images."""
    root = tmp_path / "semi"
    shutil.copytree(data, root)
    (root / "unlabelled").mkdir()
    for p in sorted((data / "train" / "images").iterdir())[:8]:
        shutil.copyfile(p, root / "unlabelled" / f"u_{p.name}")
    r = subprocess.run(_torchrun(2, "train", "--data", str(root), "--out", str(tmp_path / "two"), "--epochs", "1",
                                 "--semi", "on", "--semi-start", "0.5", "--semi-batch", "4", *ARGS),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "two" / "metrics.json").read_text())
    steps = load_state(tmp_path / "two" / "last.pt")["state"]["step"]     # 16 images, global batch 4: 4 steps
    # the ranks agreed to start at half the run, and each drew 2 of the 4 images a step from then on
    assert m["processes"] == 2 and steps == 4 and m["unlabelled"]["from_step"] == 2
    assert m["unlabelled"]["images_drawn"] == (steps - 2) * 4


@pytest.mark.slow
def test_two_processes_train_the_pretrained_default(data, tmp_path):
    """The default model (FPN on the packaged ImageNet Lite0) under torchrun: every rank starts from the same
    offline weights, and the run records their provenance."""
    from pixelseg.models import pretrained
    r = subprocess.run(_torchrun(2, "train", "--data", str(data), "--out", str(tmp_path / "warm"), "--epochs", "1",
                                 "--batch-size", "4", "--num-workers", "0", "--no-report"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    model = json.loads((tmp_path / "warm" / "model.json").read_text())["model"]
    assert model["encoder"] == "tu-tf_efficientnet_lite0"
    assert model["pretrained"]["sha256"] == pretrained.PACKAGED["tf_efficientnet_lite0"].sha256
    assert json.loads((tmp_path / "warm" / "metrics.json").read_text())["processes"] == 2
