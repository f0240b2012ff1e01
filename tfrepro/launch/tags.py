"""The tags a launcher sets on the run it creates, from what it reads on this side: the git
checkout the container will see, and the image it resolved (the fingerprint inside the
container records both again)."""

from __future__ import annotations

from typing import Dict, Optional

from tfrepro import schema
from tfrepro.environment import Environment
from tfrepro.fingerprint import NotApplicable
from tfrepro.fingerprint import git as git_source


def host_git(cwd: Optional[str] = None):
    """(GitInfo or None, reason): the repository the container will see, read on this side."""
    try:
        raw = git_source.query(cwd)
        return git_source.parse(raw), raw.get("error")
    except NotApplicable as exc:
        return None, str(exc)
    except Exception as exc:  # never fatal: the container records git itself too
        return None, "git failed: %s" % exc


def git_tags(git) -> Dict[str, str]:
    """The git tags (tfrepro's and MLflow's) and the working directory of `git` (a GitInfo)."""
    tags = Environment(git=git).to_tags()
    return {
        key: value
        for key, value in tags.items()
        if key.startswith((schema.GIT_PREFIX, schema.MLFLOW_GIT_PREFIX)) or key == schema.WORKDIR
    }


def image_tags(ref: Optional[str], digest: Optional[str], image_id: Optional[str]) -> Dict[str, str]:
    """The image tags a launcher sets on its run (the fingerprint inside sets them too)."""
    tags = {
        schema.IMAGE_REF: ref,
        schema.IMAGE_DIGEST: digest,
        schema.IMAGE_ID: image_id,
        schema.IMAGE_DIGEST_SOURCE: "launcher",
        schema.REPLAYABLE: schema.REPLAYABLE_REGISTRY if digest else schema.REPLAYABLE_HOST_ONLY,
        schema.MLFLOW_IMAGE_URI: digest or ref,
        schema.MLFLOW_IMAGE_ID: image_id,
    }
    return {key: value for key, value in tags.items() if value}
