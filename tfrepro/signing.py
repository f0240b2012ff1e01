"""Signed run records: `ssh-keygen -Y sign` over the canonical record, checked on replay.

No tracker keeps an author per tag, so anyone who can write to the server can rewrite a
run. A signature made with the recording user's SSH key (git's `user.signingkey` with
`gpg.format=ssh`, or TFREPRO_SIGNING_KEY) and checked against an `allowed_signers` file (git's
format) tells the replaying user who wrote what they are about to run:

    canonical(run_id, tags, environment_json, launch_json, patch) -> bytes      (pure)
    sign(data, key) -> signature text                                         (ssh-keygen)
    verify(data, signature, allowed_signers) -> Verification                  (ssh-keygen)
    sign_run(client, run_id) / verify_record(record, allowed_signers)          (the run as stored)

The record is launch.json, environment.json, the sha256 of the patch, and every tfrepro.*
tag but the few written after the run (a replay's verdict); JSON with sorted keys, so the
same record gives the same bytes wherever it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Mapping, Optional

from tfrepro import schema

NAMESPACE = "tfrepro"
SIGNATURE_ARTIFACT = "tfrepro/record.sig"
UNSIGNED_TAGS = ("tfrepro.replay.verdict", "tfrepro.replay.detail")  # set after the record is signed
TIMEOUT = 30

TRUSTED, UNSIGNED, UNTRUSTED, MISMATCH = "trusted", "unsigned", "untrusted", "mismatch"


@dataclass(frozen=True)
class Verification:
    status: str  # TRUSTED | UNSIGNED | UNTRUSTED | MISMATCH
    principal: Optional[str] = None
    detail: str = ""

    def line(self) -> str:
        """What the plan and `show` print."""
        if self.status == TRUSTED:
            return "signed by %s (trusted)" % self.principal
        if self.status == UNSIGNED:
            return "unsigned record"
        if self.status == MISMATCH:
            return "signature does not match the record: refusing"
        return "signed, but not by a trusted key (%s)" % self.detail


def _json_or_text(text):
    if not isinstance(text, str):
        return text  # already parsed (the loader's launch and environment_json)
    try:
        return json.loads(text)
    except ValueError:
        return text


def canonical(run_id: str, tags: Mapping[str, str], environment_json, launch_json, patch: Optional[str]) -> bytes:
    """environment_json, launch_json: the artifacts' text, or their parsed JSON (None: absent)."""
    record = {
        "format": 1,
        "run_id": run_id,
        "tags": {k: str(v) for k, v in sorted(tags.items()) if k.startswith("tfrepro.") and k not in UNSIGNED_TAGS},
        "environment": _json_or_text(environment_json),
        "launch": _json_or_text(launch_json),
        "patch_sha256": hashlib.sha256(patch.encode("utf-8", "surrogateescape")).hexdigest() if patch else None,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape"
    )


# -- which key -------------------------------------------------------------------------------


