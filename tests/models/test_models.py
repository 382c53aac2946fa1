"""The model contract, run over every registered model, and encoder weights from local files.

Everything here is CPU-sized (inputs of a few dozen pixels) and never touches the network.
"""
from __future__ import annotations

import socket
import time

import pytest
import torch
from torch import nn

from pixelseg.errors import PixelsegError
from pixelseg.models import MODELS, build_model

NUM_CLASSES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


_BUILT: dict = {}
_HEAVY = {"fcn8s", "fcn16s", "fcn32s"}   # over 100M parameters: seconds just to initialise on a shared CPU


def _model(name: str, in_channels: int = 3) -> nn.Module:
    """One instance per (model, channels) for the whole module: building FCN's 134M parameters takes
    seconds, and every test here puts the model in the mode it needs (and clears gradients) itself."""
    key = (name, in_channels)
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = build_model(name, NUM_CLASSES, in_channels)
    model = _BUILT[key]
    model.zero_grad(set_to_none=True)
    return model


# the FCNs (_HEAVY) take seconds per test on a CPU: their contract runs in the full suite (slow)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY else n
                                  for n in MODELS.names()])
class TestModelContract:
    """Every registered model: any C, any H x W in, N x K x H x W finite logits out; trains at batch size 1;
    auxiliary heads behind one contract; ONNX export with dynamic H/W (or a declared reason it cannot)."""

    @pytest.mark.parametrize("in_channels", [1, 3, 4])
    def test_output_is_logits_at_input_size(self, name, in_channels):
        if in_channels != 3 and name in _HEAVY:
            # other channel counts are plumbing (the first conv): checked by shape on the meta device, where
            # FCN's 134M parameters cost nothing; its numerics are checked at C=3 (here, ONNX, training)
            with torch.device("meta"):
                model = build_model(name, NUM_CLASSES, in_channels).eval()
                y = model(torch.empty(2, in_channels, 37, 53))
            assert y.shape == (2, NUM_CLASSES, 37, 53) and _first_conv(model).weight.shape[1] == in_channels
            return
        model = _model(name, in_channels).eval()
        # odd sizes, not divisible by 32, not square (wide and tall)
        for n, h, w in [(2, 37, 53), (1, 65, 97), (1, 61, 29)]:
            with torch.no_grad():
                y = model(torch.randn(n, in_channels, h, w))
            assert y.shape == (n, NUM_CLASSES, h, w), (h, w)
            assert y.dtype == torch.float32
            assert torch.isfinite(y).all()
        assert _first_conv(model).weight.shape[1] == in_channels

    def test_train_step_at_batch_size_one(self, name):
        torch.manual_seed(0)
        model = _model(name).train()
        x = torch.randn(1, 3, 37, 53)
        target = torch.randint(0, NUM_CLASSES, (1, 37, 53))
        y = model(x)
        assert y.shape == (1, NUM_CLASSES, 37, 53)
        loss = nn.functional.cross_entropy(y, target)
        assert torch.isfinite(loss)
        loss.backward()
        grad = _first_conv(model).weight.grad
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0

    def test_aux_heads_contract(self, name):
        """model(x, with_aux=True) -> (logits, [aux ...]) at input size; as many aux maps as declared;
        the aux heads learn from the aux loss only, and plain inference never runs them."""
        torch.manual_seed(0)
        model = _model(name).train()
        x = torch.randn(1, 3, 37, 53)
        y, aux = model(x, with_aux=True)
        assert y.shape == (1, NUM_CLASSES, 37, 53)
        assert len(aux) == model.aux_heads == MODELS.get(name).info.get("aux_heads", 0)
        assert all(a.shape == (1, NUM_CLASSES, 37, 53) for a in aux)
        if not aux:
            return
        assert MODELS.get(name).info.get("aux_weight", 0) > 0, "an aux head needs its published loss weight"
        aux_params = list(model.net.aux.parameters())
        model(x).sum().backward()                     # the main output alone: no gradient reaches the aux heads
        assert all(p.grad is None for p in aux_params)
        sum(a.sum() for a in aux).backward()
        assert all(p.grad is not None for p in aux_params)
        with torch.no_grad():                          # the main logits are the same with or without aux
            model.eval()
            assert torch.allclose(model(x), model(x, with_aux=True)[0])

    def test_state_dict_has_no_aliased_tensors(self, name):
        """A module registered under two names puts one storage under two keys: safetensors then refuses to
        save the trained weights (FCN's fc6/fc7 did, at the end of a training run). Shared modules show up
        as repeated parameter objects (FCN is checked on the meta device: no 134M parameters to allocate)."""
        if name in _HEAVY:
            with torch.device("meta"):
                model = build_model(name, NUM_CLASSES, 3)
        else:
            model = _model(name)
        tensors = [t for t in model.state_dict(keep_vars=True).values()]
        assert len({id(t) for t in tensors}) == len(tensors), [k for k, t in model.state_dict(keep_vars=True).items()
                                                             if sum(u is t for u in tensors) > 1]

    def test_eval_is_deterministic_and_keeps_positions(self, name):
        # padding and cropping must keep the image where it was: a flipped input gives a different map
        torch.manual_seed(0)
        model = _model(name).eval()
        x = torch.randn(1, 3, 37, 53)
        with torch.no_grad():
            a, b, c = model(x), model(x), model(x.flip(-1))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)

    @pytest.mark.slow
    def test_onnx_export_with_dynamic_height_and_width(self, name, tmp_path):
        """Traced at one odd size, the ONNX graph must match PyTorch at other sizes (wide, tall, multiple of 32)."""
        import warnings

        import onnxruntime as ort

        from pixelseg.deploy.onnx import ExportWrapper
        from pixelseg.models import onnx_support

        ok, why = onnx_support(name)
        if not ok:  # a model may declare it cannot; then the reason must be a sentence the user can act on
            assert len(why) > 20
            return
        if name in ("fcn16s", "fcn32s"):
            # the same FCN class with a subset of fcn8s' layers (exported below): writing two more 540 MB
            # graphs would only re-test the same operators
            from pixelseg.models.fcn import FCN
            sub = {k for k, _ in _model(name).net.named_children()}
            assert isinstance(_model(name).net, FCN) and sub < {k for k, _ in _model("fcn8s").net.named_children()}
            return
        model = _model(name).eval()
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(ExportWrapper(model).eval(), (torch.randn(1, 3, 35, 45),), str(path), dynamo=False,
                              opset_version=17, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for h, w in [(37, 53), (64, 30), (64, 64)]:
            x = torch.randn(1, 3, h, w)
            got = session.run(None, {"image": x.numpy()})[0]
            with torch.no_grad():
                want = model(x).numpy()
            assert got.shape == (1, NUM_CLASSES, h, w)
            assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max()), (h, w)

    @pytest.mark.parametrize("encoder", ["resnet19", "tu-no_such_timm_model"])
    def test_unknown_encoder_is_a_user_error(self, name, encoder):
        with pytest.raises(PixelsegError) as e:
            build_model(name, NUM_CLASSES, 3, encoder=encoder)
        msg = str(e.value)
        assert encoder in msg
        if encoder == "resnet19":  # a near-miss: the message shows what is valid
            assert MODELS.get(name).info["default_encoder"] in msg

    def test_unknown_model_name_suggests_this_one(self, name):
        with pytest.raises(PixelsegError) as e:
            build_model(name + "x", NUM_CLASSES)
        msg = str(e.value)
        assert f"'{name}x'" in msg
        hint, valid = msg.split("valid:")
        assert "did you mean" in hint and name in hint
        assert all(n in valid for n in MODELS.names())


