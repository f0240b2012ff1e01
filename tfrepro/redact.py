"""What must never be stored or printed: one rule for secret names, values and URLs. Pure.

    is_secret("HF_TOKEN") -> True               an environment variable name
    looks_secret_value("ghp_...") -> True        a known token prefix, or URL userinfo
    strip_url_credentials("http://u:p@h/") -> "http://h/"
    redact_argv(["train.py", "--password", "x"]) -> ["train.py", "--password", "<redacted>"]
    split_env({"A": "1", "DB_URL": "postgres://u:p@h/x"}) -> ({"A": "1"}, [("DB_URL", "...")])
    patch_withheld(log_patch)                    the user keeps uncommitted code off the server

Container-side code imports this module too: Python 3.8, standard library only.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tfrepro import schema

REDACTED = "<redacted>"
# A variable whose name holds one of these is secret: its value is neither recorded (NGC
# variables, launch.json) nor printed (the shown `docker run` line); only its name is.
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSW", "CRED", "AUTH", "PRIVATE", "COOKIE", "SESSION")
TOKEN_PREFIXES = ("ghp_", "gho_", "github_pat_", "glpat-", "hf_", "AKIA", "xox", "sk-")

# A known token prefix at the start of a word, followed by enough token characters that
# "sk-learn" or "hf_home" are not taken for keys.
_TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:%s)[A-Za-z0-9_\-]{12,}"
    % "|".join(re.escape(p) if p != "xox" else r"xox[a-z]?-" for p in TOKEN_PREFIXES)
)
# scheme://userinfo@host: the userinfo is a credential (a token as user name counts too)
_USERINFO_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s@]+@")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)$", re.S)  # scheme, authority, rest
_FLAG_RE = re.compile(r"^-{1,2}([A-Za-z][A-Za-z0-9_.\-]*)(=.*)?$", re.S)
# flag names: any of these anywhere in the name is a secret ...
_FLAG_ANYWHERE = ("password", "passwd", "secret", "apikey", "api_key", "api-key", "credential")
# ... these only as the name's last word, so --max-tokens, --key-dim or --author stay
_FLAG_LAST_WORD = ("token", "key", "auth", "credentials", "pat")


def is_secret(name: str) -> bool:
    """An environment variable name whose value must not be recorded."""
    upper = str(name).upper()
    return any(word in upper for word in SECRET_WORDS)


def has_url_credentials(value: str) -> bool:
    return bool(_USERINFO_RE.search(str(value)))


def has_token(value: str) -> bool:
    return bool(_TOKEN_RE.search(str(value)))


def looks_secret_value(value: str) -> bool:
    return has_url_credentials(value) or has_token(value)


def strip_url_credentials(url: str, keep_user: bool = False) -> str:
    """`url` without the `user:password@` of its authority.

    keep_user (git remotes): keep the user name, not the password, of a non-http URL.
    ssh://git@host/x.git names the account the server expects, and replay fetches from it
    again; an http(s) user name is often a token (https://ghp_...@github.com), so it always
    goes. scp-style remotes (git@host:x.git) and local paths have no credentials to strip.
    """
    match = _URL.match(url or "")
    if not match or "@" not in match.group(2):
        return url
    scheme, authority, rest = match.groups()
    userinfo, host = authority.rsplit("@", 1)
    if keep_user and scheme.lower() not in ("http", "https"):
        host = userinfo.split(":", 1)[0] + "@" + host
    return "%s://%s%s" % (scheme, host, rest)


def is_secret_flag(flag_name: str) -> bool:
    """A command-line flag name (without dashes) whose value is a secret."""
    name = flag_name.lower()
    if any(word in name for word in _FLAG_ANYWHERE):
        return True
    words = [w for w in re.split(r"[-_.]", name) if w]
    return bool(words) and words[-1] in _FLAG_LAST_WORD


def redact_argv(argv: Sequence[str]) -> List[str]:
    """argv with the values of secret-looking flags replaced by REDACTED, in both
    `--flag=value` and `--flag value` forms; URL credentials and known tokens anywhere
    else are removed too. The result has as many items as argv."""
    out: List[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            hide_next = False
            if not arg.startswith("-") or arg == "-":
                out.append(REDACTED)
                continue
        match = _FLAG_RE.match(arg)
        if match and is_secret_flag(match.group(1)):
            if match.group(2) is None:
                hide_next = True
                out.append(arg)
            else:
                out.append(arg[: match.start(2)] + "=" + REDACTED)
            continue
        out.append(redact_text(arg))
    return out


def redact_text(text: str) -> str:
    """Free text with URL credentials stripped and known tokens replaced."""
    text = _USERINFO_RE.sub(lambda m: m.group(0).split("://", 1)[0] + "://", text) if "@" in text else text
    return _TOKEN_RE.sub(REDACTED, text)


def secret_reason(name: str, value) -> str:
    """Why an environment entry must not be recorded ("" when it may be)."""
    if is_secret(name):
        return "secret-looking name"
    if value is not None and has_url_credentials(value):
        return "URL with credentials"
    if value is not None and has_token(value):
        return "token-like value"
    return ""


def split_env(env: Mapping[str, str]) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    """-e values -> (those that may be recorded, [(name, why dropped)])."""
    kept: Dict[str, str] = {}
    dropped: List[Tuple[str, str]] = []
    for name in sorted(env):
        reason = secret_reason(name, env[name])
        if reason:
            dropped.append((name, reason))
        else:
            kept[name] = env[name]
    return kept, dropped


def patch_withheld(log_patch: bool = True, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the uncommitted patch stays off the server: log_patch=False or TFREPRO_NO_PATCH=1."""
    import os

    value = (os.environ if environ is None else environ).get(schema.ENV_NO_PATCH, "")
    return not log_patch or value.strip().lower() in ("1", "true", "yes")
