"""Launching: the LaunchSpec (spec.py) and the engines that run one.

    spec.py          options and recorded tags -> LaunchSpec (pure, validated)
    hostpaths.py     which host paths may be bind-mounted (refused whoever asks)
    env_options.py   -e NAME[=VALUE] and --pass-env NAME
    hooks.py         zero-code capture mounted into the container (sitecustomize.py)
    tags.py          the git and image tags a launcher sets on its run
    mounted_data.py  the mounted data, fingerprinted before the container starts
    pipeline.py      the one recorded-launch pipeline (run and replay) and runtime-spec builder
    new_run.py       `tfrepro run` itself (options -> spec -> engine)
    settings.py      `--on` and the engines' options, and their recorded form
    engines.py       the Engine protocol, chosen by `--on`; job.py: the Job every engine is given
    host_engines.py  Docker and Podman (the job runs on this host)
    cluster_engines.py  Slurm and Kubernetes (the job runs on a node the cluster picks)
    docker.py        Docker Engine (docker-py)
    podman.py        the podman CLI
    slurm.py         batch script (pure); slurm_job.py submits, streams, cancels
    kubernetes.py    batch/v1 Job (pure; its pod's parts in kubernetes_pod.py); kubernetes_job.py
                     submits, waits, streams, deletes
    cluster_images.py  the image policy of slurm and kubernetes (the node pulls by digest)
    commands.py      the CLI tools podman and Slurm are driven by; signals.py: SIGTERM as Ctrl-C

Engines translate the spec; none re-derives it.
"""
