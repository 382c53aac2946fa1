"""Learning from images without masks (engine/semi.py): thresholds, pseudo-labels, the strong view, a run that
uses them and reports it, an exact resume of the unlabelled stream, and the recipe's choices."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.engine.semi import (MAX_THRESHOLD, MIN_THRESHOLD, MOMENTUM, ORACLE_ENV, TEACHER_EMA, Consistency,
                                  class_thresholds, history_fields, initial_state, summary,
                                  truth_totals)
from pixelseg.errors import PixelsegError
from pixelseg.run.checkpoints import load_state
from pixelseg.run.folder import RunFolder

from tests.helpers import tinynet

TINY = dict(model=tinynet.NAME, image_size=(32, 32), num_workers=0, threads=1, lr=0.01, augment="light",
            batch_size=4, quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 labelled training images, 4 val, and 8 images without masks in ROOT/unlabelled."""
    root = tmp_path_factory.mktemp("semi")
    generate(root, n_train=8, n_val=4, size=(32, 32), seed=4)
    pool = tmp_path_factory.mktemp("pool")
    generate(pool, n_train=8, n_val=0, size=(32, 32), seed=9)
    (root / "unlabelled").mkdir()
    for p in (pool / "train" / "images").iterdir():
        shutil.copyfile(p, root / "unlabelled" / f"u_{p.name}")
    return root


@pytest.fixture(autouse=True)
def tinynet_registered():
    with tinynet.registered():
        yield


def test_thresholds_follow_each_class_own_confidence_within_bounds():
    c = Consistency(3, 255)
    sem = initial_state(3)
    assert torch.allclose(c.thresholds(sem, "cpu"), torch.full((3,), MAX_THRESHOLD))     # nothing seen yet
    # after one batch (bias-corrected: the average equals that batch's mean per class)
    sem["conf"], sem["weight"] = [0.01 * 0.99, 0.01 * 0.7, 0.01 * 0.3], [0.01] * 3
    t = c.thresholds(sem, "cpu")
    assert t[0] == pytest.approx(MAX_THRESHOLD) and t[1] == pytest.approx(0.7) and t[2] == pytest.approx(MIN_THRESHOLD)
    # a rare class keeps a bar of its own: the earlier rule (global mean x class share / max share) gave a class
    # with 1.5 % of the pixels a threshold of 0.07 and kept 99.96 % of the pixels
    assert t.min() >= MIN_THRESHOLD


def test_pseudo_labels_keep_confident_pixels_and_ignore_padding():
    c = Consistency(2, 255)
    sem = initial_state(2)

    class Fixed(torch.nn.Module):          # class 1 everywhere: sure (0.98) on the left half, unsure (0.55) right
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
            logits[:, 1, :, :2] = 4.0
            logits[:, 1, :, 2:] = 0.2
            return logits
    pad = torch.zeros(1, 4, 4, dtype=torch.long)
    pad[0, 0, 0] = 255
    y, w = c.pseudo_labels(Fixed(), torch.zeros(1, 3, 4, 4), pad, sem, None)
    assert w is None                                          # hard thresholds: no weights
    assert y[0, 0, 0] == 255                                  # padding: never a label
    # class 1's threshold is its mean confidence over the 15 valid pixels (about 0.75): the sure half passes
    assert (y[0, 1:, :2] == 1).all() and (y[0, :, 2:] == 255).all()
    assert sem["used"] == [0, 7] and sem["seen"] == 15 and sem["images"] == 1
    p_sure, p_unsure = torch.sigmoid(torch.tensor(4.0)), torch.sigmoid(torch.tensor(0.2))
    mean = float((7 * p_sure + 8 * p_unsure) / 15)
    assert c.thresholds(sem, "cpu")[1] == pytest.approx(mean, abs=1e-5)
    assert sem["weight"] == [0.0, pytest.approx(1 - MOMENTUM)]          # class 0 was not given any pixel
    assert c.thresholds(sem, "cpu")[0] == pytest.approx(MAX_THRESHOLD)


