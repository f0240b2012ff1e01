"""Real git transports on 127.0.0.1 for "replay from another machine" tests.

GitDaemon: `git daemon` serving bare repositories (git://, no auth).
GitHttp: `git http-backend` (CGI) behind a small HTTP server that demands Basic auth,
standing in for a private remote (GitHub/GitLab over https with a token).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers.ports import free_port


def bare_clone(repo, base: Path, name: str = "repo.git") -> Path:
    """Publish `repo` (all its branches) as base/name, a bare repository."""
    base.mkdir(parents=True, exist_ok=True)
    target = base / name
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(target)], check=True)
    return target


class GitDaemon:
    def __init__(self, base: Path):
        self.base, self.port, self.proc = Path(base), free_port(), None

    def url(self, name: str = "repo.git") -> str:
        return "git://127.0.0.1:%d/%s" % (self.port, name)

    def start(self) -> "GitDaemon":
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                "--port=%d" % self.port,
                "--base-path=%s" % self.base,
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("git daemon did not listen on %d" % self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class GitHttp:
    """Smart HTTP with Basic auth (user, password); `requests` counts what it served."""

    def __init__(self, base: Path, user: str, password: str):
        self.base, self.port = Path(base), free_port()
        self.expected = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.requests = {"authorized": 0, "refused": 0}
        self.server = None

    def url(self, name: str = "repo.git") -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def start(self) -> "GitHttp":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve()

            def do_POST(self):
                self._serve()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self):
                if self.headers.get("Authorization") != owner.expected:
                    owner.requests["refused"] += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                owner.requests["authorized"] += 1
                path, _, query = self.path.partition("?")
                body = self._body() if self.command == "POST" else b""
                env = dict(
                    os.environ,
                    GIT_PROJECT_ROOT=str(owner.base),
                    GIT_HTTP_EXPORT_ALL="1",
                    PATH_INFO=path,
                    QUERY_STRING=query,
                    REQUEST_METHOD=self.command,
                    CONTENT_TYPE=self.headers.get("Content-Type", ""),
                    CONTENT_LENGTH=str(len(body)),
                    REMOTE_USER="git",
                    REMOTE_ADDR="127.0.0.1",
                    HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                    GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                )
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
