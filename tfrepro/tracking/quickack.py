"""ACK the tracking server's replies at once, so keep-alive requests do not stall ~40 ms.

MLflow 3's server runs uvicorn; with `--workers N` (N > 1) uvicorn binds the listening
socket itself and its connections lose TCP_NODELAY (uvicorn#3149). It writes a reply's
headers and body as two segments, so on a reused connection the body waits for our ACK of
the headers, which Linux delays ~40 ms: every MLflow call after a connection's first costs
~43 ms instead of ~5 (measured: benchmarks/README.md, "Costs of a fit"). Asking the kernel
for an immediate ACK (TCP_QUICKACK) before reading a reply removes the stall; it changes
nothing else on the wire. Only connections to the tracking server's host and port get it,
only on Linux; TFREPRO_QUICKACK=0 turns it off.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from typing import Set, Tuple
from urllib.parse import urlparse

from tfrepro import schema

_hosts: Set[Tuple[str, int]] = set()
_lock = threading.Lock()
_real_getresponse = None
DEFAULT_PORTS = {"http": 80, "https": 443}


def enable(tracking_uri: str) -> bool:
    """Quick ACKs on connections to this http(s) tracking URI's host. True when on."""
    option = getattr(socket, "TCP_QUICKACK", None)
    if option is None or os.environ.get(schema.ENV_QUICKACK, "1") == "0":
        return False
    url = urlparse(tracking_uri or "")
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        return False
    try:
        port = url.port or DEFAULT_PORTS[url.scheme]
    except ValueError:  # a port that is not a number: MLflow reports it
        return False
    global _real_getresponse
    with _lock:
        _hosts.add((url.hostname.lower(), port))
        if http.client.HTTPConnection.getresponse is not _getresponse:  # once, whatever came before
            _real_getresponse = http.client.HTTPConnection.getresponse
            http.client.HTTPConnection.getresponse = _getresponse
    return True


def _getresponse(self, *args, **kwargs):
    sock = getattr(self, "sock", None)
    if sock is not None and _hosts:
        try:
            if (str(self.host).lower(), int(self.port or 0)) in _hosts:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, ValueError, TypeError):
            pass
    return _real_getresponse(self, *args, **kwargs)
