"""A recorded command holding newlines cannot forge whole lines on the replaying user's
terminal: neither in the plan (`replay --dry-run`) nor while the replay runs (`replay --yes`).

Run as a user sees it: `python -m tfrepro` on a real pseudo-terminal, against a real
`mlflow server`, replaying (for --yes, in the real test image) a record crafted through
MlflowClient by anyone with write access.
"""

import json
import os

import pytest

from tests.helpers.terminal import run_on_tty

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CRAFTED = "FAKE LINE C: tfrepro: all checks passed"
COMMAND = ["python", "-c", "print('trained')", "x\n  " + CRAFTED, "y\r" + CRAFTED, "z\n" + CRAFTED]


def forged(screen):
    """Lines of the terminal that start with the crafted text (after any indentation)."""
    lines = screen.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line for line in lines if line.lstrip().startswith(CRAFTED)]


@pytest.mark.parametrize("mode", ["--dry-run", "--yes"])
def test_a_recorded_newline_starts_no_line(tampered, mlflow_server, mode):
    run_id = tampered(tags={"tfrepro.command": json.dumps(COMMAND)})
    code, screen = run_on_tty(
        ["replay", run_id, mode, "--gpus", "none", "--tracking-uri", mlflow_server.uri],
        env=dict(os.environ),
        cwd=os.getcwd(),
    )
    assert code in (0, 1), screen  # planned, or replayed (reproduced or not): it ran as asked
    assert CRAFTED in screen, screen  # shown, escaped, on the line of the command it belongs to
    assert forged(screen) == [], screen
    if mode == "--yes":
        assert "trained" in screen, screen
