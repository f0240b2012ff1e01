"""Engines that run a LaunchSpec somewhere: Slurm, Kubernetes, Podman (Docker: tfrepro.replay.docker).

Each engine translates the spec, never re-derives it: a pure half renders what would be
submitted (a batch script, a Job manifest, an argv) and a thin half submits it, streams the
logs, returns the exit status and cancels on Ctrl-C or SIGTERM.
"""