def _git_config(name: str, cwd: Optional[str]) -> str:
    try:
        out = subprocess.run(["git", "config", "--get", name], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def signing_key(environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None) -> Optional[str]:
    """TFREPRO_SIGNING_KEY, else git's user.signingkey when gpg.format is ssh (a key file, a
    public key whose private half is in ssh-agent, or `key::ssh-ed25519 AAAA...`); or None."""
    environ = os.environ if environ is None else environ
    key = environ.get(schema.ENV_SIGNING_KEY, "").strip()
    if not key and _git_config("gpg.format", cwd) == "ssh":
        key = _git_config("user.signingkey", cwd)
    return key or None


def allowed_signers_file(
    option: Optional[str] = None, environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None
) -> Optional[str]:
    """--allowed-signers, else TFREPRO_ALLOWED_SIGNERS, else git's gpg.ssh.allowedSignersFile."""
    environ = os.environ if environ is None else environ
    path = option or environ.get(schema.ENV_ALLOWED_SIGNERS) or _git_config("gpg.ssh.allowedSignersFile", cwd)
    return os.path.expanduser(path) if path else None


# -- ssh-keygen ------------------------------------------------------------------------------


def _ssh_keygen(args, data: bytes = b""):
    # a new session: no controlling terminal, so a passphrase prompt fails instead of hanging
    return subprocess.run(
        ["ssh-keygen"] + list(args),
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        start_new_session=True,
        env=dict(os.environ, SSH_ASKPASS_REQUIRE="never"),
    )


def _first_line(raw: bytes) -> str:
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def sign(data: bytes, key: str) -> str:
    """The armored SSH signature of `data`. Raises RuntimeError with one line on failure."""
    with tempfile.TemporaryDirectory(prefix="tfrepro-sign-") as tmp:
        if key.startswith("key::"):
            path = os.path.join(tmp, "key.pub")
            with open(path, "w") as f:
                f.write(key[len("key::") :].strip() + "\n")
            key = path
        try:
            out = _ssh_keygen(["-Y", "sign", "-n", NAMESPACE, "-f", os.path.expanduser(key), "-q"], data)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError("ssh-keygen: %s" % exc) from None
        if out.returncode != 0 or b"BEGIN SSH SIGNATURE" not in out.stdout:
            raise RuntimeError("ssh-keygen -Y sign failed: %s" % _first_line(out.stderr))
        return out.stdout.decode("ascii")


def verify(data: bytes, signature: Optional[str], allowed_signers: Optional[str]) -> Verification:
    if not signature or not signature.strip():
        return Verification(UNSIGNED)
    with tempfile.TemporaryDirectory(prefix="tfrepro-verify-") as tmp:
        sig = os.path.join(tmp, "record.sig")
        with open(sig, "w") as f:
            f.write(signature)
        try:
            return _verify(data, sig, allowed_signers)
        except (OSError, subprocess.SubprocessError) as exc:
            return Verification(UNTRUSTED, detail="cannot check it: %s" % exc)


def _verify(data: bytes, sig: str, allowed_signers: Optional[str]) -> Verification:
    principals = []
    if allowed_signers and os.path.isfile(allowed_signers):
        found = _ssh_keygen(["-Y", "find-principals", "-s", sig, "-f", allowed_signers])
        if found.returncode == 0:
            principals = [p for p in found.stdout.decode("utf-8", "replace").split() if p]
    for principal in principals:
        out = _ssh_keygen(["-Y", "verify", "-f", allowed_signers, "-I", principal, "-n", NAMESPACE, "-s", sig], data)
        if out.returncode == 0:
            return Verification(TRUSTED, principal)
    if principals:  # a trusted key's signature over other bytes: the record was changed
        return Verification(MISMATCH, principals[0])
    valid = _ssh_keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", sig], data)
    if valid.returncode != 0:
        return Verification(MISMATCH, detail=_first_line(valid.stderr))
    if not allowed_signers:
        return Verification(
            UNTRUSTED, detail="no allowed_signers file: pass --allowed-signers or set TFREPRO_ALLOWED_SIGNERS"
        )
    if not os.path.isfile(allowed_signers):
        return Verification(UNTRUSTED, detail="allowed_signers file %s not found" % allowed_signers)
    return Verification(UNTRUSTED, detail="the key is not in %s" % allowed_signers)


# -- the run as stored ---------------------------------------------------------------------


def record_bytes(record) -> bytes:
    """The canonical bytes of a tracking.record.RunRecord, as read back from the server."""
    environment = record.environment_json if record.source == "artifact" else None
    return canonical(record.run_id, record.tags, environment, record.launch, record.patch)


def verify_record(record, allowed_signers: Optional[str]) -> Verification:
    return verify(record_bytes(record), record.signature, allowed_signers)


def sign_run(client, run_id: str, key: Optional[str] = None, warn=None) -> bool:
    """Sign run `run_id` as the server holds it now and upload the signature, when there is a
    signing key. Never raises: a failure is passed to `warn` (one line) and False returned."""
    key = key or signing_key()
    if not key:
        return False
    try:
        from tfrepro import schema
        from tfrepro.tracking import record as run_record

        signature = sign(record_bytes(run_record.load(client, run_id)), key)
        client.log_text(run_id, signature, schema.RECORD_SIGNATURE)
        return True
    except Exception as exc:
        if warn is not None:
            warn("run %s not signed: %s" % (run_id, (str(exc).strip().splitlines() or ["?"])[0]))
        return False


def sign_session(session) -> None:
    """The callback, at train end: with a signing key, sign the run its session wrote (once the
    server has it all: a spooled run is not signed)."""
    key = signing_key()
    if key and getattr(session, "online", False) and not str(session.run_id).startswith("local-"):
        import logging

        from mlflow.tracking import MlflowClient

        sign_run(
            MlflowClient(), session.run_id, key, warn=lambda m: logging.getLogger("tfrepro").warning("tfrepro: %s", m)
        )
