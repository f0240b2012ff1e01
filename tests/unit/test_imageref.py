"""imageref.py: the loose checks a fingerprint records with, the strict ones a launcher runs with."""

import pytest

from tfrepro import imageref
from tfrepro.errors import RecordError, UsageError

DIGEST = "sha256:" + "ab" * 32
REF = "127.0.0.1:5555/tfrepro-test@" + DIGEST


def test_digest_validation():
    assert imageref.check_digest_ref(REF) == REF
    for bad in [
        "127.0.0.1:5555/x@sha256:abc",
        "x:latest",
        "x@sha256:" + "AB" * 32,
        "-x@" + DIGEST,
        "x:tag@" + DIGEST,
        "",
        "x@sha512:" + "a" * 128,
    ]:
        with pytest.raises(RecordError):
            imageref.check_digest_ref(bad, RecordError)


def test_image_refs():
    assert imageref.split("127.0.0.1:5555/a/b:1.0") == ("127.0.0.1:5555/a/b", "1.0", None)
    assert imageref.split("127.0.0.1:5555/a") == ("127.0.0.1:5555/a", None, None)
    assert imageref.split(REF) == ("127.0.0.1:5555/tfrepro-test", None, DIGEST)
    assert imageref.repository("host:5000/a/b:tag") == imageref.repository("host:5000/a/b@" + DIGEST) == "host:5000/a/b"
    imageref.check_image_ref("nvcr.io/nvidia/tensorflow:22.07-tf2-py3")
    for bad in ["--privileged", "a b", "x:$(id)"]:
        with pytest.raises(UsageError):
            imageref.check_image_ref(bad)


def test_recording_is_loose_where_launching_is_strict():
    odd = "-odd repo name@" + DIGEST  # a runtime may report it; Docker must never be handed it
    assert imageref.is_digest_ref("any/repo:with-tag@" + DIGEST) and not imageref.is_digest_ref("x@sha256:abc")
    with pytest.raises(RecordError):
        imageref.check_digest_ref(odd, RecordError)
    assert imageref.image_id("ab" * 32) == DIGEST == imageref.image_id(" %s\n" % DIGEST)
    assert imageref.image_id("nope") is None
    assert imageref.is_image_id(DIGEST) and not imageref.is_image_id("ab" * 32)
    with pytest.raises(UsageError):
        imageref.check_image_id("ab" * 32)
