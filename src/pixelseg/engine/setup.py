"""What the loop needs, built before step 1: names checked, the data checked and loaded, the model, its
optimizer and objective, the run folder's first files. Plain functions, called in order by trainer.train."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from pixelseg.config import Config
from pixelseg.data.tools.checks import all_ignore, require_clean
from pixelseg.data.classes import output_channels
from pixelseg.data.dataset import EvalDataset, SegDataset, eval_collate
from pixelseg.data.sampling import EpochSampler, class_stats, median_frequency_weights, repeat_factors
from pixelseg.data.transforms import check_augment, eval_transform, train_transform
from pixelseg.engine import tracking
from pixelseg.engine import finetune
from pixelseg.engine.objective import build_objective
from pixelseg.engine.schedule import freeze_batchnorm, param_groups
from pixelseg.models.base import encoder_of
from pixelseg.errors import PixelsegError
from pixelseg.losses import build_loss, parse_loss_spec
from pixelseg.models import MODELS, build_model

DISK_MARGIN = 64 * 2**20          # free space asked for beyond the checkpoints themselves


def check_names(cfg: Config) -> None:
    """A typo in --model, --loss or --augment fails in a second, before any data is read."""
    if cfg.data.root is None:
        raise PixelsegError("no dataset given; pass --data ROOT (make one with `pixelseg data synth --out ROOT`)")
    if cfg.model.name is not None:
        MODELS.get(cfg.model.name)
    parse_loss_spec(cfg.loss.name)
    check_augment(cfg.data.augment)   # a bad preset or pipeline file too (the ignore index is re-checked later)
    tracking.require(cfg.train.logger)    # a missing mlflow/wandb/tensorboard fails now, not after the first epoch


def check_data(index, cfg: Config) -> dict:
    """Rank 0: every mask read once (a bad file stops us now, not in hour three), plus the class
    statistics the imbalance tools need."""
    if not index.splits.get("val"):
        raise PixelsegError(f"{index.root}: no validation images, and the best checkpoint is chosen on them; give a "
                            "val split (a val/ folder) or more images so that --val-fraction can hold some out")
    reports = require_clean(index)          # refuses an all-ignore train split (data/checks.all_ignore)
    if "val" in reports and (msg := all_ignore(index, reports["val"].counts, "val")):
        raise PixelsegError(msg.replace("nothing to learn", "nothing to score the checkpoints on"))
    out = {"class_pixels": {s: r.counts.tolist() for s, r in reports.items()}, "class_weights": None, "factors": None}
    if cfg.loss.class_weights == "auto" or cfg.train.sampling == "repeat":
        stats = class_stats(index.splits["train"], index.classes.num_classes, index.mask_color_channel)
        if cfg.loss.class_weights == "auto":
            out["class_weights"] = median_frequency_weights(stats)
        if cfg.train.sampling == "repeat":
            out["factors"] = repeat_factors(stats, cfg.train.repeat_threshold).tolist()
    return out


def amp_dtype(amp: str, device: torch.device):
    if amp in ("off", "auto"):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise PixelsegError("--amp fp16 needs a CUDA GPU (it relies on a loss scaler there); on the CPU use "
                                "--amp bf16 or off")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PixelsegError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use --amp fp16")
    return torch.bfloat16


def checkpoint_bytes(model: torch.nn.Module, ema: bool) -> int:
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # model.safetensors (+EMA) and last.pt (model, two AdamW moments, EMA), each briefly twice (tmp + old)
    copies = (1 + 3 + (1 if ema else 0)) * 2
    return weights * copies + DISK_MARGIN


def new_model(cfg: Config, classes, resume: bool, console) -> torch.nn.Module:
    model = build_model(cfg.model.name, output_channels(classes, cfg.data.binary_sigmoid), cfg.data.in_channels,
                        cfg.model.encoder, None if resume else cfg.model.encoder_weights)
    if cfg.model.init_from and not resume:           # fine-tune: what fits is loaded, the user is told what not
        console.print(finetune.init_from(model, cfg.model.init_from, cfg.model.name).summary(len(model.state_dict())))
    report = getattr(model, "encoder_report", None)
    if report:
        prov = getattr(model, "weights_provenance", None) or {}
        where = (f"{prov['package']} {prov['version']}" if prov.get("source") == "package" else cfg.model.encoder_weights)
        console.print(f"encoder weights: {report['loaded']}/{report['total']} tensors loaded from {where}"
                      + (f", first conv adapted to {cfg.data.in_channels} channels" if report["adapted"] else "")
                      + (f", {len(report['missing'])} left at random init" if report["missing"] else ""))
    return model


@dataclass
class Data:
    train: SegDataset
    val: EvalDataset
    val_loader: DataLoader        # this rank's share of the val split
    factors: np.ndarray | None    # repeat factors (train.sampling repeat)
    local_batch: int
    pin: bool
    unlabelled: object = None     # engine/semi.UnlabelledDataset when the run learns from images without masks
    unlabelled_batch: int = 0     # its images per step on this rank (train.semi_batch)

    def train_loader(self, order: list[int], offset: int, d, seed: int, epoch: int, num_workers: int) -> DataLoader:
        self.train.set_epoch(seed, epoch)
        # the loader's own generator: its worker seeds do not draw from the global RNG, which stays
        # the model's alone (dropout) and so replays exactly after a resume
        return DataLoader(self.train, batch_size=self.local_batch, sampler=EpochSampler(order, offset, d.rank, d.world),
                          num_workers=num_workers, drop_last=True, pin_memory=self.pin, persistent_workers=False,
                          generator=torch.Generator().manual_seed(seed * 7919 + epoch))


def build_data(cfg: Config, index, mean, std, factors, d, device: torch.device) -> Data:
    classes, size, in_ch = index.classes, cfg.data.image_size, cfg.data.in_channels
    ds_train = SegDataset(index.splits["train"], classes.num_classes, classes.ignore_index, in_ch, mean, std,
                          train_transform(size, cfg.data.augment, classes.ignore_index, in_ch, cfg.data.scale, cfg.data.crop_focus), index.mask_color_channel)
    ds_val = EvalDataset(index.splits["val"], classes.num_classes, classes.ignore_index, in_ch, mean, std,
                         eval_transform(size, cfg.data.scale), index.mask_color_channel)
    local_bs = cfg.train.batch_size // d.world
    # images are resized to one size, masks stay a list at their own sizes: any val set batches.
    # Each rank validates its own share; the confusion matrices are summed (all-reduce), not averaged.
    # Its own generator too: a validation (mid-epoch when a run is stopped) must not draw from the global RNG.
    val_part = Subset(ds_val, range(d.rank, len(ds_val), d.world)) if d.enabled else ds_val
    val_loader = DataLoader(val_part, batch_size=1 if cfg.data.scale else local_bs, shuffle=False, num_workers=cfg.data.num_workers,
                            collate_fn=eval_collate, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.train.seed))
    ds_unl = None
    if cfg.data.unlabelled and cfg.train.semi == "on":
        from pixelseg.data.preprocess import list_inputs
        from pixelseg.engine.semi import UnlabelledDataset, unlabelled_samples
        ds_unl = UnlabelledDataset(unlabelled_samples(list_inputs([cfg.data.unlabelled])), classes.num_classes,
                                   classes.ignore_index, in_ch, mean, std,
                                   # no mask to aim crops at: uniform crops (and a measured truth cannot steer them)
                                   train_transform(size, cfg.data.augment, classes.ignore_index, in_ch, cfg.data.scale,
                                                   0.0))
    unl_bs = max(1, (cfg.train.semi_batch or cfg.train.batch_size) // d.world)
    return Data(ds_train, ds_val, val_loader, None if factors is None else np.asarray(factors), local_bs,
                device.type == "cuda", ds_unl, unl_bs)


@dataclass
class Trainee:
    """The model being trained and everything that updates it."""
    model: torch.nn.Module        # the bare network (its state_dict is what is saved)
    wrapped: torch.nn.Module      # DistributedDataParallel around it under torchrun, else the model itself
    forward: object               # what the objective calls (torch.compile'd when asked)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: torch.nn.Module | None
    objective: object
    amp_dtype: torch.dtype | None

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """The logits that label unlabelled images (engine/semi.py): the EMA of the weights in eval mode (a Mean
        Teacher), or the model itself when the run keeps no EMA."""
        if self.ema is None:
            return self.model(x)
        net = self.ema.module
        was = net.training
        net.eval()
        try:
            return net(x)
        finally:
            net.train(was)


def build_trainee(cfg: Config, model, classes, mean, std, d, device: torch.device, console) -> Trainee:
    if d.enabled and cfg.train.sync_bn:
        if device.type != "cuda":
            raise PixelsegError("train.sync_bn: PyTorch's SyncBatchNorm runs on GPUs only; on CPU ranks leave it off "
                                "(each rank then normalizes over its own share of the batch)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss.name, classes.num_classes, classes.ignore_index, cfg.loss.class_weights,
                         cfg.loss.label_smoothing, cfg.data.binary_sigmoid).to(device)
    objective = build_objective(cfg, model, loss_fn, classes.num_classes, classes.ignore_index, mean, std, device)
    if cfg.data.unlabelled and cfg.train.semi == "on":
        from pixelseg.engine.semi import Consistency
        objective.consistency = Consistency(classes.num_classes, classes.ignore_index, cfg.train.semi_weight,
                                            cfg.train.semi_soft)
    for note in objective.describe():
        console.print(f"objective: {note}")
    if cfg.train.encoder_lr_scale != 1.0 or cfg.train.encoder_bn != "train":
        if encoder_of(model) is None:
            raise PixelsegError(f"train.encoder_lr_scale / train.encoder_bn: model '{cfg.model.name}' has no separate "
                                "encoder; leave them at their defaults or pick an encoder-decoder model (fpn, unet, ...)")
        if cfg.train.encoder_bn == "frozen":
            console.print(f"encoder: {freeze_batchnorm(encoder_of(model))} BatchNorm layers frozen at their "
                          "pretrained statistics")
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay, cfg.train.encoder_lr_scale),
                                  lr=cfg.train.lr)
    dtype = amp_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = None
    if cfg.train.ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)
    return Trainee(model, model, model, optimizer, scaler, ema, objective, dtype)


def wrap_for_training(t: Trainee, cfg: Config, d, device: torch.device) -> None:
    """DDP and torch.compile go on after the state is restored (they share the model's parameters)."""
    if d.enabled:
        t.wrapped = torch.nn.parallel.DistributedDataParallel(
            t.model, device_ids=[device.index] if device.type == "cuda" else None)
    t.forward = torch.compile(t.wrapped) if cfg.train.compile else t.wrapped
