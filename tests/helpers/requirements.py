"""What a test needs from the machine, and what happens when it is not there: a skip locally,
a failure under CI (TFREPRO_REQUIRE_DOCKER=1), so a missing engine never passes."""

import os

import pytest

REQUIRE_DOCKER = os.environ.get("TFREPRO_REQUIRE_DOCKER") == "1"


def missing(reason):
    """Skip locally; fail under CI (TFREPRO_REQUIRE_DOCKER=1) so a missing engine never passes."""
    if REQUIRE_DOCKER:
        pytest.fail("required but missing: " + reason, pytrace=False)
    pytest.skip(reason)
