"""The docs' samples name only commands, options and tags that exist; the README stays short.

Every `tfrepro COMMAND --option` written in README.md or docs/**/*.md (in a code block, an
indented block or an inline code span) is checked against the click command tree
(tfrepro.cli.cli), every `tfrepro.*` tag against tfrepro/schema.py, and every relative link in
the README against the tree. Fast: no services, no TensorFlow, no MLflow.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tfrepro import schema
from tfrepro.cli import cli

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
DOCS = [README] + PAGES
README_MAX_LINES = 150

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"(`+)(.+?)\1")
_CALL = re.compile(r"(?:^|[\s$(`'\"])tfrepro\s+([a-z][a-z0-9-]*)\b(.*)$")
_STOP = {"&&", "||", ";", "#", ">", ">>", "2>&1", "<"}


def code_snippets(text: str):
    """(line number, code) for each line of a fenced or indented block and each inline span;
    a block's backslash-continued lines are joined."""
    in_fence, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence or line.startswith("    "):
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
            continue
        for match in _INLINE.finditer(line):
            yield number, match.group(2)


def _words(rest: str):
    try:
        return shlex.split(rest, comments=False)
    except ValueError:  # an unbalanced quote in a cut sample line ("...")
        return rest.split()


def invocations(text: str):
    """(line, command, [options]) for each `tfrepro COMMAND ...` in the page's code."""
    for number, code in code_snippets(text):
        for match in _CALL.finditer(code):
            command, rest = match.group(1), match.group(2).split("`", 1)[0]  # a span quoted in output
            words = _words(rest)
            yield number, command, words


def _option_words(command: click.Command, words):
    """The options a sample gives `command`: stops at `--` (CMD follows) and at shell syntax;
    skips each option's value, and the [ ] | ... of usage lines."""
    takes_value = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in param.opts + param.secondary_opts:
                takes_value[name] = not param.is_flag and not param.count
    found, skip = [], False
    words = list(words)
    for index, raw in enumerate(words):
        word = raw.strip("[](),.;:'\"`")
        if skip:
            skip = False
            continue
        if raw in _STOP or raw.startswith("#"):
            break
        if raw == "|" or raw.startswith("|"):
            following = words[index + 1] if index + 1 < len(words) else ""
            if not following.lstrip("[").startswith("-"):
                break  # a shell pipe, not the | of a usage line
            continue
        if word in ("--", ""):
            if word == "--":
                break
            continue
        if word.startswith("-") and not re.match(r"^-\d", word):
            name = word.split("=", 1)[0]
            found.append(name)
            if "=" not in word and takes_value.get(name):
                skip = True
    return found


def _samples():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for number, command, words in invocations(text):
            yield "%s:%d" % (path.relative_to(ROOT), number), command, words


def test_every_command_and_option_named_in_the_docs_exists():
    problems, checked = [], 0
    for where, command_name, words in _samples():
        command = cli.commands.get(command_name)
        if command is None:
            problems.append("%s: tfrepro %s: no such command" % (where, command_name))
            continue
        known = {
            name
            for param in command.params
            for name in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
        }
        known |= {"-h", "--help"}
        for option in _option_words(command, words):
            checked += 1
            if option not in known:
                problems.append("%s: tfrepro %s has no option %s" % (where, command_name, option))
    assert not problems, "\n".join(problems)
    assert checked > 50, "the sample parser found only %d options: is it still reading the docs?" % checked


def test_the_option_parser_reads_usage_lines_and_stops_at_the_command():
    run = cli.commands["run"]
    line = "--image REF [--gpus all|N|none] [-e K=V | -e K]... [--on docker|podman] -- python train.py --epochs 2"
    assert _option_words(run, shlex.split(line)) == ["--image", "--gpus", "-e", "-e", "--on"]
    assert _option_words(run, ["--sbatch-arg", "--OPT=VALUE", "--dry-run"]) == ["--sbatch-arg", "--dry-run"]
    show = cli.commands["show"]
    assert _option_words(show, shlex.split("RUN | head -6")) == []


_TAG = re.compile(r"`[^`]*?\b(tfrepro\.[a-z0-9_.<>*]+)")
_PREFIXES = (
    schema.PACKAGE_PREFIX,
    schema.DATA_PREFIX,
    schema.INPUT_PREFIX,
    schema.LAUNCH_PREFIX,
    schema.SCHEDULER_PREFIX,
    schema.GIT_PREFIX,
)


def _is_python_name(name: str, after: str) -> bool:
    """tfrepro.autolog() or tfrepro.tracking.session: code, not a tag."""
    if after.startswith("("):
        return True
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def test_every_tag_named_in_the_docs_is_in_the_schema():
    # every name schema.py spells: the public TAG_KEYS, and the tags and labels outside it
    keys = set(schema.TAG_KEYS) | {value for value in vars(schema).values() if isinstance(value, str)}
    problems = []
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _TAG.finditer(line):
                name = match.group(1).rstrip(".")
                after = line[match.end(1) :]
                if name in keys or _is_python_name(name, after):
                    continue
                stem = name.split("<", 1)[0].split("*", 1)[0]
                if any(stem.startswith(prefix) or prefix.startswith(stem) for prefix in _PREFIXES) and stem:
                    continue
                if any(key.startswith(stem) for key in keys) and stem.endswith("."):
                    continue
                problems.append("%s:%d: %s is not a key of tfrepro/schema.py" % (path.relative_to(ROOT), number, name))
    assert not problems, "\n".join(problems)


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, "README.md has %d lines; move detail into docs/" % len(lines)


def test_the_readme_keeps_the_demo_and_test_commands_on_its_first_screen():
    first_screen = README.read_text(encoding="utf-8").splitlines()[:24]
    assert any(line.startswith("bash scripts/demo.sh") for line in first_screen)
    assert any(line.startswith("bash scripts/test.sh") for line in first_screen)


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug, as MkDocs and GitHub (for these headings) make it."""
    text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip()).lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text).strip("-")


@pytest.mark.parametrize("link", sorted(set(_LINK.findall(README.read_text(encoding="utf-8")))))
def test_every_relative_link_in_the_readme_resolves(link):
    if re.match(r"^[a-z]+:", link):
        pytest.skip("absolute URL")
    target, _, anchor = link.partition("#")
    path = (ROOT / target) if target else README
    assert path.exists(), "README.md links to %s, which does not exist" % target
    if anchor and path.suffix == ".md":
        headings = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        assert anchor in {_slug(h) for h in headings}, "%s has no heading for #%s" % (target, anchor)


def test_the_cli_reference_is_generated_from_every_command():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert ":module: tfrepro.cli" in page and ":command: cli" in page
    assert cli.commands, "no commands registered"


def test_the_built_cli_reference_lists_every_command_and_option(tmp_path):
    """The strict build passes, and its CLI page has every command and option of `--help`."""
    pytest.importorskip("mkdocs", reason="the docs tools: pip install -e '.[docs]'")
    pytest.importorskip("mkdocs_click", reason="the docs tools: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        assert "tfrepro %s" % name in page, name
        for param in command.params:
            for option in param.opts if isinstance(param, click.Option) else ():
                assert option in page, "tfrepro %s %s is missing from the CLI reference" % (name, option)
