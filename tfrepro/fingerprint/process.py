"""Process source: the command that started this run, as replay would type it.

argv starts with "python" (the interpreter's path differs inside the replay container),
then the script relative to cwd, or `-m module`, then the arguments. Values of secret-looking
flags (--password=..., --api-key ...) are redacted: the argv goes to a shared server.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

from tfrepro.environment import ProcessInfo
from tfrepro.redact import redact_argv

INTERPRETER = "python"


def query() -> Dict[str, Any]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {
        "argv": list(sys.argv),
        # Python >= 3.10 keeps the command line as typed, interpreter options included
        "orig_argv": list(getattr(sys, "orig_argv", []) or []),
        "main_module": getattr(spec, "name", None),
        "main_file": getattr(main, "__file__", None),
        "cwd": os.getcwd(),
        "executable": sys.executable,
    }


def _relative(path: str, cwd: str) -> str:
    absolute = os.path.abspath(os.path.join(cwd, path))
    rel = os.path.relpath(absolute, cwd)
    return absolute if rel.startswith("..") else rel


def _module_name(spec_name: Optional[str]) -> Optional[str]:
    if not spec_name:
        return None
    # `python -m pkg` runs pkg.__main__; the user typed `pkg`
    return spec_name[: -len(".__main__")] if spec_name.endswith(".__main__") else spec_name


def parse(raw: Dict[str, Any]) -> ProcessInfo:
    argv: List[str] = list(raw.get("argv") or [])
    orig: List[str] = list(raw.get("orig_argv") or [])
    cwd = str(raw.get("cwd") or "")
    module = _module_name(raw.get("main_module"))
    main_file = raw.get("main_file")
    head = argv[0] if argv else ""
    if module and module != "__main__":
        command = [INTERPRETER, "-m", module] + argv[1:]
        entry = main_file
    elif head == "-c":
        # the code itself is only kept by Python >= 3.10 (orig_argv)
        code = orig[orig.index("-c") + 1] if "-c" in orig[:-1] else "<code not recorded>"
        command = [INTERPRETER, "-c", code] + argv[1:]
        entry = None
    elif head:
        command = [INTERPRETER, _relative(head, cwd)] + argv[1:]
        entry = os.path.abspath(os.path.join(cwd, head))
    else:  # interactive interpreter, or embedded
        command = [INTERPRETER] + argv[1:]
        entry = None
    return ProcessInfo(
        argv=tuple(redact_argv(command)),
        cwd=cwd,
        entry_script=entry,
        python_executable=str(raw.get("executable") or ""),
    )


def collect() -> ProcessInfo:
    return parse(query())
