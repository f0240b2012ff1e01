"""Process source: argv as replay would type it."""

import os
import sys

from tfrepro.fingerprint import process


def raw(**kw):
    base = {
        "argv": [],
        "orig_argv": [],
        "main_module": None,
        "main_file": None,
        "cwd": "/work/proj",
        "executable": "/usr/bin/python3.8",
    }
    base.update(kw)
    return base


def test_script_relative_to_cwd():
    info = process.parse(raw(argv=["/work/proj/train.py", "--epochs", "3"], main_file="/work/proj/train.py"))
    assert info.argv == ("python", "train.py", "--epochs", "3")
    assert info.entry_script == "/work/proj/train.py" and info.python_executable == "/usr/bin/python3.8"
    assert process.parse(raw(argv=["src/train.py"])).argv == ("python", "src/train.py")


def test_script_outside_cwd_stays_absolute():
    assert process.parse(raw(argv=["/opt/tools/run.py", "-x"])).argv == ("python", "/opt/tools/run.py", "-x")


def test_python_dash_m_on_38_uses_main_spec():
    info = process.parse(
        raw(
            argv=["/work/proj/pkg/__main__.py", "fit"],
            main_module="pkg.__main__",
            main_file="/work/proj/pkg/__main__.py",
        )
    )
    assert info.argv == ("python", "-m", "pkg", "fit")
    assert process.parse(raw(argv=["/work/proj/train.py"], main_module="train")).argv == ("python", "-m", "train")


def test_dash_c_keeps_code_only_when_orig_argv_has_it():
    assert process.parse(raw(argv=["-c", "a"], orig_argv=["python3", "-c", "print(1)", "a"])).argv == (
        "python",
        "-c",
        "print(1)",
        "a",
    )
    assert process.parse(raw(argv=["-c"])).argv == ("python", "-c", "<code not recorded>")


def test_interactive():
    info = process.parse(raw(argv=[""]))
    assert info.argv == ("python",) and info.entry_script is None


def test_this_process_under_pytest():
    info = process.collect()
    assert info.argv[0] == "python" and info.cwd == os.getcwd() and info.python_executable == sys.executable


def test_secret_flags_are_redacted_before_they_are_recorded():
    info = process.parse(raw(argv=["train.py", "--password=hunter2", "--api-key", "xyz", "--epochs", "3"]))
    assert info.argv == ("python", "train.py", "--password=<redacted>", "--api-key", "<redacted>", "--epochs", "3")
