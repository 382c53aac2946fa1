"""A local, file-free fake of the Hugging Face Hub HTTP API, on 127.0.0.1 only.

It answers just the requests huggingface_hub's own client sends for create_repo, upload_folder
(validate-yaml, preupload, the LFS batch + basic PUT upload, the NDJSON commit), repo_info / model_info,
list_repo_tree and file downloads (HEAD/GET resolve/{rev}/{path} with ETag, X-Repo-Commit and
Content-Length), so pixelseg.hub runs the real client code path against it via `endpoint=`.

Like the Hub's default .gitattributes, *.safetensors go through LFS (the client then asks the LFS batch
endpoint); every other file is committed inline as base64. The Xet upload path needs Hub storage this fake
does not have: tests set HF_HUB_DISABLE_XET, so the client uses the plain LFS protocol.

Errors carry the Hub's X-Error-Code header so the client raises the same exception types.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors",)


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    gated: bool = False      # reads answer 403 GatedRepo, as for a user who has not accepted the conditions
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class FakeHub:
    """state: repos by id, LFS objects by sha256; `token` (when set) is required on every call."""

    def __init__(self, token: str | None = None):
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.token = token
        self.requests: list[tuple[str, str]] = []     # (method, path): what the client asked, for asserts
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"hub": self}))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo: Repo, files: dict[str, bytes]) -> str:
        repo.files.update(files)
        sha = hashlib.sha1(f"{len(repo.commits)}{sorted(repo.files)}".encode()).hexdigest()
        repo.commits.append(sha)
        return sha


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub        # set on the subclass FakeHub makes
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):   # quiet test output
        pass

    # -- plumbing ------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        headers["Connection"] = "close"
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)
        # no keep-alive: a client's pooled connection must not outlive the server (a stopped fake
        # would otherwise go on answering through it)
        self.close_connection = True

    def _json(self, status: int, obj, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, head: bool = False):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, b"" if head else json.dumps({"error": message}).encode(), headers, head=head)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":   # a streamed file upload
            out = bytearray()
            while (n := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                out += self.rfile.read(n)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):   # trailers
                pass
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        return self.hub.token is None or self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._error(404 if self._authorized() else 401, "RepoNotFound", "Repository not found", head)
            return None
        if repo.gated:
            self._error(403, "GatedRepo", "Access to this model is restricted", head)
            return None
        return repo

    def _route(self, method: str):
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((method, path))
        # the LFS upload URL stands for a presigned storage URL: it carries no Authorization header
        if method in ("POST", "PUT") and not path.startswith("/lfs-upload/") and not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        for pattern, fn in ROUTES:
            if m := re.fullmatch(pattern, path):
                if fn.__name__.split("_")[0] != method.lower():
                    continue
                return fn(self, *m.groups(), query=query)
        self._error(404, None, f"no route for {method} {path}")

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    # -- endpoints -----------------------------------------------------------------------------------
    def post_create(self, query):
        body = json.loads(self._body())
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._error(409, None, "You already created this model repo")
            self.hub.repos[repo_id] = Repo(private=body.get("visibility") == "private")
        self._json(200, {"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id})

    def post_validate_yaml(self, query):
        self._body()
        self._json(200, {"warnings": []})

    def post_preupload(self, repo_id, revision, query):
        body = json.loads(self._body())
        if self._repo(repo_id) is None:
            return
        files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                  "shouldIgnore": False, "oid": None} for f in body["files"]]
        self._json(200, {"files": files, "commitOid": self.hub.repos[repo_id].sha})

    def post_lfs_batch(self, repo_id, query):
        body = json.loads(self._body())
        if self._repo(repo_id) is None:
            return
        objects = []
        for o in body["objects"]:
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{self.hub.endpoint}/lfs-upload/{o['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def put_lfs_upload(self, oid, query):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, None, "sha256 mismatch")
        self.hub.lfs[oid] = data
        self._send(200)

    def post_commit(self, repo_id, revision, query):
        lines = [json.loads(x) for x in self._body().splitlines() if x.strip()]
        repo = self._repo(repo_id)
        if repo is None:
            return
        files = {}
        for line in lines:
            v = line["value"]
            if line["key"] == "file":
                files[v["path"]] = base64.b64decode(v["content"])
            elif line["key"] == "lfsFile":
                if v["oid"] not in self.hub.lfs:
                    return self._error(400, None, f"LFS object {v['oid']} was not uploaded")
                files[v["path"]] = self.hub.lfs[v["oid"]]
        with self.hub.lock:
            sha = self.hub.commit(repo, files)
        self._json(200, {"commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "success": True})

    def get_info(self, repo_id, revision=None, query=None):
        repo = self._repo(repo_id)
        if repo is None:
            return
        if revision not in (None, "main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": repo.private,
                         "siblings": [{"rfilename": p} for p in sorted(repo.files)], "tags": []})

    def get_tree(self, repo_id, revision, query):
        repo = self._repo(repo_id)
        if repo is None:
            return
        entries = []
        for p, data in sorted(repo.files.items()):
            e = {"type": "file", "path": p, "size": len(data), "oid": _git_blob_oid(data)}
            if p.endswith(LFS_SUFFIXES):
                e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(e)
        self._json(200, entries)

    def _resolve(self, repo_id, revision, filename, head):
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        data = repo.files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head)
        etag = hashlib.sha256(data).hexdigest() if filename.endswith(LFS_SUFFIXES) else _git_blob_oid(data)
        self._send(200, data, {"Content-Type": "application/octet-stream", "ETag": f'"{etag}"',
                               "X-Repo-Commit": repo.sha}, head=head)

    def get_resolve(self, repo_id, revision, filename, query):
        self._resolve(repo_id, revision, filename, head=False)

    def head_resolve(self, repo_id, revision, filename, query):
        self._resolve(repo_id, revision, filename, head=True)


_REPO = r"([\w.-]+/[\w.-]+)"
ROUTES = [
    (r"/api/repos/create", _Handler.post_create),
    (r"/api/validate-yaml", _Handler.post_validate_yaml),
    (rf"/api/models/{_REPO}/preupload/([^/]+)", _Handler.post_preupload),
    (rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.post_lfs_batch),
    (r"/lfs-upload/([0-9a-f]{64})", _Handler.put_lfs_upload),
    (rf"/api/models/{_REPO}/commit/([^/]+)", _Handler.post_commit),
    (rf"/api/models/{_REPO}", _Handler.get_info),
    (rf"/api/models/{_REPO}/revision/([^/]+)", _Handler.get_info),
    (rf"/api/models/{_REPO}/tree/([^/]+)/?", _Handler.get_tree),
    (rf"/{_REPO}/resolve/([^/]+)/(.+)", _Handler.get_resolve),
    (rf"/{_REPO}/resolve/([^/]+)/(.+)", _Handler.head_resolve),
]


def isolate_hub_client(monkeypatch, tmp_path) -> None:
    """huggingface_hub's client as the fake needs it and without the user's state: no Xet storage (the fake has
    none, so the client falls back to the plain LFS protocol), no telemetry, and the token and cache paths (fixed
    when huggingface_hub is imported) inside tmp_path, so no token or cache of the user's is read."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
