"""Fine-tuning (--init-from), distillation (--teacher) and auxiliary heads: the training objective's
extra terms and the weight transfer, each checked for what it must do, plus one tiny end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import pixelseg
from pixelseg.config import from_dict
from pixelseg.data.tools.synth import generate
from pixelseg.engine.distill import kd_loss
from pixelseg.engine.finetune import init_from
from pixelseg.engine.objective import build_objective
from pixelseg.errors import PixelsegError
from pixelseg.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ distillation loss

def test_kd_loss_is_zero_for_identical_outputs_and_positive_otherwise():
    torch.manual_seed(0)
    t = torch.randn(2, 4, 5, 6)
    assert kd_loss(t.clone(), t).abs() < 1e-6
    assert kd_loss(torch.randn(2, 4, 5, 6), t) > 0.01


def test_kd_loss_matches_torch_kl_div_and_scales_with_temperature():
    torch.manual_seed(1)
    s, t = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    for temp in (1.0, 4.0):
        ref = torch.nn.functional.kl_div(torch.log_softmax(s / temp, 1), torch.log_softmax(t / temp, 1),
                                         log_target=True, reduction="none").sum(1).mean() * temp ** 2
        assert torch.allclose(kd_loss(s, t, temperature=temp), ref, atol=1e-6)


def test_kd_loss_leaves_out_ignored_pixels():
    torch.manual_seed(2)
    s, t = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    s_far = s.clone()
    s_far[..., 0, 0] += torch.tensor([50.0, -50.0, 0.0])       # a wild student at the ignored pixel only
    target = torch.tensor([[[255, 1], [0, 2]]])
    assert torch.allclose(kd_loss(s, t, target), kd_loss(s_far, t, target))
    assert not torch.allclose(kd_loss(s, t), kd_loss(s_far, t))


def test_kd_gradient_pulls_the_student_towards_the_teacher():
    t = torch.tensor([[[[3.0]], [[0.0]], [[0.0]]]])
    s = torch.zeros(1, 3, 1, 1, requires_grad=True)
    kd_loss(s, t).backward()
    assert s.grad[0, 0, 0, 0] < 0 < s.grad[0, 1, 0, 0]          # raise the teacher's class, lower the others


# ------------------------------------------------------------------------------------ auxiliary heads

def _cfg(**model):
    return from_dict({"model": {"name": "bisenetv2", **model}, "data": {"in_channels": 3}})


def test_objective_adds_weighted_aux_losses():
    torch.manual_seed(0)
    model = build_model("bisenetv2", 3).train()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    obj = build_objective(_cfg(), model, ce, 3, 255, None, None, "cpu")
    assert obj.aux_weight == 1.0                                 # BiSeNetV2's published booster weight
    torch.manual_seed(5)
    loss = obj(model, x, y)
    torch.manual_seed(5)                                         # same dropout masks
    logits, aux = model(x, with_aux=True)
    assert torch.allclose(loss, ce(logits, y) + sum(ce(a, y) for a in aux))
    off = build_objective(_cfg(aux_weight=0), model, ce, 3, 255, None, None, "cpu")
    assert off.aux_weight == 0
    torch.manual_seed(5)
    assert torch.allclose(off(model, x, y), ce(model(x), y))


def test_aux_weight_for_a_model_without_aux_heads_is_a_user_error():
    model = build_model("fast_scnn", 3)
    with pytest.raises(PixelsegError, match="fast_scnn defines no auxiliary heads"):
        build_objective(from_dict({"model": {"name": "fast_scnn", "aux_weight": 0.4}}), model,
                        torch.nn.CrossEntropyLoss(), 3, 255, None, None, "cpu")


# ------------------------------------------------------------------------------------ fine-tuning

def test_init_from_a_weights_file_with_another_class_count(tmp_path):
    torch.manual_seed(0)
    source = build_model("fast_scnn", 5)
    path = tmp_path / "w.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in source.state_dict().items()}, str(path))  # DDP-style keys
    torch.manual_seed(1)
    target = build_model("fast_scnn", 3)
    head_before = target.net.classifier[-1].weight.detach().clone()
    report = init_from(target, path)
    src, got = source.state_dict(), target.state_dict()
    assert sorted(report.reinitialised) == ["net.classifier.3.bias", "net.classifier.3.weight"]
    assert len(report.loaded) == len(got) - 2 and not report.missing and not report.adapted
    for k in report.loaded:
        assert torch.equal(got[k], src[k]), k
    assert torch.equal(target.net.classifier[-1].weight, head_before)   # the head keeps its fresh init
    text = report.summary(len(got))
    assert f"{len(got) - 2}/{len(got)} tensors loaded" in text and "net.classifier.3" in text


def test_init_from_adapts_input_convs_to_another_channel_count(tmp_path):
    source = build_model("bisenetv2", 3)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    target = build_model("bisenetv2", 3, in_channels=1)
    report = init_from(target, path)
    # BiSeNetV2 reads the image twice: the detail branch and the stem of the semantic branch
    assert sorted(report.adapted) == ["net.detail.0.0.weight", "net.stem.conv.0.weight"]
    w = target.net.detail[0][0].weight
    assert torch.allclose(w, source.net.detail[0][0].weight.sum(1, keepdim=True))


def test_init_from_bad_sources_are_user_errors(tmp_path):
    model = build_model("fast_scnn", 3)
    with pytest.raises(PixelsegError, match="not found"):
        init_from(model, tmp_path / "nope.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(PixelsegError, match="no tensor matches"):
        init_from(model, other)
    (tmp_path / "dir").mkdir()
    with pytest.raises(PixelsegError, match="not a pixelseg run folder"):
        init_from(model, tmp_path / "dir")


# ------------------------------------------------------------------------------------ end to end

TINY = {"image_size": (64, 64), "batch_size": 4, "num_workers": 0, "threads": 2, "epochs": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=8, n_val=4, size=(64, 64), seed=4)
    return root


@pytest.fixture(scope="module")
def teacher_run(data, tmp_path_factory) -> Path:
    return pixelseg.train(data, "fast_scnn", out=str(tmp_path_factory.mktemp("r") / "teacher"), quiet=True, **TINY)


def test_finetune_run_on_data_with_more_classes(teacher_run, data, tmp_path, capsys):
    # the same images, two more (unused) classes: a dataset with another class count
    more = tmp_path / "more"
    import shutil
    shutil.copytree(data, more)
    classes = json.loads((more / "classes.json").read_text())
    classes["names"] += ["extra1", "extra2"]
    classes["colors"] += [[1, 2, 3], [4, 5, 6]]
    (more / "classes.json").write_text(json.dumps(classes))
    run = pixelseg.train(more, out=str(tmp_path / "ft"), init_from=str(teacher_run), **TINY)
    err = capsys.readouterr().err
    assert f"init from {teacher_run}" in err and "re-initialised" in err and "net.classifier.3" in err
    assert json.loads((run / "model.json").read_text())["model"]["name"] == "fast_scnn"   # adopted from the run
    assert json.loads((run / "model.json").read_text())["model"]["num_classes"] == 8


def test_distill_run_records_its_teacher(teacher_run, data, tmp_path, capsys):
    run = pixelseg.train(data, "fast_scnn", out=str(tmp_path / "kd"), teacher=str(teacher_run),
                         distill_temperature=2.0, **TINY)
    assert "distilling from fast_scnn (pixel-wise KL, T=2" in capsys.readouterr().err
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["teacher"] == str(teacher_run) and cfg["model"]["distill_temperature"] == 2.0
    assert (run / "model.safetensors").is_file()


def test_teacher_with_another_class_table_is_refused(teacher_run, tmp_path):
    from pixelseg.engine.distill import Teacher
    with pytest.raises(PixelsegError, match="the teacher predicts 6 classes, this dataset has 4"):
        Teacher(teacher_run, 4, 3, [0.0] * 3, [1.0] * 3, "cpu")


def test_teacher_renormalizes_the_students_input(teacher_run):
    """A student normalized differently must feed the teacher the same raw image."""
    from pixelseg.engine.distill import Teacher
    from pixelseg.run.folder import RunFolder
    info = RunFolder(teacher_run).info()
    t_mean, t_std = torch.tensor(info.preprocessing.mean).view(1, 3, 1, 1), torch.tensor(info.preprocessing.std).view(1, 3, 1, 1)
    mean, std = [127.5] * 3, [127.5] * 3
    teacher = Teacher(teacher_run, 6, 3, mean, std, "cpu")
    raw = torch.rand(1, 3, 64, 64) * 255                        # the teacher's training size
    student_x = (raw - 127.5) / 127.5
    with torch.no_grad():
        want = info.load_model()((raw - t_mean) / t_std)
    assert torch.allclose(teacher(student_x), want, atol=1e-4)
    teacher.train()
    assert not teacher.model.training                           # the trainer's .train() never unfreezes it


def test_teacher_sees_its_own_training_size(teacher_run):
    """A student at another size: the teacher runs at the size it was trained at (64x64 here) and its
    logits come back on the student's grid."""
    import torch.nn.functional as F

    from pixelseg.engine.distill import Teacher
    from pixelseg.run.folder import RunFolder
    info = RunFolder(teacher_run).info()
    assert tuple(info.preprocessing.image_size) == (64, 64)
    teacher = Teacher(teacher_run, 6, 3, info.preprocessing.mean, info.preprocessing.std, "cpu")
    x = torch.randn(2, 3, 40, 48)
    with torch.no_grad():
        up = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        want = F.interpolate(info.load_model()(up), size=(40, 48), mode="bilinear", align_corners=False)
        direct = info.load_model()(x)
    got = teacher(x)
    assert got.shape == (2, 6, 40, 48)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, direct, atol=1e-3)         # not simply the model at the student's size
