"""replay/repeat.py: the table printed with a --repeat verdict."""

from tfrepro.replay import noise
from tfrepro.replay import repeat as R


def history(loss):
    return {"loss": [(0, 1.0), (1, loss)]}


def test_table_rows_and_outside_mark():
    replays = [history(v) for v in (0.101, 0.098, 0.103, 0.099, 0.100)]
    text = R.render(noise.judge_repeats(history(1.0), replays))
    lines = text.splitlines()
    assert lines[0] == "final metrics of the original against 5 replays:"
    assert lines[1].split() == ["metric", "original", "mean", "sd", "99%", "interval", "z"]
    assert lines[2].split()[:4] == ["loss", "1", "0.1002", "0.00192"] and lines[2].endswith("outside")
    assert R.render(noise.judge_repeats(history(0.1), [history(0.1)] * 2)) == "", "identical: no statistics"