def test_the_oracle_learns_the_hidden_truth_and_is_counted_like_the_pseudo_labels(monkeypatch):
    """benchmarks/semi.py's oracle arm: with ORACLE_ENV set, the labels the strong view learns are the hidden truth
    (its ignore pixels and the padding stay ignored), while the teacher's pseudo-labels are still counted; without
    a truth, or without the variable, the pseudo-labels are returned."""
    class Fixed(torch.nn.Module):          # class 1 everywhere, sure of it
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
            logits[:, 1] = 4.0
            return logits
    pad = torch.zeros(1, 4, 4, dtype=torch.long)
    pad[0, 0, 0] = 255
    truth = torch.zeros(1, 4, 4, dtype=torch.long)
    truth[0, 3, :] = 1
    truth[0, 0, 0] = 255                   # the stream marks padding as ignore in the truth as well
    truth[0, 2, 3] = 255                   # an anti-aliased edge
    c = Consistency(2, 255)
    plain = c.pseudo_labels(Fixed(), torch.zeros(1, 3, 4, 4), pad, initial_state(2), None, truth)[0]
    monkeypatch.setenv(ORACLE_ENV, "1")
    sem = initial_state(2)
    oracle = c.pseudo_labels(Fixed(), torch.zeros(1, 3, 4, 4), pad, sem, None, truth)[0]
    assert torch.equal(oracle, truth) and not torch.equal(plain, truth)
    assert (plain[0, 1:] == 1).all()                          # the teacher's own labels: class 1 everywhere
    right, kept, known = truth_totals(sem)
    assert (right, known) == (4, 14) and kept == 14           # what the teacher got right, counted all the same
    no_truth = c.pseudo_labels(Fixed(), torch.zeros(1, 3, 4, 4), pad, initial_state(2), None)[0]
    assert torch.equal(no_truth, plain)


def test_soft_pseudo_labels_weigh_the_pixels_under_their_threshold_by_how_far_under():
    """--semi-soft (SoftMatch): every pixel but padding keeps the teacher's label; at or above its class's threshold
    with weight 1, under it with exp(-(conf - threshold)^2 / (2 var)), var the class's confidence spread; the loss
    is the weighted mean."""
    c = Consistency(2, 255, soft=True)
    sem = initial_state(2)

    class Levels(torch.nn.Module):         # class 1 everywhere: sure on columns 0-1, less on 2, least on 3
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
            logits[:, 1, :, :2], logits[:, 1, :, 2], logits[:, 1, :, 3] = 4.0, 0.6, 0.1
            return logits
    pad = torch.zeros(1, 4, 4, dtype=torch.long)
    pad[0, 0, 0] = 255
    y, w = c.pseudo_labels(Levels(), torch.zeros(1, 3, 4, 4), pad, sem, None)
    assert y[0, 0, 0] == 255 and w[0, 0, 0] == 0                      # padding: no label, no weight
    assert (y.flatten()[1:] == 1).all()                               # every other pixel keeps its label
    conf = torch.softmax(Levels()(torch.zeros(1, 3, 4, 4)), 1).max(1).values.flatten()[1:].double().numpy()
    tau = float(np.clip(conf.mean(), MIN_THRESHOLD, MAX_THRESHOLD))  # one batch: the averages are its own
    want = np.where(conf >= tau, 1.0, np.exp(-(conf - tau) ** 2 / (2 * conf.var())))
    assert np.allclose(w.flatten()[1:].numpy(), want, atol=1e-5)
    assert w[0, 1, 0] == 1 and 0 < w[0, 1, 3] < w[0, 1, 2] < 1       # the further under, the less it teaches
    assert sem["used"] == [0, 7]                                      # the report still counts the sure ones
    logits = torch.randn(1, 2, 4, 4)
    ce = torch.nn.functional.cross_entropy(logits, torch.where(y == 255, 0, y), reduction="none")
    assert c.loss(logits, y, w) == pytest.approx(float((ce * w).sum() / w.sum()), rel=1e-5)
    hard = Consistency(2, 255)
    y_hard, none = hard.pseudo_labels(Levels(), torch.zeros(1, 3, 4, 4), pad, initial_state(2), None)
    assert none is None and (y_hard == 255).sum() > 1                 # without it, pixels under are ignored


