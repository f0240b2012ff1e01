"""Every fixture and helper the tests share; no test module imports from another.

Plugins (fixtures, registered in tests/conftest.py's pytest_plugins):
  mlflow_server     MlflowServer; mlflow_server, postgres_server, tracking_uri, client; tracking_into()
  git_repos         git(), make_repo(), example_repo(); git_repo, dirty_repo
  records           make_run (hand-made records); DIGEST_REF, FAKE, HOLD, everything_on_server()
  docker_fixtures   the Docker Engine, the local registry and the test image
  cluster_fixtures  Slurm and Podman

Plain helpers:
  requirements      missing(): a skip locally, a failure under CI
  ports             free_port()
  cli               one_error(): what the CLI printed when it refused
  git_servers       git daemon and git http-backend on 127.0.0.1
  postgres          a throwaway PostgreSQL cluster
  host              what this host has (GPUs), found without tfrepro
  inspect_envs      Environment values for show/diff/doctor tests
  terminal          run `tfrepro` on a pseudo-terminal
"""
