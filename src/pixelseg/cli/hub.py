"""`pixelseg push` and `pixelseg pull`: a run folder to and from the Hugging Face Hub (pixelseg/hub.py).
Token and endpoint default to huggingface_hub's own (HF_TOKEN or `hf auth login`, HF_ENDPOINT)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pixelseg.cli.common import check_out_folder
from pixelseg.errors import PixelsegError


def add_parsers(sub) -> None:
    p = sub.add_parser("push", help="share a run on the Hugging Face Hub: weights, run description, model card")
    p.add_argument("run", help="run folder")
    p.add_argument("repo", metavar="USER/NAME", help="Hub repository (created when missing)")
    p.add_argument("--private", action="store_true", help="make a new repository private (an existing one keeps "
                   "its visibility)")
    _access_args(p)
    p.add_argument("--message", help="commit message (default: the model and its val mIoU)")
    p.add_argument("--dry-run", action="store_true", help="upload nothing: write the folder push would upload "
                   "(weights, run description, model card) to --out, offline, to look at first")
    p.add_argument("--out", help="with --dry-run: the folder to write (new or empty)")
    p.set_defaults(handler=cmd_push)

    q = sub.add_parser("pull", help="download a run shared with `pixelseg push` (pixelseg.load and predict take "
                       "hf://USER/NAME directly as well)")
    q.add_argument("repo", metavar="USER/NAME", help="Hub repository, optionally hf://USER/NAME@REVISION")
    q.add_argument("--out", help="run folder to write (default: the run stays in the Hub cache and its path is printed)")
    q.add_argument("--revision", help="branch, tag or commit (default: main)")
    _access_args(q)
    q.set_defaults(handler=cmd_pull)


def _access_args(p) -> None:
    p.add_argument("--token", help="Hub access token (default: $HF_TOKEN, else the one `hf auth login` saved)")
    p.add_argument("--endpoint", help="Hub address (default: $HF_ENDPOINT, else https://huggingface.co)")


def cmd_push(a) -> int:
    from pixelseg import hub
    if a.out and not a.dry_run:
        raise PixelsegError("--out is where --dry-run writes the folder push would upload; add --dry-run, or drop --out")
    if a.dry_run:
        if not a.out:
            raise PixelsegError("--dry-run writes the folder push would upload: give it --out DIR (new or empty)")
        files = hub.dry_run(a.run, a.repo, a.out)
        print(f"nothing uploaded; {len(files)} files push would upload to {a.repo} written to {a.out}: "
              f"{', '.join(files)} (the model card is README.md)")
        return 0
    url = hub.push(a.run, a.repo, token=a.token, private=a.private, endpoint=a.endpoint, commit_message=a.message)
    print(f"{a.run} -> {url}")
    print(f"use it: pixelseg predict {a.repo} IMAGE --out OUT   |   pixelseg.load(\"hf://{a.repo}\")")
    return 0


def cmd_pull(a) -> int:
    from pixelseg import hub
    repo, revision = hub.parse_source(a.repo if a.repo.startswith(hub.PREFIX) else hub.PREFIX + a.repo)
    if a.revision and revision and a.revision != revision:
        raise PixelsegError(f"{a.repo}: revision given twice (@{revision} and --revision {a.revision}); give one")
    if a.out is not None:
        out = check_out_folder(a.out)
        if out.exists() and any(out.iterdir()):
            raise PixelsegError(f"--out {out}: not empty; give a new folder (a pulled run is never merged into another)")
    path = hub.pull(repo, revision=a.revision or revision, token=a.token, endpoint=a.endpoint)
    if a.out is not None:
        path = _copy_run(path, Path(a.out))
    print(f"{a.repo} -> {path}")
    return 0


def _copy_run(cached: Path, out: Path) -> Path:
    """The cache's files (symlinks into its blob store) copied as plain files; the folder appears whole or not
    at all (copied beside it, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for f in sorted(cached.iterdir()):
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        if out.exists():
            out.rmdir()         # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
