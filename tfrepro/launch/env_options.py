"""-e NAME[=VALUE] and --pass-env NAME, as `tfrepro run` and `tfrepro replay` take them. Pure:
the environment to read is passed in."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tfrepro.errors import UsageError
from tfrepro.launch.spec import ENV_NAME_RE


def parse_env_options(
    items: Sequence[str], pass_env: Sequence[str], environ: Mapping[str, str]
) -> Tuple[Dict[str, str], Tuple[str, ...]]:
    """--pass-env NAME and -e NAME[=VALUE] -> (values, names taken from `environ`)."""
    values: Dict[str, str] = {}
    passed: List[str] = []
    wanted: List[Tuple[str, Optional[str]]] = [
        (item.partition("=")[0], item.partition("=")[2] if "=" in item else None) for item in items
    ]
    for name in pass_env:
        if "=" in name:
            raise UsageError("--pass-env takes a name, not %r (use -e NAME=VALUE)" % name)
        wanted.append((name, None))
    for name, value in wanted:
        if not ENV_NAME_RE.match(name):
            raise UsageError("%r is not a valid environment variable name" % name)
        if value is None:  # -e NAME / --pass-env NAME: this environment's value, as docker does
            if name not in environ:
                raise UsageError("%s: not set in this environment (use -e %s=VALUE)" % (name, name))
            value = environ[name]
            passed.append(name)
        values[name] = value
    return values, tuple(dict.fromkeys(passed))
