"""How long a data fingerprint takes: the default (path, size, mtime) against --hash-data (sha256),
for a mounted folder and for the same folder as data beside the code (untracked in a git repository).

    python benchmarks/data_fingerprint.py [--files 10000 100000] [--bytes 10e9] [--repeat 3] [--beside-only] [--no-write]

For each file count, builds a tree of that many sparse files (`truncate`: no disk used) in
100 folders, totalling --bytes (10 GB by default), and times `tfrepro.fingerprint.data.scan`
on it: the default (median of --repeat runs, each in a fresh process so nothing is cached in
Python) and with hash_data=True (one run: it reads every byte; a sparse file reads as zeros
from the page cache, so this is the CPU cost of sha256, a lower bound for data on a disk).
The tree was just written, so the kernel's inode cache is warm: a cold cache on a network
filesystem is slower. The same tree is then the untracked `data/` folder of a git repository,
and `tfrepro.fingerprint.untracked.collect` is timed on it (git's listing included): what
`tfrepro run` adds before the container starts, and again after it exits (the rescan that marks
outputs). Writes its table into benchmarks/README.md unless --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- data_fingerprint: last run -->", "<!-- data_fingerprint: end -->"
BESIDE_BEGIN, BESIDE_END = "<!-- data_fingerprint beside: last run -->", "<!-- data_fingerprint beside: end -->"

SCAN = r"""
import json, resource, sys, time
from tfrepro.fingerprint import data, untracked
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)  # git's listing
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime
t, c = time.perf_counter(), cpu()
if sys.argv[2] == "beside":
    s = untracked.collect(sys.argv[1], "/workspace").sources[0]
else:
    s = data.scan(sys.argv[1], hash_data=sys.argv[2] == "1")
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": cpu() - c, "files": s.files, "bytes": s.bytes,
                  "summarised": s.summarised, "hash": s.hash}))
"""


def make_repo(root: str) -> None:
    """A git repository with one commit; the tree under data/ stays untracked."""

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"] + list(args),
            cwd=root,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    with open(os.path.join(root, "train.py"), "w") as fh:
        fh.write("print('train')\n")
    git("init", "-q")
    git("add", "train.py")
    git("commit", "-q", "-m", "code")


def make_tree(root: str, files: int, total_bytes: int) -> None:
    size = total_bytes // files
    folders = 100
    for i in range(files):
        folder = os.path.join(root, "part-%03d" % (i % folders))
        if i < folders:
            os.makedirs(folder)
        with open(os.path.join(folder, "shard-%06d.bin" % i), "wb") as fh:
            fh.truncate(size)  # sparse: no blocks on disk


def scan(root: str, hash_data, beside: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE)] + sys.path))
    mode = "beside" if beside else "1" if hash_data else "0"
    out = subprocess.run(
        [sys.executable, "-c", SCAN, root, mode], check=True, stdout=subprocess.PIPE, env=env, universal_newlines=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench(files: int, total_bytes: int, repeat: int, mounts: bool = True) -> dict:
    tmp = tempfile.mkdtemp(prefix="tfrepro-bench-data-")
    repo, tree = os.path.join(tmp, "repo"), os.path.join(tmp, "repo", "data")
    row = {"files": files}
    try:
        t = time.perf_counter()
        make_tree(tree, files, total_bytes)
        row["made"] = time.perf_counter() - t
        if mounts:
            default = [scan(tree, False) for _ in range(repeat)]
            content = scan(tree, True)
            row.update(
                default=statistics.median(r["seconds"] for r in default),
                default_cpu=statistics.median(r["cpu"] for r in default),
                summarised=default[0]["summarised"],
                content=content["seconds"],
                content_cpu=content["cpu"],
            )
        make_repo(repo)
        beside = [scan(repo, False, beside=True) for _ in range(repeat)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert beside[0]["files"] == files
    row.update(
        bytes=beside[0]["bytes"],
        beside=statistics.median(r["seconds"] for r in beside),
        beside_cpu=statistics.median(r["cpu"] for r in beside),
        beside_summarised=beside[0]["summarised"],
    )
    print(json.dumps(row))
    return row


def machine(load: float) -> str:
    return "Last run (%s, %d CPUs, %s, Python %s, load average %.1f at start):" % (
        cpu_model(),
        os.cpu_count() or 1,
        platform.platform(),
        platform.python_version(),
        load,
    )


def table(rows, load: float) -> str:
    lines = [
        machine(load),
        "",
        "| files | total (sparse) | default: path, size, mtime | CPU | per-file detail | --hash-data: sha256 | CPU | read rate |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            "| %d | %.1f GB | %.2f s | %.2f s | %s | %.1f s | %.1f s | %.2f GB/s |"
            % (
                r["files"],
                r["bytes"] / 1e9,
                r["default"],
                r["default_cpu"],
                "summarised (over budget)" if r["summarised"] else "kept",
                r["content"],
                r["content_cpu"],
                r["bytes"] / 1e9 / r["content"],
            )
        )
    return "\n".join(lines)


def beside_table(rows, load: float) -> str:
    lines = [
        machine(load),
        "",
        "| files | total (sparse) | untracked `data/`: git ls-files + path, size, mtime | CPU | per-file detail |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            "| %d | %.1f GB | %.2f s | %.2f s | %s |"
            % (
                r["files"],
                r["bytes"] / 1e9,
                r["beside"],
                r["beside_cpu"],
                "summarised (over budget)" if r["beside_summarised"] else "kept",
            )
        )
    return "\n".join(lines)


def write(text: str, begin: str = BEGIN, end: str = END, title: str = "## data_fingerprint.py") -> None:
    with open(README) as f:
        readme = f.read()
    block = begin + "\n" + text + "\n" + end
    if begin in readme:
        readme = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip("\n") + "\n\n" + title + "\n\n" + block + "\n"
    with open(README, "w") as f:
        f.write(readme)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--bytes", type=float, default=10e9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--beside-only", action="store_true", help="Time only the data beside the code.")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = [bench(n, int(args.bytes), args.repeat, mounts=not args.beside_only) for n in args.files]
    texts = [] if args.beside_only else [(table(rows, load), BEGIN, END, "## data_fingerprint.py")]
    texts.append((beside_table(rows, load), BESIDE_BEGIN, BESIDE_END, "### Data beside the code"))
    for text, begin, end, title in texts:
        print(text)
        if not args.no_write:
            write(text, begin, end, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
