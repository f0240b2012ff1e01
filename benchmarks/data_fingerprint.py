"""How long a data fingerprint takes: the default (path, size, mtime) against --hash-data (sha256).

    python benchmarks/data_fingerprint.py [--files 10000 100000] [--bytes 10e9] [--repeat 3] [--no-write]

For each file count, builds a tree of that many sparse files (`truncate`: no disk used) in
100 folders, totalling --bytes (10 GB by default), and times `tfrepro.fingerprint.data.scan`
on it: the default (median of --repeat runs, each in a fresh process so nothing is cached in
Python) and with hash_data=True (one run: it reads every byte; a sparse file reads as zeros
from the page cache, so this is the CPU cost of sha256, a lower bound for data on a disk).
The tree was just written, so the kernel's inode cache is warm: a cold cache on a network
filesystem is slower. Writes its table into benchmarks/README.md unless --no-write.
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

SCAN = r"""
import json, resource, sys, time
from tfrepro.fingerprint import data
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
s = data.scan(sys.argv[1], hash_data=sys.argv[2] == "1")
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": cpu() - c, "files": s.files, "bytes": s.bytes,
                  "summarised": s.summarised, "hash": s.hash}))
"""


def make_tree(root: str, files: int, total_bytes: int) -> None:
    size = total_bytes // files
    folders = 100
    for i in range(files):
        folder = os.path.join(root, "part-%03d" % (i % folders))
        if i < folders:
            os.makedirs(folder)
        with open(os.path.join(folder, "shard-%06d.bin" % i), "wb") as fh:
            fh.truncate(size)  # sparse: no blocks on disk


def scan(root: str, hash_data: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE)] + sys.path))
    out = subprocess.run([sys.executable, "-c", SCAN, root, "1" if hash_data else "0"], check=True,
                         stdout=subprocess.PIPE, env=env, universal_newlines=True).stdout
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


def bench(files: int, total_bytes: int, repeat: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="tfrepro-bench-data-")
    try:
        t = time.perf_counter()
        make_tree(tmp, files, total_bytes)
        made = time.perf_counter() - t
        default = [scan(tmp, False) for _ in range(repeat)]
        content = scan(tmp, True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = {"files": files, "bytes": default[0]["bytes"], "made": made,
           "default": statistics.median(r["seconds"] for r in default),
           "default_cpu": statistics.median(r["cpu"] for r in default),
           "summarised": default[0]["summarised"], "content": content["seconds"], "content_cpu": content["cpu"]}
    print(json.dumps(row))
    return row


def table(rows, load: float) -> str:
    lines = ["Last run (%s, %d CPUs, %s, Python %s, load average %.1f at start):" % (
        cpu_model(), os.cpu_count() or 1, platform.platform(), platform.python_version(), load), "",
        "| files | total (sparse) | default: path, size, mtime | CPU | per-file detail | --hash-data: sha256 | CPU | read rate |",
        "|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append("| %d | %.1f GB | %.2f s | %.2f s | %s | %.1f s | %.1f s | %.2f GB/s |" % (
            r["files"], r["bytes"] / 1e9, r["default"], r["default_cpu"],
            "summarised (over budget)" if r["summarised"] else "kept", r["content"], r["content_cpu"],
            r["bytes"] / 1e9 / r["content"]))
    return "\n".join(lines)


def write(text: str) -> None:
    with open(README) as f:
        readme = f.read()
    block = BEGIN + "\n" + text + "\n" + END
    if BEGIN in readme:
        readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip("\n") + "\n\n## data_fingerprint.py\n\n" + block + "\n"
    with open(README, "w") as f:
        f.write(readme)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--bytes", type=float, default=10e9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = [bench(n, int(args.bytes), args.repeat) for n in args.files]
    text = table(rows, load)
    print(text)
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