# ---------------------------------------------------------------- encoder weights from a local file

def _randomize(state: dict) -> dict:
    """Fresh random values for every float tensor, so equality after loading proves the load happened."""
    g = torch.Generator().manual_seed(1234)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()) for k, v in state.items()}


def _unet_encoder_state() -> dict:
    import segmentation_models_pytorch as smp
    net = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=2)
    return _randomize(net.encoder.state_dict())


def _lraspp_encoder_state() -> dict:
    from torchvision.models import mobilenet_v3_large
    return _randomize(mobilenet_v3_large().features.state_dict())


_ENCODERS = {
    # model name -> (state of a matching encoder with bare keys, prefix per format, how to reach the encoder, first conv key)
    "unet": (_unet_encoder_state, {"safetensors": "encoder.", "pth": ""}, lambda m: m.net.encoder, "conv1.weight"),
    "lraspp": (_lraspp_encoder_state, {"safetensors": "features.", "pth": "features."},
               lambda m: m.net.backbone, "0.0.weight"),
}


@pytest.fixture(scope="module")
def encoder_states():
    return {name: spec[0]() for name, spec in _ENCODERS.items()}


def _write(path, state: dict) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
@pytest.mark.parametrize("name", sorted(_ENCODERS))
def test_encoder_weights_from_local_file(tmp_path, encoder_states, name, fmt, in_channels):
    _, prefixes, get_encoder, first_conv = _ENCODERS[name]
    bare = encoder_states[name]
    path = tmp_path / f"enc.{fmt}"
    _write(path, {prefixes[fmt] + k: v for k, v in bare.items()})

    model = build_model(name, NUM_CLASSES, in_channels, encoder_weights=str(path))

    got = get_encoder(model).state_dict()
    for k, v in bare.items():
        if k == first_conv and in_channels != 3:
            continue
        assert torch.equal(got[k], v), k
    if in_channels == 1:
        # timm's adapt_input_conv for one channel: the sum of the RGB filters
        assert got[first_conv].shape == (bare[first_conv].shape[0], 1, *bare[first_conv].shape[2:])
        assert torch.allclose(got[first_conv], bare[first_conv].sum(dim=1, keepdim=True))
    report = model.encoder_report
    weights = [k for k in bare if not k.endswith("num_batches_tracked")]     # BatchNorm counters are not counted
    assert report["loaded"] == len(weights) == report["total"]
    assert report["adapted"] == ([first_conv] if in_channels != 3 else [])
    assert report["shape_mismatch"] == [] and report["missing"] == []
    with torch.no_grad():  # still a working model after loading
        assert model.eval()(torch.randn(1, in_channels, 37, 53)).shape == (1, NUM_CLASSES, 37, 53)


