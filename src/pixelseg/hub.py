"""Share a run folder on the Hugging Face Hub and get one back.

    url = pixelseg.hub.push("runs/exp1", "user/road-seg")       # model card + weights + run description
    path = pixelseg.hub.pull("user/road-seg")                   # a run folder in the Hub cache
    pixelseg.load(pixelseg.hub.resolve_source("hf://user/road-seg@v1"))

Only what prediction needs and what tells others how the model was made goes up: the weights
(safetensors), model.json, classes.json, metrics.json, recipe.json and config.yaml, plus a generated
README.md (the model card). Never last.pt, the report, exports or environment.json (host names, command
lines). Local paths do not leak: in config.yaml and recipe.json every absolute path is reduced to its
last component (data.root /home/me/data/roads -> roads), and the user's home folder is cut from any
other string. Nothing pulled is unpickled: the folder is read with read_run and loaded from safetensors.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.run.folder import RunFolder

# what a Hub repo of pixelseg holds; pull downloads nothing else
HUB_FILES = (RunFolder.WEIGHTS, RunFolder.MODEL, RunFolder.CLASSES, RunFolder.METRICS, RunFolder.RECIPE, RunFolder.CONFIG,
             "README.md")
PREFIX = "hf://"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_LOCAL_SUFFIXES = (".onnx", ".xml", ".pt", ".safetensors", ".json", ".yaml")


def _hf():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401  (hf.constants is read below; not imported by the package itself)
    except ImportError:
        raise PixelsegError("Hub sharing needs the huggingface_hub package: pip install 'pixelseg[hub]'") from None
    return huggingface_hub


def _check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.fullmatch(repo_id or ""):
        raise PixelsegError(f"{repo_id!r}: not a Hub repository id; write it as user/name (e.g. me/road-seg)")
    return repo_id


# -- push -------------------------------------------------------------------------------------------------
def push(run: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
         endpoint: str | None = None, commit_message: str | None = None) -> str:
    """Upload the run's weights, description and a generated model card to `repo_id`; returns the repo URL.
    The repo is created when missing (private=True makes a new repo private; an existing one keeps its
    visibility)."""
    hf = _hf()
    _check_repo_id(repo_id)
    rf = RunFolder(run)
    info = rf.info()             # a one-line error when it is not a finished run
    api = hf.HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="pixelseg-push-") as tmp:
        stage_run(rf, Path(tmp), repo_id)
        with _hub_errors(repo_id, api.endpoint, writing=True):
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=tmp, allow_patterns=list(HUB_FILES),
                              commit_message=commit_message or f"pixelseg: {info.model}, val mIoU "
                                                                f"{_fmt(info.best.get('mIoU'))}")
    return str(url)


def dry_run(run: str | Path, repo_id: str, out: str | Path) -> list[str]:
    """What push would upload, written to `out` (a new or empty folder) with no network: to look at the files
    and the model card before sharing. Returns the file names."""
    _check_repo_id(repo_id)
    rf = RunFolder(run)
    rf.info()                    # a one-line error when it is not a finished run
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PixelsegError(f"--out {out}: exists and is not an empty folder; give a new folder")
    if out.resolve() == rf.path.resolve() or rf.path.resolve() in out.resolve().parents:
        raise PixelsegError(f"--out {out}: inside the run folder; give a folder outside it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pixelseg-push-", dir=out.parent))
    try:
        files = stage_run(rf, tmp, repo_id)
        if out.exists():
            out.rmdir()
        tmp.rename(out)                  # all or nothing: the folder appears complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return files


def stage_run(rf: RunFolder, out: Path, repo_id: str) -> list[str]:
    """Write what push uploads into `out` (exposed for tests and for a look before pushing)."""
    copied = []
    for name in (rf.WEIGHTS, rf.MODEL, rf.CLASSES, rf.METRICS):
        src = rf.path / name
        if src.is_file():
            shutil.copyfile(src, out / name)
            copied.append(name)
    home = str(Path.home())
    if rf.recipe():
        (out / rf.RECIPE).write_text(json.dumps(_scrub(rf.recipe(), home), indent=2) + "\n", encoding="utf-8")
        copied.append(rf.RECIPE)
    if rf.config_path.is_file():
        import yaml
        cfg = _scrub(rf.config_dict(), home)
        (out / rf.CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        copied.append(rf.CONFIG)
    (out / "README.md").write_text(model_card(rf, repo_id), encoding="utf-8")
    return copied + ["README.md"]


# config keys that hold a local path (the dataset, the run, a run to start from, a teacher, an augment file)
PATH_KEYS = {"root", "out", "init_from", "teacher", "encoder_weights", "augment", "unlabelled"}


def _scrub(obj, home: str, key: str = ""):
    """Local paths out of config/recipe values: an absolute path, or a path-valued key's relative path with
    folders (data.root: quickstart/data), becomes its last component; the home folder is cut elsewhere."""
    if isinstance(obj, dict):
        return {k: _scrub(v, home, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, home, key) for v in obj]
    if isinstance(obj, str) and obj:
        if Path(obj).is_absolute() or (key in PATH_KEYS and ("/" in obj or "\\" in obj)):
            return Path(obj.replace("\\", "/")).name
        return obj.replace(home, "~") if home not in ("", "/") else obj
    return obj


# -- the model card -----------------------------------------------------------------------------------------
def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f}" if pct else f"{v:.4f}"


def model_card(rf: RunFolder, repo_id: str) -> str:
    """README.md: YAML metadata the Hub indexes (library, task, tags, model-index results) and a body with
    the classes, the metrics and their conventions, the training data and the recipe."""
    hf = _hf()
    info = rf.info()
    metrics = rf.metrics() or {}
    data = _scrub(rf.data_settings(), "")
    data_name = str(data.get("root") or "unknown")
    split, images = metrics.get("split", "val"), metrics.get("images")
    ignore = info.classes.ignore_index
    eval_results = []
    for key, mtype, label in (("mIoU", "mean_iou", "mIoU"), ("pixel_accuracy", "accuracy", "pixel accuracy"),
                              ("mean_dice", "dice", "mean Dice")):
        if metrics.get(key) is not None:
            eval_results.append(hf.EvalResult(
                task_type="image-segmentation", task_name="Semantic Segmentation", dataset_type=data_name,
                dataset_name=data_name, dataset_split=split, metric_type=mtype, metric_value=round(metrics[key], 5),
                metric_name=f"{label} ({split}, {images} images, ignore index {ignore}"
                            f"{', classes present only' if key == 'mIoU' else ''})"))
    tags = ["pixelseg", "semantic-segmentation", info.model] + ([info.encoder] if info.encoder else [])
    card = hf.ModelCardData(library_name="pixelseg", pipeline_tag="image-segmentation", tags=tags,
                            model_name=repo_id.split("/")[-1], eval_results=eval_results or None)
    body = "\n".join(_card_body(rf, info, metrics, repo_id, data_name, data))
    return f"---\n{card.to_yaml()}\n---\n\n{body}\n"


def _card_body(rf, info, metrics, repo_id, data_name, data) -> list[str]:
    pre, classes = info.preprocessing, info.classes
    per_class = metrics.get("per_class") or {}
    absent = metrics.get("classes_absent") or []
    h, w = pre.image_size
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"A [pixelseg](https://pypi.org/project/pixelseg/) semantic-segmentation model: **{info.model}**"
             f"{f' ({info.encoder} encoder)' if info.encoder else ''}, {classes.num_classes} classes, "
             f"trained on `{data_name}`. Every pixel gets one class index.", "",
             "## Use it", "", "```bash", "pip install 'pixelseg[hub]'",
             f"pixelseg predict {repo_id} image.png --out labels/", "```", "", "```python", "import pixelseg",
             f'predictor = pixelseg.load("hf://{repo_id}")', 'labels = predictor.predict("image.png")  # HxW class indices',
             "```", "", "## Classes", "", f"Pixels labelled {classes.ignore_index} are ignored in training and scoring.",
             "", "| index | name | color | val IoU (%) |", "|---:|---|---|---:|"]
    for i, (name, color) in enumerate(zip(classes.names, classes.colors)):
        iou = "absent" if name in absent else _fmt((per_class.get(name) or {}).get("iou"), pct=True)
        lines.append(f"| {i} | {name} | `#{''.join(f'{c:02x}' for c in color)}` | {iou} |")
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += [f"On the `{metrics.get('split', 'val')}` split of `{data_name}` ({metrics.get('images')} images), "
                  "at the images' original resolution, with the best weights (by val mIoU):", "",
                  f"- mIoU **{_fmt(metrics.get('mIoU'), True)}%**: the mean over classes present in the ground truth "
                  "or the prediction; classes absent from both are left out"
                  f"{' (here: ' + ', '.join(absent) + ')' if absent else ''}.",
                  f"- pixel accuracy {_fmt(metrics.get('pixel_accuracy'), True)}%, mean Dice "
                  f"{_fmt(metrics.get('mean_dice'), True)}%, frequency-weighted IoU {_fmt(metrics.get('fw_iou'), True)}%.",
                  f"- pixels with label {classes.ignore_index} are not counted."]
    else:
        lines.append("No final evaluation was recorded (metrics.json is missing).")
    lines += ["", "## Training data", "", f"`{data_name}` (format: {data.get('format', 'auto')}, validation "
              f"fraction {data.get('val_fraction', '—')}). The data itself is not part of this repository.",
              "", "## Recipe", "", "| | |", "|---|---|"]
    for k, v in _recipe_rows(rf, info, metrics, pre, h, w):
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Pretrained weights", ""] + pretrained_lines(info.pretrained)
    exports = _exports(rf)
    if exports:
        lines += ["", "## Exported formats", "", "Made from this run with `pixelseg export` (not uploaded; the same "
                  f"command re-creates them from the weights): {', '.join(exports)}."]
    return lines


def pretrained_lines(prov: dict | None) -> list[str]:
    """Where the encoder's starting weights came from, and under which licence (model.json's provenance)."""
    if not prov:
        return ["The encoder started from random weights (no pretrained weights were used)."]
    source = {"package": f"the Python package `{prov.get('package')}` {prov.get('version', '')}".rstrip(),
              "file": "a weights file of the trainer's own", "hub": "the model hub"}.get(prov.get("source"), "unknown")
    lines = [f"The encoder started from **{prov.get('weights')}** weights, from {source}."]
    if prov.get("sha256"):
        lines.append(f"sha256 of the weights file: `{prov['sha256']}`.")
    lines.append(f"Licence of the pretrained weights: {prov.get('licence', 'unknown')}; this model is derived from them.")
    return lines


def _exports(rf) -> list[str]:
    """The `pixelseg export` outputs found at their default places, e.g. 'onnx int8 (model.int8.onnx)'."""
    from pixelseg.deploy.export import SUFFIX, default_out
    found = []
    for fmt in SUFFIX:
        for int8 in (False, True):
            p = default_out(rf.path, fmt, int8)
            if p.is_file():
                found.append(f"{fmt}{' int8' if int8 else ''} ({p.name})")
    return found


def _recipe_rows(rf, info, metrics, pre, h, w):
    cfg = rf.config_dict()
    tr, loss = cfg.get("train") or {}, cfg.get("loss") or {}
    hw = (rf.recipe().get("hardware") or {}).get("name") or metrics.get("hardware") or "—"
    budget = (f"{tr['max_minutes']:g} min" if tr.get("max_minutes") else "") + \
        (f"{' / ' if tr.get('max_minutes') else ''}{tr['epochs']} epochs" if tr.get("epochs") else "")
    yield "model", f"{info.model}" + (f" / {info.encoder}" if info.encoder else "")
    yield "input size", f"{h}x{w} (HxW, {pre.resize}), {pre.in_channels} channels"
    yield "normalization", f"mean {list(pre.mean)}, std {list(pre.std)} (0..255 scale)"
    yield "budget", budget or "—"
    if metrics.get("train_seconds") is not None:
        yield "training time", f"{metrics['train_seconds'] / 60:.1f} min"
    for key in ("batch_size", "lr", "weight_decay", "schedule", "amp"):
        if tr.get(key) is not None:
            yield key.replace("_", " "), tr[key]
    if loss.get("name"):
        yield "loss", loss["name"]
    yield "hardware", hw
    if info.best.get("epoch") is not None:
        yield "best epoch", info.best["epoch"]


# -- pull and resolve ----------------------------------------------------------------------------------------
def pull(repo_id: str, *, revision: str | None = None, token: str | None = None, endpoint: str | None = None,
         cache_dir: str | Path | None = None) -> Path:
    """Download a pixelseg repo (only HUB_FILES) into the Hub cache and return the run folder."""
    hf = _hf()
    _check_repo_id(repo_id)
    where = endpoint or hf.constants.ENDPOINT
    with _hub_errors(repo_id, where, revision=revision):
        path = Path(hf.snapshot_download(repo_id, revision=revision, token=token, endpoint=endpoint,
                                         cache_dir=str(cache_dir) if cache_dir else None,
                                         allow_patterns=list(HUB_FILES)))
    if not (path / RunFolder.MODEL).is_file():
        raise PixelsegError(f"{repo_id}: the Hub repository has no model.json, so it is not a pixelseg model; "
                            "push one with `pixelseg push RUN user/name`")
    _check_inside_cache(path, repo_id)
    if not (path / RunFolder.WEIGHTS).is_file():
        raise PixelsegError(f"{repo_id}: the Hub repository has model.json but no {RunFolder.WEIGHTS}, so it is not a "
                            "complete pixelseg run; ask the owner to push the run again with `pixelseg push`")
    RunFolder(path).info()     # model.json readable: a one-line error otherwise
    _check_weights_header(path / RunFolder.WEIGHTS, repo_id)
    return path


def _check_inside_cache(path: Path, repo_id: str) -> None:
    """Every file of the snapshot `path` (links into the cache's blobs, or plain copies) must lie inside the
    repository's cache folder (models--user--name): a link out of it (a tampered or copied cache) would load a
    file nobody pulled (issue 27)."""
    home = path.resolve().parents[1]
    for name in HUB_FILES:
        p = path / name
        if not (p.is_symlink() or p.exists()):
            continue
        target = p.resolve()
        if home not in target.parents:
            raise PixelsegError(f"{repo_id}: {name} in the pulled snapshot {path} points outside the Hub cache "
                                f"({target}); delete {home} and pull again")


def _check_weights_header(weights: Path, repo_id: str) -> None:
    """A downloaded tree is someone else's: its weights file must be safetensors (a JSON header and raw tensors;
    reading it runs no code), never a pickle under that name. Only the header is read here."""
    from safetensors import safe_open
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds for a file that is not one
        raise PixelsegError(f"{repo_id}: {RunFolder.WEIGHTS} is not a safetensors file ({str(e).splitlines()[0][:120]}); "
                            "pixelseg loads nothing else from the Hub (no pickles): ask the owner to push it again "
                            "with `pixelseg push`") from None


def parse_source(s: str) -> tuple[str, str | None] | None:
    """'hf://user/name@rev' or 'user/name' -> (repo_id, revision); None for anything that is a local path."""
    s = str(s)
    if s.startswith(PREFIX):
        repo, _, rev = s[len(PREFIX):].partition("@")
        return _check_repo_id(repo.strip("/")), rev or None
    if Path(s).exists() or s.endswith(_LOCAL_SUFFIXES) or s.startswith((".", "/", "~")):
        return None
    repo, _, rev = s.partition("@")
    return (repo, rev or None) if _REPO_ID.fullmatch(repo) else None


def resolve_source(s: str | Path, **pull_options) -> Path | str:
    """A local run folder (or export file) for what the user gave: 'hf://user/name[@rev]' and a bare
    'user/name' that is not a local path are pulled; anything else passes through unchanged."""
    if isinstance(s, Path):
        return s
    parsed = parse_source(s)
    if parsed is None:
        return s
    repo, rev = parsed
    try:
        return pull(repo, revision=rev, **pull_options)
    except PixelsegError as e:
        if s.startswith(PREFIX):
            raise
        # a bare name may be a mistyped local folder as well: say both
        raise PixelsegError(f"{s}: no such local folder, and on the Hub: {e}") from None


class _hub_errors:
    """Translate huggingface_hub / network exceptions into one-line PixelsegErrors with the fix."""

    def __init__(self, repo_id: str, endpoint: str, writing: bool = False, revision: str | None = None):
        self.repo_id, self.endpoint, self.writing, self.revision = repo_id, endpoint, writing, revision

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or isinstance(exc, PixelsegError):
            return False
        msg = self.message(exc)
        if msg is None:
            return False
        raise PixelsegError(msg) from None

    def message(self, exc) -> str | None:
        from huggingface_hub import errors as E

        repo, where = self.repo_id, self.endpoint
        login = "pass --token (a write token from https://huggingface.co/settings/tokens) or run `hf auth login`"
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, E.GatedRepoError):
            return f"{repo}: a gated repository; accept its conditions at {where}/{repo}, then {login.replace('a write', 'a read')}"
        if isinstance(exc, E.RevisionNotFoundError):
            return f"{repo}@{self.revision}: no such revision on {where}; give a branch, tag or commit of the repo"
        if isinstance(exc, E.RepositoryNotFoundError) or (status == 404 and not self.writing):
            return (f"{repo}: repository not found on {where} (or it is private: {login.replace('a write', 'a read')})")
        if status in (401, 403):
            action = "write to" if self.writing else "read"
            return f"{repo}: not allowed to {action} this repository on {where}; {login}"
        if "Consistency check failed" in str(exc):     # served larger (or smaller) than the Hub declared it
            first = str(exc).splitlines()[0][:200]
            return (f"{repo}: a file from {where} is not the size the Hub declared ({first}); nothing of it was "
                    "kept: pull again, and if it repeats the repository or a proxy serves other content")
        if isinstance(exc, (E.OfflineModeIsEnabled, E.LocalEntryNotFoundError, ConnectionError, OSError)) \
                or type(exc).__name__ in ("ConnectError", "TimeoutException", "ConnectTimeout", "ReadTimeout"):
            if status is None:
                return (f"{repo}: cannot reach {where} ({type(exc).__name__}); check the network connection "
                        "(or HF_ENDPOINT). A repo pulled before is read from the cache with HF_HUB_OFFLINE=1")
        if isinstance(exc, E.HfHubHTTPError):
            first = str(exc).splitlines()[0][:200]
            return f"{repo}: the Hub at {where} answered {status}: {first}"
        return None
