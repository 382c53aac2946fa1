"""Faithfulness of the model zoo to the papers: parameter counts and FLOPs against published numbers,
and the defining mechanism of each classic architecture checked directly (not just "it runs")."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models import MODELS, build_model, count_parameters
from pixelseg.models.profile import gflops, profile

pytestmark = pytest.mark.usefixtures("one_thread")

# name, classes, published parameters, tolerance, source
PUBLISHED_PARAMS = [
    ("fcn8s", 21, 134e6, 0.01, "Long et al., FCN, CVPR 2015, Table 1: FCN-VGG16 134M parameters"),
    ("fcn32s", 21, 134e6, 0.01, "Long et al., FCN, CVPR 2015, Table 1: FCN-VGG16 134M parameters"),
    ("segnet", 11, 29.5e6, 0.01, "Badrinarayanan et al., SegNet, TPAMI 2017, Sec. 4/Table 6: 29.5M parameters"),
    ("fast_scnn", 19, 1.11e6, 0.03, "Poudel et al., Fast-SCNN, BMVC 2019, Sec. 4: 1.11 million parameters"),
    ("segformer", 150, 3.8e6, 0.03, "Xie et al., SegFormer, NeurIPS 2021, Table 1: MiT-B0 3.8M params (ADE20K)"),
    ("lraspp", 21, 3_221_538, 0.0, "torchvision docs, lraspp_mobilenet_v3_large: num_params 3,221,538"),
]

# name, classes, size, published GFLOPs (multiply-accumulates), tolerance, source
PUBLISHED_GFLOPS = [
    ("segformer", 150, 512, 8.4, 0.08, "Xie et al., SegFormer, Table 1: MiT-B0 8.4 GFLOPs at 512x512 (ADE20K)"),
    ("lraspp", 21, 520, 2.09, 0.10, "torchvision docs, lraspp_mobilenet_v3_large: 2.09 GFLOPS at 520x520"),
]


@pytest.mark.parametrize("name,classes,published,tol,source", PUBLISHED_PARAMS, ids=[p[0] for p in PUBLISHED_PARAMS])
def test_parameter_count_matches_publication(name, classes, published, tol, source):
    n = profile(name, classes)["params"]
    assert abs(n - published) <= tol * published + 0.5, f"{name}: {n:,} vs {published:,.0f} ({source})"


@pytest.mark.parametrize("name,classes,size,published,tol,source", PUBLISHED_GFLOPS, ids=[p[0] for p in PUBLISHED_GFLOPS])
def test_gflops_match_publication(name, classes, size, published, tol, source):
    g = profile(name, classes, size=(size, size))["gflops"]
    assert abs(g - published) <= tol * published, f"{name}: {g:.2f} vs {published} GFLOPs ({source})"


def test_gflops_scale_with_pixels():
    # a fully convolutional net: 4x the pixels, ~4x the multiply-accumulates
    model = build_model("fast_scnn", 19)
    small, big = gflops(model, 3, (256, 256)), gflops(model, 3, (512, 512))
    assert 3.8 < big / small < 4.2


# ------------------------------------------------------------------------------------------- SegNet

def test_segnet_unpools_with_the_pooling_indices():
    """Each decoder stage places its values exactly where the matching encoder stage found its maxima."""
    from pixelseg.models.segnet import MaxUnpool2x
    model = build_model("segnet", 3).eval()
    net = model.net
    pooled, unpooled = [], []
    h1 = net.pool.register_forward_hook(lambda m, i, o: pooled.append(o[1]))
    h2 = net.unpool.register_forward_hook(lambda m, i, o: unpooled.append((i[1], o)))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
    h1.remove(), h2.remove()
    assert len(pooled) == len(unpooled) == 5
    for enc_idx, (dec_idx, out) in zip(reversed(pooled), unpooled):
        assert dec_idx is enc_idx                    # the very index tensor of the mirrored encoder stage
        flat = out.flatten(2)
        nonzero = torch.zeros_like(flat, dtype=torch.bool)
        nonzero.scatter_(2, dec_idx.flatten(2), True)
        assert (flat[~nonzero] == 0).all()            # zeros everywhere except the recorded max positions
        assert nonzero.float().mean() <= 0.25 + 1e-6  # one position out of every 2x2 window
    assert isinstance(net.unpool, MaxUnpool2x) and not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 5, 8, 2)])
def test_segnet_unpool_equals_torch_max_unpool(shape):
    from pixelseg.models.segnet import MaxUnpool2x
    x = torch.randn(*shape[:2], shape[2] * 2, shape[3] * 2)
    v, idx = nn.MaxPool2d(2, 2, return_indices=True)(x)
    assert torch.equal(MaxUnpool2x()(v, idx), nn.MaxUnpool2d(2, 2)(v, idx))


# ------------------------------------------------------------------------------------------- FCN

@pytest.mark.slow
def test_fcn8s_fuses_pool4_and_pool3_by_summation():
    model = build_model("fcn8s", 3).eval()
    net = model.net
    seen = {}
    for name in ("upscore2", "score_pool4", "upscore_pool4", "score_pool3"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (i[0], o)))
    torch.nn.init.normal_(net.score_pool4.weight), torch.nn.init.normal_(net.score_pool3.weight)
    with torch.no_grad():
        y = net(torch.randn(1, 3, 64, 96))
    # pool4 (stride 16) and pool3 (stride 8) feed their own 1x1 score layers
    assert seen["score_pool4"][0].shape[1:] == (512, 4, 6)
    assert seen["score_pool3"][0].shape[1:] == (256, 8, 12)
    # the x2-upsampled stride-32 score plus the pool4 score is what the next upsampling receives
    assert torch.allclose(seen["upscore_pool4"][0], seen["upscore2"][1] + seen["score_pool4"][1])
    assert torch.allclose(y, seen["upscore_pool4"][1] + seen["score_pool3"][1])
    assert y.shape[-2:] == (8, 12)                   # stride 8, then fixed bilinear upsampling in the wrapper


def test_fcn_skips_start_at_zero_and_upsampling_is_bilinear():
    from pixelseg.models.blocks import bilinear_kernel
    net = build_model("fcn8s", 3).net
    assert net.score_pool4.weight.abs().sum() == 0 and net.score_pool3.weight.abs().sum() == 0
    assert torch.equal(net.upscore2.weight, bilinear_kernel(3, 4))
    x = torch.rand(1, 3, 5, 7)
    up = net.upscore2(x)
    assert up.shape[-2:] == (10, 14)
    # interior pixels of a bilinear x2 transposed conv reproduce a constant image exactly
    const = net.upscore2(torch.ones(1, 3, 5, 7))
    assert torch.allclose(const[..., 1:-1, 1:-1], torch.ones_like(const[..., 1:-1, 1:-1]))


def test_fcn_variants_differ_only_in_skips():
    with torch.device("meta"):  # structure only: no need to initialise 134M parameters three times
        names = {n: {k for k, _ in build_model(n, 3).net.named_children()} for n in ("fcn32s", "fcn16s", "fcn8s")}
    assert names["fcn16s"] - names["fcn32s"] == {"score_pool4", "upscore2"}
    assert names["fcn8s"] - names["fcn16s"] == {"score_pool3", "upscore_pool4"}


# ------------------------------------------------------------------------------- U-Net, PSPNet, real-time

def test_unet_plain_has_the_papers_23_convolutions_and_concatenates():
    net = build_model("unet_plain", 2).net
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 23                                  # "In total the network has 23 convolutional layers"
    assert [b[0].in_channels for b in net.dec] == [1024, 512, 256, 128]   # concat doubles the up-conv output
    assert net.down[-1][0].out_channels == 1024


def test_pspnet_pyramid_bins_and_dilated_stride_8():
    model = build_model("pspnet", 3, encoder="resnet18").eval()
    net = model.net
    sizes = []
    hooks = [s[0].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in net.ppm.stages]
    feats = []
    hooks.append(net.encoder.register_forward_hook(lambda m, i, o: feats.extend(f.shape[-2:] for f in o)))
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
    for h in hooks:
        h.remove()
    assert sizes == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert feats == [(12, 16), (12, 16)]                     # stages 3 and 4 dilated: output stride 8


@pytest.mark.parametrize("hw", [(8, 8), (7, 13), (5, 3), (37, 2)])
def test_exportable_adaptive_pool_equals_torch(hw):
    from pixelseg.models.blocks import AdaptiveAvgPool2dExportable
    x = torch.randn(2, 4, *hw)
    for b in (1, 2, 3, 6):
        assert torch.allclose(AdaptiveAvgPool2dExportable(b)(x), nn.functional.adaptive_avg_pool2d(x, b), atol=1e-6)


def test_bisenetv2_branches_and_booster_heads():
    model = build_model("bisenetv2", 19).train()
    net = model.net
    x = torch.randn(1, 3, 64, 96)
    assert net.detail(x).shape[-2:] == (8, 12)               # detail branch: 1/8, 128 channels
    _, stages = net._features(x)
    assert [s.shape[1] for s in stages] == [16, 32, 64, 128]  # semantic branch: narrow and deep
    assert [s.shape[-1] for s in stages] == [24, 12, 6, 3]    # 1/4, 1/8, 1/16, 1/32
    assert MODELS.get("bisenetv2").info["aux_weight"] == 1.0 and MODELS.get("pspnet").info["aux_weight"] == 0.4


@pytest.mark.parametrize("name", ["fcn8s", "segnet", "fast_scnn", "bisenetv2", "unet_plain"])
def test_fixed_backbone_models_reject_other_encoders(name):
    with pytest.raises(PixelsegError) as e:
        build_model(name, 3, encoder="resnet34")
    assert "resnet34" in str(e.value) and "--encoder" in str(e.value)


def test_pspnet_takes_timm_encoders_and_rejects_unknown():
    assert count_parameters(build_model("pspnet", 3, encoder="tu-resnet18")) < count_parameters(
        build_model("pspnet", 3))
    with pytest.raises(PixelsegError, match="unknown encoder 'resnet19'"):
        build_model("pspnet", 3, encoder="resnet19")


def test_timm_encoder_mean_std_travel_with_the_model():
    import timm

    from pixelseg.models import model_mean_std
    from pixelseg.models.base import encoder_mean_std
    mean, std = model_mean_std(build_model("unet", 3, encoder="tu-resnet18"), 3)
    assert [round(v, 3) for v in mean] == [123.675, 116.28, 103.53]
    assert [round(v, 3) for v in std] == [58.395, 57.12, 57.375]
    # an encoder pretrained with other statistics (Inception-style 0.5/0.5) carries them along
    enc = timm.create_model("inception_v3", features_only=True, pretrained=False)
    assert encoder_mean_std(enc, 3) == ([127.5] * 3, [127.5] * 3)
    # not RGB: one statistic for every band when R, G and B share it (the inflated stem reads bands alike) ...
    assert encoder_mean_std(enc, 1) == ([127.5], [127.5])
    # ... else pixelseg's channel-count default
    from pixelseg.models import default_mean_std
    assert model_mean_std(build_model("unet", 3, 1, encoder="tu-resnet18"), 1) == default_mean_std(1)


# ------------------------------------------------------------------------------------ `pixelseg models`

@pytest.mark.slow
def test_models_command_filters_and_reports_costs(capsys):
    import json

    from pixelseg.cli import main
    assert main(["models", "real-time", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"fast_scnn", "bisenetv2", "lraspp"} <= names and "fcn8s" not in names
    fast = next(r for r in rows if r["name"] == "fast_scnn")
    assert fast["family"] == "real-time" and fast["onnx"] is True
    assert abs(fast["params"] - profile("fast_scnn", 21)["params"]) == 0
    assert 0.5 < fast["gflops"] < 1.2                         # ~0.84 GMACs at 512x512
    assert next(r for r in rows if r["name"] == "bisenetv2")["aux_heads"] == 4
    assert main(["models", "--family", "unet", "--size", "256", "--classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "unet_plain" in out and "256x256" in out and "fcn8s" not in out


def test_models_command_unknown_name_suggests_close_ones(capsys):
    from pixelseg.cli import main
    assert main(["models", "fnc8s"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelseg: error: no model matches 'fnc8s'") and "did you mean fcn8s" in err
    assert "Traceback" not in err


def test_pspnet_loads_a_local_timm_checkpoint(tmp_path):
    """--encoder-weights FILE for the timm-built models: a plain timm classification checkpoint fits."""
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(3)
    clf = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(path))
    model = build_model("pspnet", 3, encoder="resnet18", encoder_weights=str(path))
    assert torch.equal(model.net.encoder.conv1.weight, clf.conv1.weight)
    assert torch.equal(model.net.encoder.layer4[1].conv2.weight, clf.layer4[1].conv2.weight)
    assert model.encoder_report["loaded"] == model.encoder_report["total"]   # every encoder tensor; fc.* unused
