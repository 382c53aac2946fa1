"""Hub run folders from elsewhere (issue 27, item 3), against the local fake Hub (tests/helpers/hub_fake.py): a
tree with `../` names, a model.json without its weights, a file served larger than the Hub declared it, a
snapshot whose files were turned into links out of the cache, and a push without credentials or without a
network. Each ends in a one-line PixelsegError naming the repository and the fix, nothing is written outside
the cache, and nothing half-downloaded reads as a run."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from pixelseg import hub
from pixelseg.errors import PixelsegError
from pixelseg.run.folder import RunFolder

from tests.helpers.hub_fake import FakeHub, _Handler, isolate_hub_client


@pytest.fixture(autouse=True)
def _hub_env(monkeypatch, tmp_path):
    isolate_hub_client(monkeypatch, tmp_path)


@pytest.fixture
def run_dir(tmp_path):
    from pixelseg.inference.bench import model_run
    return model_run("fast_scnn", (32, 32), 2, tmp_path / "runs" / "exp1")


def _files(root: Path) -> set[str]:
    """Every path under root (links not followed), relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_dot_dot_names_in_a_repo_are_never_written_outside_the_cache(run_dir, tmp_path):
    """A repo holding `../` names next to a clean run: pull downloads only the run's own names, so the climbing
    files land nowhere (inside or outside the cache) and the run pulled is the clean one."""
    cache = tmp_path / "box" / "cache"
    cache.mkdir(parents=True)
    outside_before = _files(tmp_path)
    with FakeHub(token="hf_write") as fake:
        hub.push(run_dir, "me/climb", token="hf_write", endpoint=fake.endpoint)
        fake.commit(fake.repos["me/climb"], {"../escape.txt": b"x", "../../escape2.txt": b"x",
                                             "sub/../../../escape3.txt": b"x"})
        path = hub.pull("me/climb", endpoint=fake.endpoint, cache_dir=cache)
    assert RunFolder(path).info().classes.names == RunFolder(run_dir).info().classes.names
    new_outside = {p for p in _files(tmp_path) - outside_before if not p.startswith("box/cache")}
    assert not new_outside, new_outside
    assert not [p for p in _files(cache) if "escape" in p]


def test_a_model_json_without_its_weights_is_refused_with_a_hub_fix(run_dir, tmp_path):
    """model.json names a model whose weights the repo does not hold: one line naming the repository and
    what to do about it (not `pixelseg train --resume` on the Hub cache, which is a local run's fix)."""
    with FakeHub(token="hf_write") as fake:
        hub.push(run_dir, "me/noweights", token="hf_write", endpoint=fake.endpoint)
        del fake.repos["me/noweights"].files[RunFolder.WEIGHTS]
        fake.commit(fake.repos["me/noweights"], {})
        with pytest.raises(PixelsegError) as e:
            hub.pull("me/noweights", endpoint=fake.endpoint, cache_dir=tmp_path / "cache")
    msg = _one_line(e)
    assert "me/noweights" in msg and RunFolder.WEIGHTS in msg and "--resume" not in msg, msg
    assert "push" in msg, msg


class _Liar(_Handler):
    """Declares every file (HEAD) at its size but serves model.json with 10 MB of padding after it."""

    def _resolve(self, repo_id, revision, filename, head):
        if head or filename != RunFolder.MODEL:
            return super()._resolve(repo_id, revision, filename, head)
        repo = self.hub.repos[repo_id]
        data = repo.files[filename] + b" " * (10 * 2**20)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


def test_a_file_served_larger_than_declared_is_refused_and_leaves_no_run(run_dir, tmp_path):
    """The body of model.json is far larger than the size the Hub declared for it: huggingface_hub's size check
    stops the download; pixelseg says so in one line (not "cannot reach the Hub"), and the cache holds no
    snapshot that would read as a run."""
    cache = tmp_path / "cache"
    fake = FakeHub(token="hf_write")
    liar = type("Liar", (_Liar,), {"hub": fake})
    fake.server.RequestHandlerClass = liar
    with fake:
        hub.push(run_dir, "me/liar", token="hf_write", endpoint=fake.endpoint)
        with pytest.raises(PixelsegError) as e:
            hub.pull("me/liar", endpoint=fake.endpoint, cache_dir=cache)
    msg = _one_line(e)
    assert "me/liar" in msg and "cannot reach" not in msg, msg
    assert "size" in msg, msg
    runs = [p.parent for p in cache.rglob(RunFolder.MODEL)]
    assert not runs, f"a snapshot with model.json was left: {runs}"


def test_a_snapshot_whose_files_link_out_of_the_cache_is_refused(run_dir, tmp_path):
    """A pulled run whose weights were swapped for a link to a file outside the cache (a tampered or copied
    cache): pulling again refuses in one line naming the file, instead of loading whatever it points to."""
    cache = tmp_path / "cache"
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((run_dir / RunFolder.WEIGHTS).read_bytes())
    with FakeHub(token="hf_write") as fake:
        hub.push(run_dir, "me/linked", token="hf_write", endpoint=fake.endpoint)
        path = hub.pull("me/linked", endpoint=fake.endpoint, cache_dir=cache)
        weights = path / RunFolder.WEIGHTS
        weights.unlink()
        os.symlink(outside, weights)
        with pytest.raises(PixelsegError) as e:
            hub.pull("me/linked", endpoint=fake.endpoint, cache_dir=cache)
    msg = _one_line(e)
    assert "me/linked" in msg and RunFolder.WEIGHTS in msg and "outside" in msg, msg


def test_push_without_credentials_or_network_is_one_line(run_dir, tmp_path):
    """No token anywhere (HF_TOKEN unset, no token file): the Hub's 401 becomes the fix (--token / hf auth login);
    no Hub listening: 'cannot reach'. Neither writes anything into the run folder."""
    before = _files(run_dir)
    with FakeHub(token="hf_write") as fake:
        with pytest.raises(PixelsegError) as e:
            hub.push(run_dir, "me/nocreds", endpoint=fake.endpoint)
        msg = _one_line(e)
        assert "me/nocreds" in msg and "--token" in msg, msg
        assert "me/nocreds" not in fake.repos
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(PixelsegError) as e:
        hub.push(run_dir, "me/offline", token="hf_write", endpoint=dead)
    msg = _one_line(e)
    assert "me/offline" in msg and "cannot reach" in msg, msg
    assert _files(run_dir) == before