def test_the_teacher_is_an_average_of_the_students_weights_in_eval_mode():
    """A run that learns from unlabelled images keeps an EMA of the weights (the recipe sets train.ema), and the
    pseudo-labels come from it in eval mode, not from the student."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from pixelseg.engine.setup import Trainee
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    ema = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(TEACHER_EMA), use_buffers=True)
    ema.update_parameters(student)                       # the first update copies the student
    with torch.no_grad():
        student[0].weight.add_(1.0)
    ema.update_parameters(student)
    w_avg = ema.module[0].weight
    assert torch.allclose(w_avg, student[0].weight - 1.0 * TEACHER_EMA, atol=1e-6)
    t = Trainee(student, student, student, None, None, ema, None, None)
    x = torch.randn(2, 3, 4, 4)
    ema.module.eval()
    want = ema.module(x)
    ema.module.train()
    assert torch.allclose(t.teacher(x), want) and ema.module.training       # eval for the call, mode restored
    assert not torch.allclose(t.teacher(x), student(x))
    assert torch.equal(Trainee(student, student, student, None, None, None, None, None).teacher(x), student(x))


def test_strong_view_moves_labels_with_pixels_and_repeats_for_a_seed():
    c = Consistency(3, 255)
    x = torch.stack([torch.full((3, 16, 16), float(i)) for i in range(3)])
    y = torch.stack([torch.full((16, 16), i, dtype=torch.long) for i in range(3)])
    w = torch.stack([torch.full((16, 16), 0.1 * (i + 1)) for i in range(3)])
    xs, ys, ws = c.strong(x, y, seed=5, weights=w)
    xs2, ys2, none = c.strong(x, y, seed=5)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2) and none is None
    assert torch.allclose(ws, 0.1 * (ys + 1).float())        # each pixel's weight travels with its label
    assert not torch.equal(c.strong(x, y, seed=6)[1], ys)
    for i in range(3):
        j = (i + 1) % 3
        box = ys[i] == j                                     # the CutMix box holds the next image's labels
        assert 0.05 < box.float().mean() < 0.3
        assert (ys[i][~box] == i).all()


@pytest.mark.parametrize("soft", [False, True])
def test_a_run_learns_from_unlabelled_images_reports_them_and_resumes_exactly(data, tmp_path, soft):
    full = pixelseg.train(data, out=str(tmp_path / "full"), epochs=2, semi="on", semi_start=0, semi_batch=4,
                          semi_soft=soft, **TINY)
    m = json.loads((full / "metrics.json").read_text())
    steps = load_state(full / "last.pt")["state"]["step"]
    unl = m["unlabelled"]
    assert unl["images_drawn"] == steps * 4 and 0 < unl["used_share"] <= 1
    assert set(unl["thresholds"]) == set(m["per_class"])
    recipe = json.loads((full / "recipe.json").read_text())
    assert any(c["key"] == "data.unlabelled" for c in recipe["chosen"])
    chosen = {c["key"]: c["value"] for c in recipe["chosen"]}
    assert chosen["train.ema"] == TEACHER_EMA            # the teacher: an average of the weights
    # stopped by a signal mid-way (the unlabelled stream mid-epoch too) and resumed == never stopped
    def signal_at_step_3(state):
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        pixelseg.train(data, out=str(tmp_path / "half"), epochs=2, semi="on", semi_start=0, semi_batch=4,
                       semi_soft=soft, on_step=signal_at_step_3, **TINY)
    mid = load_state(tmp_path / "half" / "last.pt")["state"]
    assert mid["step"] == 3 and mid["semi"]["epoch"] == 1 and mid["semi"]["offset"] == 4
    half = pixelseg.train(out=str(tmp_path / "half"), resume=True, quiet=True)
    a, b = load_state(full / "last.pt"), load_state(half / "last.pt")
    assert a["state"]["semi"] == b["state"]["semi"]
    assert ("conf2" in a["state"]["semi"]) == soft           # the spread behind the soft weights resumes too
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    # and it is not a no-op: without the unlabelled images the weights end elsewhere
    sup = pixelseg.train(data, out=str(tmp_path / "sup"), epochs=2, semi="off", **TINY)
    c = load_state(sup / "last.pt")
    assert c["state"]["semi"] is None
    assert any(not torch.allclose(c["model"][k], v, atol=1e-4) for k, v in a["model"].items())


def test_unlabelled_images_join_at_semi_start_with_their_own_batch_and_resume_exactly(data, tmp_path):
    # 8 images, batch 4: 2 steps an epoch, 6 in 3 epochs; the unlabelled ones join at half the run (step 3)
    knobs = dict(epochs=3, semi="on", semi_start=0.5, semi_batch=2, **TINY)
    full = pixelseg.train(data, out=str(tmp_path / "full"), **knobs)
    unl = json.loads((full / "metrics.json").read_text())["unlabelled"]
    assert unl["from_step"] == 3 and unl["images_drawn"] == (6 - 3) * 2
    assert unl["pixels_seen"] == unl["images_drawn"] * 32 * 32
    # stopped before they joined, and resumed: the same start, the same stream, the same weights
    def signal_at_step_2(state):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        pixelseg.train(data, out=str(tmp_path / "half"), on_step=signal_at_step_2, **knobs)
    mid = load_state(tmp_path / "half" / "last.pt")["state"]["semi"]
    assert mid["images"] == 0 and mid.get("start_step") is None
    half = pixelseg.train(out=str(tmp_path / "half"), resume=True, quiet=True)
    a, b = load_state(full / "last.pt"), load_state(half / "last.pt")
    assert a["state"]["semi"] == b["state"]["semi"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    # the batch the recipe checks against is the unlabelled one
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((data / "unlabelled").iterdir())[:3]:
        shutil.copyfile(p, few / p.name)
    pixelseg.train(data, out=str(tmp_path / "few3"), unlabelled=str(few), **{**knobs, "epochs": 1, "semi_start": 0})
    with pytest.raises(PixelsegError, match=r"fewer than one batch \(4\)"):
        pixelseg.train(data, out=str(tmp_path / "few4"), unlabelled=str(few), **{**knobs, "semi_batch": 4})


def test_pseudo_labels_measured_against_a_hidden_truth_over_time_leave_training_unchanged(data, tmp_path,
                                                                                           monkeypatch):
    pool = tmp_path / "pool"
    generate(pool, n_train=8, n_val=0, size=(32, 32), seed=9)        # the unlabelled images' own masks
    truth = tmp_path / "truth"
    truth.mkdir()
    for p in (pool / "train" / "masks").iterdir():
        shutil.copyfile(p, truth / f"u_{p.name}")
    knobs = dict(epochs=3, semi="on", **TINY)
    plain = pixelseg.train(data, out=str(tmp_path / "plain"), **knobs)
    monkeypatch.setenv("PIXELSEG_SEMI_TRUTH", str(truth))
    measured = pixelseg.train(data, out=str(tmp_path / "measured"), report=True, **knobs)
    a, b = load_state(plain / "last.pt"), load_state(measured / "last.pt")
    for k, v in a["model"].items():                                  # measuring changed nothing
        assert torch.equal(v, b["model"][k]), k
    rows = RunFolder(measured).history()       # 6 steps, the unlabelled images join at step 3 (40 %)
    assert len(rows) == 3 and not rows[0].get("pseudo_accuracy") and not rows[0].get("unlabelled_used")
    assert all(0 <= float(r["pseudo_accuracy"]) <= 1 and 0 < float(r["unlabelled_used"]) <= 1 for r in rows[1:])
    unl = json.loads((measured / "metrics.json").read_text())["unlabelled"]
    used = unl["used_share"]
    # every pixel has a truth here, so the coverage of the known pixels is the share used
    assert unl["pseudo_coverage"] == pytest.approx(used, abs=1e-3) and 0 <= unl["pseudo_accuracy"] <= 1
    html = (measured / "report" / "report.html").read_text()     # the report says when they joined, and how right
    assert f"drawn from step {unl['from_step']}," in html and "right against the hidden masks" in html
    by = unl["pseudo_by_class"]                                 # per class too: the dominant class cannot hide the rest
    assert set(by) == {"background", "circle", "triangle", "rectangle", "star", "cross"}
    assert "mean over classes: precision" in html
    assert all(v["recall"] is None or 0 <= v["recall"] <= 1 for v in by.values())
    # the counts by hand: a sure teacher's labels are all right against its own truth, all wrong against another
    c = Consistency(2, 255)
    sem = initial_state(2)
    y = torch.randint(0, 2, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    teacher = lambda x: torch.nn.functional.one_hot(y, 2).permute(0, 3, 1, 2).float() * 20   # noqa: E731
    c.pseudo_labels(teacher, torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), sem, None, y)
    assert truth_totals(sem) == (128, 128, 128)
    c.pseudo_labels(teacher, torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), sem, None, 1 - y)
    assert truth_totals(sem) == (128, 256, 256)
    ones = int(y.sum())                 # class 1 is given `ones` times by each call, right only in the first
    assert sem["truth_by_class"] == [[128 - ones, ones], [2 * (128 - ones), 2 * ones], [128, 128]]
    got = summary(sem, ["a", "b"])
    assert got["pseudo_by_class"]["b"] == {"precision": 0.5, "recall": round(ones / 128, 4)}
    assert got["pseudo_class_precision"] == 0.5 and got["pseudo_accuracy"] == 0.5 and got["pseudo_coverage"] == 1.0
    # a state saved before the counts were kept by class still reports its totals
    old = {k: v for k, v in sem.items() if k != "truth_by_class"} | {"truth_right": 3, "truth_kept": 4,
                                                                     "truth_known": 8}
    assert truth_totals(old) == (3, 4, 8) and summary(old, ["a", "b"])["pseudo_accuracy"] == 0.75
    # ... and, resumed, goes on from them: the history windows never see the totals fall back
    history_fields(old)
    c.pseudo_labels(teacher, torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), old, None, y)
    assert truth_totals(old) == (3 + 128, 4 + 128, 8 + 128) and "truth_right" not in old
    assert history_fields(old)["pseudo_accuracy"] == 1.0


def test_a_state_saved_before_the_start_was_recorded_goes_on_learning_from_unlabelled_images():
    from pixelseg.engine.schedule import Schedule
    from pixelseg.engine.state import State
    from pixelseg.engine.trainer import _semi_started
    from pixelseg.engine.distributed import Dist
    state = State()
    state.semi = initial_state(2)
    sched = Schedule(0.01, "poly", 10, float("inf"), 0)
    tc = type("TC", (), {"semi_start": 0.5})()
    d = Dist()
    assert not _semi_started(state, sched, tc, d)          # fresh, at progress 0 < 0.5
    state.semi["images"] = 8                               # an old state that had drawn images already
    assert _semi_started(state, sched, tc, d) and state.semi["start_step"] == 0
    state2 = State()
    state2.semi, state2.updates = initial_state(2), 5
    assert _semi_started(state2, sched, tc, d) and state2.semi["start_step"] == state2.step


def test_recipe_finds_the_folder_and_says_why_it_is_not_used_by_default(data, tmp_path):
    run = pixelseg.train(data, out=str(tmp_path / "auto"), epochs=1, **TINY)
    chosen = {c["key"]: (c["value"], c["why"]) for c in json.loads((run / "recipe.json").read_text())["chosen"]}
    assert chosen["data.unlabelled"][0].endswith("unlabelled")
    assert chosen["train.semi"][0] == "off" and "--semi on" in chosen["train.semi"][1]
    assert "unlabelled" not in json.loads((run / "metrics.json").read_text())


def test_auto_learns_from_the_folder_on_a_cpu_budget_where_it_was_measured_to_pay(data, tmp_path):
    from pixelseg.config import from_dict
    from pixelseg.data.formats import open_dataset
    from pixelseg.engine.recipe import SEMI_MIN_MINUTES_CPU, SEMI_MIN_RATIO, Hardware, resolve
    many = tmp_path / "many"            # the same 8 labelled images, SEMI_MIN_RATIO times as many without masks
    shutil.copytree(data, many)
    images = sorted((many / "unlabelled").iterdir())
    for k in range(1, int(SEMI_MIN_RATIO)):
        for p in images:
            shutil.copyfile(p, p.with_name(f"c{k}_{p.name}"))
    assert len(list((many / "unlabelled").iterdir())) == SEMI_MIN_RATIO * 8
    cpu, gpu = Hardware("cpu", "2-core CPU", 2), Hardware("cuda:0", "Some GPU", 16, 80.0)

    def chosen(minutes, hw, root=many, **more):
        cfg, ch = resolve(from_dict({}, {"data.root": str(root), "train.out": "x", "train.max_minutes": minutes,
                                         **more}), open_dataset(root), hw)
        return cfg, {k: (v, why) for k, v, why in ch}
    cfg, ch = chosen(SEMI_MIN_MINUTES_CPU, cpu)
    assert cfg.train.semi == "on" and "points" in ch["train.semi"][1]       # it says what it was measured to give
    assert cfg.train.semi_start == 0.4 and cfg.train.semi_batch == max(2, cfg.train.batch_size // 2)
    assert cfg.train.ema == TEACHER_EMA
    short, ch = chosen(SEMI_MIN_MINUTES_CPU / 2, cpu)
    assert short.train.semi == "off" and "--semi on" in ch["train.semi"][1] and short.train.semi_start is None
    on_gpu, ch = chosen(SEMI_MIN_MINUTES_CPU, gpu)
    assert on_gpu.train.semi == "off" and "GPU" in ch["train.semi"][1]
    crops, ch = chosen(SEMI_MIN_MINUTES_CPU, cpu, **{"data.scale": 1.0, "data.crop": [16, 16]})    # big images
    assert crops.data.scale == 1.0 and crops.train.semi == "off" and "crops" in ch["train.semi"][1]
    assert "--semi on" in ch["train.semi"][1] and crops.train.semi_start is None
    few, ch = chosen(SEMI_MIN_MINUTES_CPU, cpu, root=data)      # 8 labelled, 8 without masks: 1 per labelled image
    assert few.train.semi == "off" and few.train.semi_start is None and few.train.ema is None
    assert "1.0 per labelled image (8), fewer than 8" in ch["train.semi"][1] and "--semi on" in ch["train.semi"][1]
    asked, _ = chosen(SEMI_MIN_MINUTES_CPU, cpu, root=data, **{"train.semi": "on"})     # asked for: used anyway
    assert asked.train.semi == "on"


def test_bad_unlabelled_folders_are_one_line_errors(data, tmp_path):
    lonely = tmp_path / "labelled"
    shutil.copytree(data, lonely, ignore=shutil.ignore_patterns("unlabelled"))
    with pytest.raises(PixelsegError, match="there are no unlabelled images"):
        pixelseg.train(lonely, out=str(tmp_path / "a"), epochs=1, semi="on", **TINY)
    with pytest.raises(PixelsegError, match="not found"):
        pixelseg.train(lonely, out=str(tmp_path / "b"), epochs=1, unlabelled=str(tmp_path / "nope"), **TINY)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PixelsegError, match=f"--unlabelled {empty}"):
        pixelseg.train(lonely, out=str(tmp_path / "c"), epochs=1, unlabelled=str(empty), semi="on", **TINY)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((data / "unlabelled").iterdir())[:1]:
        shutil.copyfile(p, few / p.name)
    with pytest.raises(PixelsegError, match=r"fewer than one batch \(2\)"):     # half the labelled batch of 4
        pixelseg.train(lonely, out=str(tmp_path / "d"), epochs=1, unlabelled=str(few), semi="on", **TINY)


def test_semi_with_crops_at_a_scale(tmp_path):
    root = tmp_path / "big"
    generate(root, n_train=2, n_val=1, size=(96, 96), seed=2)
    (root / "unlabelled").mkdir()
    for p in (root / "train" / "images").iterdir():
        Image.fromarray(np.asarray(Image.open(p))[::-1].copy()).save(root / "unlabelled" / f"u_{p.name}")
        Image.fromarray(np.asarray(Image.open(p))[:, ::-1].copy()).save(root / "unlabelled" / f"v_{p.name}")
    run = pixelseg.train(root, out=str(tmp_path / "run"), epochs=1, scale=1.0, crop=(32, 32), semi="on",
                         **{**TINY, "image_size": None})
    unl = json.loads((run / "metrics.json").read_text())["unlabelled"]
    assert unl["images_drawn"] > 0 and unl["pixels_seen"] <= unl["images_drawn"] * 32 * 32
    # the recipe's defaults when semi is on: the labelled images alone for 40 % of the run, half their batch after
    chosen = {c["key"]: c["value"] for c in json.loads((run / "recipe.json").read_text())["chosen"]}
    assert chosen["train.semi_start"] == 0.4 and chosen["train.semi_batch"] == 2
    steps = load_state(run / "last.pt")["state"]["step"]
    assert 0 < unl["from_step"] < steps and unl["images_drawn"] == (steps - unl["from_step"]) * 2


def test_summary_is_none_without_unlabelled_pixels():
    assert summary(None, ["a"]) is None and summary(initial_state(2), ["a", "b"]) is None


def test_unlabelled_folders_whose_images_have_masks_are_refused_before_training(data, tmp_path):
    """Issue 27: a split of the dataset itself, a labelled split or dataset, masks named after images beside them
    (the flat-pairs rule) or label maps given as images without masks: one line naming the folder or file and the
    fix, before a step is taken."""
    import re
    masks = sorted((data / "train" / "masks").iterdir())
    pairs = shutil.copytree(data / "unlabelled", tmp_path / "pairs")
    first = sorted(pairs.iterdir())[0]
    shutil.copyfile(masks[0], pairs / f"{first.stem}_mask.png")
    maps = tmp_path / "maps"
    maps.mkdir()
    for p in masks:                                  # label maps under names that say nothing
        shutil.copyfile(p, maps / f"map_{p.name}")
    cases = [(data / "train", "is a labelled split or dataset .*--data"),
             (data, "is a labelled split or dataset"),
             (data / "train" / "images", "dataset's train images: they have masks"),
             (data / "val" / "images", "dataset's val images: they are what the run is measured on"),
             (data / "train" / "masks", "dataset's train masks: those are label maps"),
             (pairs, re.escape(f"{pairs / first.stem}_mask.png is named as the mask of {first.stem}")),
             (maps, re.escape(f"{maps / ('map_' + masks[0].name)} is a label map"))]
    for k, (folder, message) in enumerate(cases):
        out = tmp_path / f"r{k}"
        with pytest.raises(PixelsegError, match=f"^--unlabelled {re.escape(str(folder))}: .*{message}.*"
                                                "give a folder of images without masks"):
            pixelseg.train(data, out=str(out), epochs=1, unlabelled=str(folder), semi="on", **TINY)
        assert not (out / "last.pt").exists()
    # given, though not learned from (--semi off): still judged, since the run records it
    with pytest.raises(PixelsegError, match="dataset's train masks"):
        pixelseg.train(data, out=str(tmp_path / "off"), epochs=1, unlabelled=str(data / "train" / "masks"),
                       semi="off", **TINY)


def test_unlabelled_grayscale_photos_and_look_alike_scans_are_no_false_alarm(data, tmp_path):
    """The label-map test is about values, not channels: grayscale photos pass; and single-channel images with
    few values pass where the labelled images look the same (binary scans)."""
    gray = tmp_path / "gray"
    gray.mkdir()
    for k in range(8):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (32, 32), dtype=np.uint8)).save(gray / f"g{k}.png")
    run = pixelseg.train(data, out=str(tmp_path / "gray-run"), epochs=1, unlabelled=str(gray), semi="on", **TINY)
    assert json.loads((run / "metrics.json").read_text())["unlabelled"]["images_drawn"] > 0
    scans = tmp_path / "scans"
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("val", 2), ("pool", 8)):
        for k in range(n):
            page = (np.kron(rng.integers(0, 2, (4, 4)), np.ones((8, 8))) * 255).astype(np.uint8)
            folder = scans / "unlabelled" if split == "pool" else scans / split / "images"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(page).convert("1").save(folder / f"{split}{k}.png")
            if split != "pool":
                (scans / split / "masks").mkdir(parents=True, exist_ok=True)
                Image.fromarray((page > 0).astype(np.uint8)).save(scans / split / "masks" / f"{split}{k}.png")
    (scans / "classes.json").write_text(json.dumps({"names": ["ink", "paper"]}))
    pixelseg.train(scans, out=str(tmp_path / "scan-run"), epochs=1, semi="on", **TINY)


def test_a_state_saved_under_the_earlier_threshold_rule_resumes_with_fresh_averages():
    """A run saved before the per-class averages (FreeMatch's tau and p in State.semi) resumes: the averages start
    afresh, the counts are kept."""
    old = {"epoch": 2, "offset": 8, "tau": 0.4, "p": [0.9, 0.1], "used": [5, 3], "seen": 20, "images": 4}
    assert torch.allclose(class_thresholds(old), torch.full((2,), MAX_THRESHOLD))
    assert "tau" not in old and old["conf"] == [0.0, 0.0] and old["used"] == [5, 3] and old["offset"] == 8
