"""What tfrepro never records or shows: values of secret-looking variables, URL credentials.

Pure. Python 3.8 compatible: the fingerprint uses it inside the containers.
"""
from __future__ import annotations

import re

# A variable whose name holds one of these is secret: its value is neither recorded (NGC
# variables, launch.json) nor printed (the shown `docker run` line); only its name is.
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSW", "CRED", "AUTH", "PRIVATE", "COOKIE", "SESSION")

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)$", re.S)  # scheme, authority, rest


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def strip_url_credentials(url: str, keep_user: bool = False) -> str:
    """`url` without the `user:password@` of its authority.

    keep_user (git remotes): keep the user name, not the password, of a non-http URL.
    ssh://git@host/x.git names the account the server expects, and replay fetches from it
    again; an http(s) user name is often a token (https://ghp_...@github.com), so it always
    goes. scp-style remotes (git@host:x.git) and local paths have no credentials to strip.
    """
    match = _URL.match(url)
    if not match or "@" not in match.group(2):
        return url
    scheme, authority, rest = match.groups()
    userinfo, host = authority.rsplit("@", 1)
    if keep_user and scheme.lower() not in ("http", "https"):
        host = userinfo.split(":", 1)[0] + "@" + host
    return "%s://%s%s" % (scheme, host, rest)
