"""Download helpers against a local HTTP server (with Range support) serving a tiny archive made here."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pixelseg.cli import main
from pixelseg.data.tools import download as D
from pixelseg.errors import PixelsegError


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """Serves `files` {path: bytes}; honours Range; records the Range headers it saw; `fail_after` cuts the
    first response short after that many bytes (a dropped connection); `status` forces an error code."""

    def __init__(self, files):
        self.files, self.ranges, self.fail_after, self.status = files, [], None, None
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if outer.status:
                    self.send_error(outer.status)
                    return
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if outer.fail_after is not None:
                    self.wfile.write(body[:outer.fail_after])
                    outer.fail_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    payload = _tar({"camvid/codes.txt": b"Sky\nRoad\nVoid\n", "camvid/valid.txt": b""})
    s = Server({"/camvid.tgz": payload, "/evil.tgz": _tar({"../escape.txt": b"x"})})
    s.payload = payload
    s.sha256 = "sha256:" + hashlib.sha256(payload).hexdigest()
    yield s
    s.close()


def test_download_checks_and_unpacks(server, tmp_path):
    target = D.fetch("camvid", tmp_path / "data", url=f"{server.url}/camvid.tgz", checksum=server.sha256)
    assert target == tmp_path / "data" / "camvid"
    assert (target / "codes.txt").read_bytes() == b"Sky\nRoad\nVoid\n"
    assert (tmp_path / "data" / "camvid.tgz").read_bytes() == server.payload
    assert not (tmp_path / "data" / "camvid.tgz.part").exists()
    # a second run finds the verified archive and does not download again
    n = len(server.ranges)
    D.fetch("camvid", tmp_path / "data", url=f"{server.url}/camvid.tgz", checksum=server.sha256)
    assert len(server.ranges) == n


def test_download_resumes_with_range(server, tmp_path):
    dest = tmp_path / "camvid.tgz"
    part = tmp_path / "camvid.tgz.part"
    part.write_bytes(server.payload[:100])          # what an interrupted run left
    D.download(f"{server.url}/camvid.tgz", dest, server.sha256)
    assert server.ranges == ["bytes=100-"]
    assert dest.read_bytes() == server.payload


def test_dropped_connection_is_retried_from_where_it_stopped(server, tmp_path, monkeypatch):
    monkeypatch.setattr(D.time, "sleep", lambda s: None)
    server.fail_after = 50
    dest = D.download(f"{server.url}/camvid.tgz", tmp_path / "c.tgz", server.sha256)
    assert dest.read_bytes() == server.payload
    assert server.ranges == [None, "bytes=50-"]


def test_checksum_mismatch_deletes_the_partial_file(server, tmp_path):
    with pytest.raises(PixelsegError) as ei:
        D.download(f"{server.url}/camvid.tgz", tmp_path / "c.tgz", "md5:" + "0" * 32)
    assert "checksum mismatch" in str(ei.value) and "\n" not in str(ei.value)
    assert not (tmp_path / "c.tgz").exists() and not (tmp_path / "c.tgz.part").exists()


@pytest.mark.parametrize("status, needle", [(401, "needs a login"), (403, "needs a login"), (404, "not found")])
def test_http_errors_are_one_line_messages(server, tmp_path, status, needle):
    server.status = status
    with pytest.raises(PixelsegError) as ei:
        D.download(f"{server.url}/camvid.tgz", tmp_path / "c.tgz")
    assert needle in str(ei.value)


def test_archive_escaping_the_folder_is_refused(server, tmp_path):
    with pytest.raises(PixelsegError, match="cannot be unpacked|outside"):
        D.extract(D.download(f"{server.url}/evil.tgz", tmp_path / "evil.tgz"), tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists()


def test_cityscapes_instructions_and_known_checksums(capsys, tmp_path):
    rc = main(["data", "download", "cityscapes-instructions", "--out", str(tmp_path / "cs")])
    out = capsys.readouterr().out
    assert rc == 0 and "account" in out and "cityscapes-dataset.com" in out and "gtFine_trainvaltest.zip" in out
    assert str(tmp_path / "cs") in out
    with pytest.raises(PixelsegError, match="account"):
        D.fetch("cityscapes", tmp_path)
    assert D.DATASETS["voc"].checksum == "md5:6cd6e144f989b92b3379bac3b3de84fd"
    with pytest.raises(PixelsegError, match="md5:<hex>"):
        D.download("http://127.0.0.1:9/x", tmp_path / "x", "crc:123")


def test_download_cli(server, tmp_path, capsys):
    rc = main(["data", "download", "camvid", "--out", str(tmp_path / "d"), "--url", f"{server.url}/camvid.tgz",
               "--checksum", server.sha256])
    assert rc == 0 and "camvid ready in" in capsys.readouterr().out
    rc = main(["data", "download", "camvid", "--out", str(tmp_path / "e"), "--url", f"{server.url}/missing.tgz"])
    assert rc == 2 and "404" in capsys.readouterr().err