def test_encoder_weights_adapted_to_four_channels(tmp_path, encoder_states):
    bare = encoder_states["unet"]
    path = tmp_path / "enc.safetensors"
    _write(path, bare)
    model = build_model("unet", NUM_CLASSES, 4, encoder_weights=str(path))
    w = model.net.encoder.conv1.weight.detach()
    rgb = bare["conv1.weight"]
    assert w.shape == (rgb.shape[0], 4, *rgb.shape[2:])
    # R, G, B kept, the 4th band gets their mean, all rescaled by 3/4 so the response magnitude stays the same
    assert torch.allclose(w, torch.cat([rgb, rgb.mean(1, keepdim=True)], dim=1) * 0.75)


def test_encoder_weights_with_nested_wrappers(tmp_path, encoder_states):
    bare = encoder_states["unet"]
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module.encoder." + k: v for k, v in bare.items()}, "epoch": 3}, path)
    model = build_model("unet", NUM_CLASSES, 3, encoder_weights=str(path))
    assert model.encoder_report["loaded"] == len([k for k in bare if not k.endswith("num_batches_tracked")])
    assert torch.equal(model.net.encoder.conv1.weight.detach(), bare["conv1.weight"])


def test_encoder_weights_for_another_encoder_is_a_user_error(tmp_path, encoder_states):
    path = tmp_path / "mobilenet.safetensors"
    _write(path, {"features." + k: v for k, v in encoder_states["lraspp"].items()})
    with pytest.raises(PixelsegError, match="no tensor matches"):
        build_model("unet", NUM_CLASSES, 3, encoder_weights=str(path))


@pytest.mark.parametrize("name", sorted(_ENCODERS))
def test_encoder_weights_without_matching_tensor(tmp_path, name):
    path = tmp_path / "other.safetensors"
    _write(path, {"head.weight": torch.randn(4, 4), "head.bias": torch.randn(4)})
    with pytest.raises(PixelsegError) as e:
        build_model(name, NUM_CLASSES, 3, encoder_weights=str(path))
    assert str(path) in str(e.value) and "no tensor matches" in str(e.value)


@pytest.mark.parametrize("name", sorted(_ENCODERS))
def test_encoder_weights_file_missing(tmp_path, name):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(PixelsegError) as e:
        build_model(name, NUM_CLASSES, 3, encoder_weights=str(path))
    assert str(path) in str(e.value) and "--encoder-weights" in str(e.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_encoder_weights_file_damaged(tmp_path, suffix):
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(b"\x00\x01 not a weights file" * 10)
    with pytest.raises(PixelsegError) as e:
        build_model("unet", NUM_CLASSES, 3, encoder_weights=str(path))
    assert str(path) in str(e.value)


def test_encoder_weights_file_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(PixelsegError, match="state_dict"):
        build_model("unet", NUM_CLASSES, 3, encoder_weights=str(path))


def test_encoder_weights_pickle_with_code_is_refused(tmp_path, encoder_states, evil_payload):
    payload, marker = evil_payload
    path = tmp_path / "evil.pth"
    state = dict(encoder_states["unet"])
    state["payload"] = payload
    torch.save(state, path)
    with pytest.raises(PixelsegError) as e:
        build_model("unet", NUM_CLASSES, 3, encoder_weights=str(path))
    assert str(path) in str(e.value)
    assert not marker.exists(), "loading the file ran code from the pickle"


@pytest.mark.parametrize("name", sorted(_ENCODERS))
def test_imagenet_weights_offline_is_a_user_error(tmp_path, monkeypatch, name):
    import huggingface_hub.constants as hf_constants

    # no network, and no cache that could hold the weights: the hub fails at once instead of retrying
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (blocked by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    t0 = time.monotonic()
    with pytest.raises(PixelsegError) as e:
        build_model(name, NUM_CLASSES, 3, encoder_weights="imagenet")
    assert "--encoder-weights" in str(e.value)
    assert time.monotonic() - t0 < 10, "the offline failure should be immediate"
