#!/usr/bin/env python3
"""mypy against a baseline: today's errors are allowed, a new one fails.

    mypy | python3 scripts/mypy_baseline.py            # check (what scripts/lint.sh runs)
    mypy | python3 scripts/mypy_baseline.py --update   # after fixing errors: shrink the baseline

An error is matched by its file and message (with its [code]), not its line number, so code
moving around a file does not break the check; the same error twice in a file counts twice.
Errors fixed since the baseline was written are reported (the baseline shrank), and --update
writes the smaller baseline. Standard library only.
"""

import argparse
import collections
import re
import sys
from pathlib import Path

DEFAULT_BASELINE = Path(__file__).resolve().parent.parent / ".mypy-baseline.txt"
# path:line: error: message  [code]   (a column after the line when mypy shows columns)
ERROR = re.compile(r"^(?P<path>[^:\s][^:]*):\d+(?::\d+)?: error: (?P<message>.*)$")
SUMMARY = re.compile(r"^(Success: no issues found|Found \d+ errors?) in \d+ (source )?files?")


def normalize(path, message):
    """The key an error is matched by: its file and message, line numbers removed from both
    (a message can name one: 'Name "x" already defined on line 76')."""
    message = re.sub(r"\bline \d+\b", "line N", message.strip())
    return "%s: %s" % (path.replace("\\", "/"), message)


def parse(text):
    """mypy's output -> (Counter of error keys, whether mypy got as far as its summary)."""
    errors = collections.Counter()
    finished = False
    for line in text.splitlines():
        match = ERROR.match(line)
        if match:
            errors[normalize(match.group("path"), match.group("message"))] += 1
        elif SUMMARY.match(line):
            finished = True
    return errors, finished


def read_baseline(path):
    if not path.exists():
        return collections.Counter()
    lines = path.read_text(encoding="utf-8").splitlines()
    return collections.Counter(line for line in lines if line.strip() and not line.startswith("#"))


def write_baseline(path, errors):
    header = "# mypy errors allowed today (scripts/mypy_baseline.py); no new one may be added. Fix, then --update.\n"
    body = "".join(line + "\n" for line in sorted(errors.elements()))
    path.write_text(header + body, encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--update", action="store_true", help="write the current errors as the new baseline")
    parser.add_argument("output", nargs="?", type=Path, help="mypy's output (default: stdin)")
    args = parser.parse_args(argv)

    text = args.output.read_text(encoding="utf-8") if args.output else sys.stdin.read()
    current, finished = parse(text)
    if not finished:
        sys.stderr.write(text)
        print("mypy-baseline: mypy did not finish (no summary line above): not checked", file=sys.stderr)
        return 2
    baseline = read_baseline(args.baseline)
    new = current - baseline
    fixed = baseline - current
    total_before, total_now = sum(baseline.values()), sum(current.values())

    if args.update:
        if new and args.baseline.exists():
            print("mypy-baseline: warning: %d error(s) not in the old baseline are now allowed:" % sum(new.values()))
            for key in sorted(new.elements()):
                print("  + " + key)
        write_baseline(args.baseline, current)
        print("mypy-baseline: %s: %d -> %d error(s)" % (args.baseline.name, total_before, total_now))
        return 0

    if new:
        print("mypy-baseline: %d new mypy error(s) (not in %s):" % (sum(new.values()), args.baseline.name))
        for line in text.splitlines():
            match = ERROR.match(line)
            if match and normalize(match.group("path"), match.group("message")) in new:
                print("  " + line)
        print("fix them (or, for a deliberate exception, a `# type: ignore[code]` saying why)")
        return 1
    if fixed:
        print(
            "mypy-baseline: the baseline shrank by %d error(s) (%d -> %d); record it with "
            "`mypy | python3 scripts/mypy_baseline.py --update`:" % (sum(fixed.values()), total_before, total_now)
        )
        for key in sorted(fixed.elements()):
            print("  - " + key)
    else:
        print("mypy-baseline: no new errors (%d allowed in %s)" % (total_now, args.baseline.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
