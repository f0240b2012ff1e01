"""What `tfrepro`'s CLI printed, as tests check it."""

from tfrepro.cli import status


def one_error(capsys, code, expected_code=status.REFUSED):
    """Exactly one error line, and the exit code of its kind (tfrepro/cli/status.py); anything
    else on stderr is tfrepro's own progress or warnings."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("tfrepro: error: ")]
    assert code == expected_code, err
    assert "Traceback" not in err
    assert len(errors) == 1 and all(line.startswith("tfrepro: ") for line in lines), err
    return errors[0]
