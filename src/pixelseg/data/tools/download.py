"""`pixelseg data download`: fetch a public dataset archive, check it, unpack it where `--data` can read it.

Downloads resume: bytes land in <archive>.part and a new run asks the server for the rest (HTTP Range),
so an interrupted multi-gigabyte download is not restarted. The archive is checked against its published
checksum before it is unpacked; a mismatch deletes the partial file and says so. Cityscapes needs an
account: its entry prints how to get it instead of downloading.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pixelseg.errors import PixelsegError
from pixelseg.fileio import file_hash

CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    url: str
    checksum: str | None       # "md5:<hex>" / "sha1:<hex>" / "sha256:<hex>", as the dataset's maintainers publish it
    unpacks_to: str            # the folder the archive creates, which `--data` then points at
    size: str                  # for the user, before a long download


DATASETS: dict[str, Archive] = {
    # checksum as used by torchvision.datasets.VOCSegmentation
    "voc": Archive("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                   "md5:6cd6e144f989b92b3379bac3b3de84fd", "VOCdevkit/VOC2012", "2.0 GB"),
    # checksum as used by GluonCV's ADE20K preparation script
    "ade20k": Archive("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                      "sha1:219e1696abb36c8ba3a3afe7fb2f4b4606a897c7", "ADEChallengeData2016", "923 MB"),
    # the fast.ai copy (32 classes, index masks, codes.txt + valid.txt); no checksum is published for it
    "camvid": Archive("https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz", None, "camvid", "570 MB"),
}

CITYSCAPES = """Cityscapes needs a free account, so pixelseg cannot download it for you:
  1. register at https://www.cityscapes-dataset.com/register/ and accept the license
  2. download gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB) from
     https://www.cityscapes-dataset.com/downloads/  (or, with the account: `csDownload gtFine_trainvaltest.zip
     leftImg8bit_trainvaltest.zip` from the cityscapesscripts package, which pixelseg installs)
  3. unzip both into {out}  (it then holds gtFine/ and leftImg8bit/)
  4. pixelseg verify-dataset {out}   then   pixelseg train --data {out}
Labels are mapped to the 19 evaluation classes with the official cityscapesscripts table."""


def _hasher(checksum: str):
    algo, _, expected = checksum.partition(":")
    if algo not in ("md5", "sha1", "sha256") or not expected:
        raise PixelsegError(f"checksum '{checksum}': give it as md5:<hex>, sha1:<hex> or sha256:<hex>")
    return hashlib.new(algo), expected.lower()


def file_digest(path: Path, checksum: str) -> tuple[str, str]:
    h, expected = _hasher(checksum)
    return file_hash(path, h.name), expected


def download(url: str, dest: Path, checksum: str | None = None, retries: int = 3, timeout: float = 60.0,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download `url` to `dest`, resuming a previous <dest>.part; verify `checksum`; return `dest`.
    An existing `dest` that matches the checksum is kept (nothing is downloaded)."""
    dest = Path(dest)
    if checksum:
        _hasher(checksum)  # a malformed checksum fails before any download
    if dest.is_file() and (checksum is None or _matches(dest, checksum)):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            break
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            if isinstance(e, urllib.error.HTTPError):
                if e.code in (401, 403):
                    raise PixelsegError(f"{url}: the server refused the download (HTTP {e.code}); this dataset needs a "
                                        "login - download it in a browser after signing in, then point --data at it") from None
                if e.code == 404:
                    raise PixelsegError(f"{url}: not found (HTTP 404); the dataset moved - download it by hand or pass "
                                        "--url with a mirror") from None
            if attempt == retries:
                raise PixelsegError(f"{url}: download failed after {retries + 1} attempts ({e}); run the same command "
                                    f"again to resume from {part.stat().st_size if part.exists() else 0} bytes") from None
            time.sleep(min(30.0, 2.0 ** attempt))
    if checksum:
        got, expected = file_digest(part, checksum)
        if got != expected:
            part.unlink()
            raise PixelsegError(f"{url}: checksum mismatch ({checksum.split(':')[0]} {got}, expected {expected}); the "
                                "partial file was deleted - run again, or check the mirror")
    os.replace(part, dest)
    return dest


def _matches(path: Path, checksum: str) -> bool:
    got, expected = file_digest(path, checksum)
    return got == expected


def _fetch(url: str, part: Path, timeout: float, progress) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "pixelseg"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:   # nothing left to send: the .part is already complete
            return
        raise
    with resp:
        if have and resp.status != 206:
            have = 0     # the server ignored Range: start over rather than append a second copy
        total = resp.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with part.open("ab" if have else "wb") as f:
            done = have
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def extract(archive: Path, out: Path) -> None:
    """Unpack a .tar/.tar.gz/.tgz/.zip into `out`, refusing members that would land outside it."""
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for m in z.namelist():
                    if not (root / m).resolve().is_relative_to(root):
                        raise PixelsegError(f"{archive}: member '{m}' would be written outside {out}; not unpacking")
                z.extractall(out)
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            with tarfile.open(archive) as t:
                t.extractall(out, filter="data")   # the "data" filter rejects absolute paths, '..', device files
        else:
            raise PixelsegError(f"{archive}: unknown archive type; expected .tar, .tar.gz, .tgz or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise PixelsegError(f"{archive}: cannot be unpacked ({e}); delete it and download again") from None


def fetch(name: str, out: str | Path, url: str | None = None, checksum: str | None = None,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download and unpack dataset `name` into `out`; returns the folder to give to --data.
    `url` replaces the official address (a mirror); `checksum` the published one."""
    out = Path(out)
    if name in ("cityscapes", "cityscapes-instructions"):
        raise PixelsegError(CITYSCAPES.format(out=out).splitlines()[0] + " (run `pixelseg data download "
                            "cityscapes-instructions` for the steps)")
    if name not in DATASETS:
        raise PixelsegError(f"unknown dataset '{name}'; valid: {', '.join(DATASETS)}, cityscapes-instructions")
    a = DATASETS[name]
    src = url or a.url
    archive = out / Path(urllib.request.urlparse(src).path).name
    download(src, archive, checksum or a.checksum, progress=progress)   # a mirror must serve the same bytes
    extract(archive, out)
    target = out / a.unpacks_to
    if not target.is_dir():
        raise PixelsegError(f"{archive}: unpacked, but {target} is not there; the archive's layout changed - "
                            f"look inside {out} and point --data at the dataset folder")
    return target
