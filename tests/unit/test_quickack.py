"""quickack: an immediate ACK before reading a reply, on connections to the tracking server only."""

import http.client
import http.server
import socket
import threading

import pytest

from tfrepro.tracking import quickack

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")


class Recording:
    """A real socket that notes the options set on it."""

    def __init__(self, sock):
        self._sock, self.options = sock, []

    def setsockopt(self, level, name, value):
        self.options.append((level, name, value))
        return self._sock.setsockopt(level, name, value)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def clean(monkeypatch):
    monkeypatch.setattr(quickack, "_hosts", set())
    # earlier tests in this process may have turned it on: start from http.client's own
    original = quickack._real_getresponse or http.client.HTTPConnection.getresponse
    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", original)
    monkeypatch.setattr(quickack, "_real_getresponse", None)
    monkeypatch.delenv("TFREPRO_QUICKACK", raising=False)


def get_twice(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock = Recording(conn.sock)
    for _ in range(2):  # keep-alive: the second request reuses the connection
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
    options = conn.sock.options
    conn.close()
    return options


def test_only_the_tracking_server_gets_quick_acks(server, clean):
    assert quickack.enable("http://127.0.0.1:%d" % server)
    assert get_twice(server) == [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)] * 2
    quickack._hosts.clear()
    quickack._hosts.add(("127.0.0.1", server + 1))  # another port: untouched
    assert get_twice(server) == []


def test_enable_is_idempotent_and_refuses_what_is_not_http(clean):
    assert quickack.enable("http://Tracking.Example:5000")
    patched = http.client.HTTPConnection.getresponse
    assert quickack.enable("https://tracking.example")
    assert http.client.HTTPConnection.getresponse is patched
    assert quickack._hosts == {("tracking.example", 5000), ("tracking.example", 443)}
    assert not quickack.enable("sqlite:///mlflow.db")
    assert not quickack.enable("http://host:notaport")


def test_turned_off_by_the_environment(clean, monkeypatch):
    monkeypatch.setenv("TFREPRO_QUICKACK", "0")
    assert not quickack.enable("http://127.0.0.1:5000")
    assert quickack._real_getresponse is None


def test_enabling_again_wraps_once(server, clean):
    uri = "http://127.0.0.1:%d" % server
    assert quickack.enable(uri) and quickack.enable(uri)
    assert quickack._real_getresponse is not quickack._getresponse
    assert get_twice(server) == [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)] * 2
