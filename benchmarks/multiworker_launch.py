"""Launch cost of a 2-worker job against a 1-worker job on the same engine, side by side.

    .venv/bin/python benchmarks/multiworker_launch.py [--engines docker,slurm] [--repeats 5]
        [--image REF@sha256:...] [--partition debug]

Each job runs `python -c pass` in the image (by digest: $TFREPRO_TEST_IMAGE_DIGEST by default),
through the engine exactly as `tfrepro run` calls it (engine.run with a workers.Shape), so what
is timed is what tfrepro adds on top of the work: creating, starting, following and removing
one container per worker (docker), or one sbatch job whose srun tasks each start a container
(slurm). No MLflow run is created: the record's cost is the same for 1 and N workers but for
the gathering of tfrepro/workers.json (one download per worker, after the job).

Repeats are interleaved (1, 2, 1, 2, ...) so a machine that gets busier slows both alike.
Prints the medians and the ratio 2 workers / 1 worker per engine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def one_job(engine, image: str, workers_count: int, directory: str) -> float:
    from tfrepro.launch import workers
    from tfrepro.launch.job import Job
    from tfrepro.launch.spec import LaunchSpec, Mount

    spec = LaunchSpec(
        image=image,
        command=("python", "-c", "pass"),
        mounts=(Mount(directory, "/workspace", False, "repo"),),
        labels={"tfrepro.run_id": "bench" + "0" * 27},
    )
    shape = workers.Shape(workers=workers_count, timeout_s=300)
    began = time.perf_counter()
    status = engine.run(Job(spec, shape=shape), lambda facts: None, lambda chunk: None)
    elapsed = time.perf_counter() - began
    if status:
        raise SystemExit("a %d-worker job on %s exited with status %d" % (workers_count, engine.name, status))
    return elapsed


def engine_for(name: str, partition: str):
    from tfrepro.launch import engines, settings, slurm

    if name == "slurm":
        return engines.get("slurm", settings.Options(slurm=slurm.SlurmOptions(partition=partition, time="10")))
    return engines.get(name, settings.Options())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="docker", help="comma separated: docker, podman, slurm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", default=os.environ.get("TFREPRO_TEST_IMAGE_DIGEST"))
    parser.add_argument("--partition", default="debug")
    args = parser.parse_args(argv)
    if not args.image:
        parser.error("--image (by digest), or $TFREPRO_TEST_IMAGE_DIGEST")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfrepro-bench-") as directory:
        os.environ.setdefault("TFREPRO_SLURM_DIR", directory)
        for name in args.engines.split(","):
            engine = engine_for(name.strip(), args.partition)
            engine.prepare(args.image)
            one_job(engine, args.image, 1, directory)  # warm: the image is in the runtime's cache
            times = {1: [], 2: []}
            for _ in range(args.repeats):
                for count in (1, 2):
                    times[count].append(one_job(engine, args.image, count, directory))
            one, two = statistics.median(times[1]), statistics.median(times[2])
            rows.append((engine.name, one, two, two / one, min(times[1]), min(times[2])))
    print(
        "%s, %d cores, Python %s, load average %.1f; medians of %d interleaved repeats"
        % (platform.platform(), os.cpu_count() or 0, platform.python_version(), os.getloadavg()[0], args.repeats)
    )
    print()
    print("| engine | 1 worker, s | 2 workers, s | ratio 2/1 | best 1 | best 2 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, one, two, ratio, best_one, best_two in rows:
        print("| %s | %.2f | %.2f | %.2fx | %.2f | %.2f |" % (name, one, two, ratio, best_one, best_two))
    return 0


if __name__ == "__main__":
    sys.exit(main())
